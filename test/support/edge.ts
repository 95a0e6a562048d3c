import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, before } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { type GatewayConnector, gatewayConnectorFromConfig } from '../../src/ingest/gateways/gateway-connector';
import { type Spool, openSpool } from '../../src/ingest/spool';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import {
  type WebhookReceiver,
  type WebhookReceiverDeps,
  createWebhookReceiver,
  parsePartners,
} from '../../src/ingest/webhook-receiver';
import type { Logger } from '../../src/logger';
import { type InProcessEdge, startEdgeInProcess } from '../../src/ops/edge-in-process';
import { createS3ClaimCheckStore } from '../../src/stores/claim-checks';
import { createS3Client, ensureBucket } from '../../src/stores/s3';
import {
  type KafkaTransaction,
  type TransactionalProducer,
  createKafka,
  createTransactionalProducer,
} from '../../src/streams/kafka';
import { type ClaimCheckStore, type Publisher, createPublisher } from '../../src/streams/publish';
import { captureObject, capturedEvent } from './events';
import { type PrivateTopics, privateTopics } from './kafka';
import { config, requireServices, topics, uniqueId } from './stack';

export interface TestPublisherOptions {
  maxRecordBytes?: number;
  /** Default: the stack's S3 bucket (S3_ENDPOINT, S3_BUCKET); it is called only for an event that needs a claim check. */
  claimChecks?: ClaimCheckStore;
  /** Wraps each producer made (a test slows a step down with it). */
  wrap?: (producer: TransactionalProducer) => TransactionalProducer;
  /** The same id for publishers that play one worker before and after a restart. */
  transactionalId?: string;
  /** Default: the stack's quarantine topic (a test on topics of its own passes theirs). */
  quarantineTopic?: string;
}

/** The publish step on the configured Kafka, with a transactional id of its own (publishers never fence each other). */
export function testPublisher(name: string, log: Logger, options: TestPublisherOptions = {}): Publisher {
  const kafka = createKafka(config, name);
  const transactionalId = options.transactionalId ?? uniqueId(`test-${name}`);
  const wrap = options.wrap ?? ((p) => p);
  return createPublisher({
    createProducer: () => wrap(createTransactionalProducer(kafka, transactionalId)),
    claimChecks: options.claimChecks ?? createS3ClaimCheckStore(createS3Client(config), config.S3_BUCKET),
    quarantineTopic: options.quarantineTopic ?? topics.quarantine,
    ...(options.maxRecordBytes !== undefined ? { maxRecordBytes: options.maxRecordBytes } : {}),
    log,
  });
}

/**
 * A `wrap` for testPublisher that replaces methods of each transaction the producer begins: `hooks` gets the
 * transaction when it has begun and returns what to put in place of its own `send`, `commit` or `abort`.
 */
export function wrapTransactions(
  hooks: (txn: KafkaTransaction) => Partial<KafkaTransaction>,
): (producer: TransactionalProducer) => TransactionalProducer {
  return (p) => ({
    ...p,
    async transaction() {
      const txn = await p.transaction();
      return { ...txn, ...hooks(txn) };
    },
  });
}

/**
 * Another producer with `transactionalId`: `fence()` takes the id (InitProducerId, a newer epoch), so the
 * broker refuses the producer that had it from then on (and aborts its open transaction).
 */
export function intruderWith(
  clientId: string,
  transactionalId: string,
): { fence(): Promise<void>; close(): Promise<void> } {
  const intruder = createTransactionalProducer(createKafka(config, clientId), transactionalId);
  return {
    async fence() {
      await intruder.connect();
      await intruder.transaction(); // kafkajs takes the id on a producer's first transaction
    },
    close: () => intruder.disconnect().catch(() => undefined),
  };
}

/**
 * Hooks for a suite (or file) whose cases publish on topics of their own: before it, Kafka and S3 with the
 * stack's bucket; after each case, what it pushed on `closing` (last first), then its topics dropped.
 */
export function casesOnOwnTopics(s3: S3Client): {
  closing: (() => Promise<void>)[];
  /** Topics of the case's own (dropped after it), read committed from their start. */
  ownTopics: (name: string) => Promise<PrivateTopics>;
} {
  const closing: (() => Promise<void>)[] = [];
  let current: PrivateTopics | undefined;
  before(async () => {
    await requireServices('kafka', 's3');
    await ensureBucket(s3, config.S3_BUCKET);
  });
  afterEach(async () => {
    for (const close of closing.splice(0).reverse()) await close();
    await current?.drop();
    current = undefined;
  });
  return { closing, ownTopics: async (name) => (current = await privateTopics(name)) };
}

/**
 * The gateway connector as its process builds it (gatewayConnectorFromConfig), polling every 100 ms and
 * backing off at most 500 ms, so a test reads a feed in well under a second.
 */
export function testGatewayConnector(deps: Parameters<typeof gatewayConnectorFromConfig>[1]): GatewayConnector {
  return gatewayConnectorFromConfig(
    { ...config, GATEWAY_POLL_INTERVAL_MS: 100, GATEWAY_MAX_BACKOFF_MS: 500, GATEWAY_PAGE_LIMIT: 50 },
    deps,
  );
}

/** A spool in a new temporary folder (`prefix` names it); `remove()` deletes the folder. */
export async function tempSpool(
  prefix: string,
  maxBytes: number,
): Promise<{ dir: string; spool: Spool; remove: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const spool = await openSpool({ dir, maxBytes });
  return { dir, spool, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A webhook receiver in this process; by default the configured partners, the stack's topics, the config's tokenizer. */
export function testReceiver(
  deps: Omit<WebhookReceiverDeps, 'partners' | 'topics' | 'tokenizer'> & Partial<WebhookReceiverDeps>,
): WebhookReceiver {
  return createWebhookReceiver({
    ...deps,
    partners: deps.partners ?? parsePartners(config.WEBHOOK_PARTNERS),
    topics: deps.topics ?? topics,
    tokenizer: deps.tokenizer ?? tokenizerFromConfig(config),
  });
}

/** Starts `receiver` on a free port of 127.0.0.1 and resolves to that port. */
export async function listenLocally(receiver: WebhookReceiver): Promise<number> {
  await new Promise<void>((r) => receiver.server.listen(0, '127.0.0.1', r));
  return (receiver.server.address() as AddressInfo).port;
}

export type TestEdge = InProcessEdge;

/** A webhook receiver in this process, on a free port, with a temporary spool, the real vault and Kafka. */
export function startTestEdge(log: Logger): Promise<TestEdge> {
  return startEdgeInProcess(config, {
    name: 'test-edge',
    topics,
    log,
    spoolMaxBytes: 8 * 1024 * 1024,
    maxBodyBytes: 64 * 1024,
    kafkaTimeoutMs: 5000,
  });
}

/** The receiver's entry point, as a pipeline process runs it. */
export const RECEIVER_MAIN = 'src/ingest/webhook-receiver-main.ts';

/**
 * Where a receiver process of a test lives: a temporary folder for its spool and vault journal, a random port,
 * and the environment that points one worker at them; `remove()` deletes the folder.
 */
export function receiverProcessPlace(prefix: string): {
  dir: string;
  base: string;
  env: Record<string, string>;
  remove: () => void;
} {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  return {
    dir,
    base: `http://127.0.0.1:${port}`,
    env: {
      WEBHOOK_PORT: String(port),
      WEBHOOK_WORKERS: '1',
      WEBHOOK_SPOOL_DIR: join(dir, 'spool'),
      VAULT_JOURNAL_DIR: join(dir, 'journal'),
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A Stripe-style `payment.captured` event for `paymentId`; `extra` overrides fields of data.object. */
export function stripeEvent(
  paymentId: string,
  extra: Record<string, unknown> = {},
  envelope: { id?: string; created?: number } = {},
) {
  return capturedEvent(
    envelope.id ?? uniqueId('evt'),
    envelope.created ?? Math.floor(Date.now() / 1000),
    captureObject(paymentId, {
      customer: { email: 'Jane.Doe@example.com', name: 'Jane Doe', card: '4242 4242 4242 4242' },
      ...extra,
    }),
  );
}

/** A logger that drops everything but errors, which it collects (tests assert the edge logged none). */
export function errorCollectingLogger(): { log: Logger; errors: string[] } {
  const errors: string[] = [];
  const log: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (msg, fields) => errors.push(`${msg} ${JSON.stringify(fields)}`),
  };
  return { log, errors };
}

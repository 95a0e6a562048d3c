import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Config, secretSetting } from '../config';
import { createEdgePublisher } from '../ingest/edge-publisher';
import { type Spool, openSpool } from '../ingest/spool';
import { tokenizerFromConfig } from '../ingest/tokenize';
import {
  type PartnerConfig,
  type WebhookReceiver,
  createWebhookReceiver,
  parsePartners,
} from '../ingest/webhook-receiver';
import { type Logger, errorMessage } from '../logger';
import { type Vault, openVault } from '../stores/vault';
import { type TopicSet, createKafka } from '../streams/kafka';

// A webhook receiver in this process on the configured stack (Kafka, the vault's Postgres, S3), on a free port of
// 127.0.0.1 with a spool in a temporary folder: what `npm run fuzz:edge` starts when it is given no --url, and what
// the integration tests drive over HTTP. `npm run webhooks` is the receiver as it runs in production.

export interface InProcessEdge {
  /** http://127.0.0.1:<port> of the receiver. */
  base: string;
  receiver: WebhookReceiver;
  spool: Spool;
  vault: Vault;
  /** Stops the receiver, then closes what it used and deletes its spool. */
  close(): Promise<void>;
}

export interface InProcessEdgeOptions {
  /** Names the Kafka client and the spool's folder; the transactional id comes from that folder, so it is unique. */
  name: string;
  topics: TopicSet;
  log: Logger;
  /** Default: the configured partners (WEBHOOK_PARTNERS). */
  partners?: PartnerConfig[];
  /** Defaults: WEBHOOK_SPOOL_MAX_BYTES, WEBHOOK_MAX_BODY_BYTES, WEBHOOK_KAFKA_TIMEOUT_MS. */
  spoolMaxBytes?: number;
  maxBodyBytes?: number;
  kafkaTimeoutMs?: number;
}

export async function startEdgeInProcess(config: Config, options: InProcessEdgeOptions): Promise<InProcessEdge> {
  const partners = options.partners ?? parsePartners(secretSetting(config, 'WEBHOOK_PARTNERS'));
  const dir = mkdtempSync(join(tmpdir(), `paylink-${options.name}-`));
  const closing: (() => Promise<unknown>)[] = [async () => rmSync(dir, { recursive: true, force: true })];
  const close = async (): Promise<void> => {
    for (const step of closing.splice(0).reverse())
      await step().catch((err: unknown) => options.log.warn('closing the edge', { error: errorMessage(err) }));
  };
  try {
    const spoolDir = join(dir, 'spool');
    const publisher = createEdgePublisher(
      config,
      createKafka(config, `paylink-${options.name}`),
      `paylink-${options.name}`,
      spoolDir,
      options.log,
      options.topics.quarantine,
    );
    closing.push(() => publisher.close());
    const spool = await openSpool({ dir: spoolDir, maxBytes: options.spoolMaxBytes ?? config.WEBHOOK_SPOOL_MAX_BYTES });
    closing.push(() => spool.close());
    const vault = await openVault(config);
    closing.push(() => vault.close());
    const receiver = createWebhookReceiver({
      partners,
      publisher,
      topics: options.topics,
      spool,
      tokenizer: tokenizerFromConfig(config),
      vault,
      log: options.log,
      maxBodyBytes: options.maxBodyBytes ?? config.WEBHOOK_MAX_BODY_BYTES,
      kafkaTimeoutMs: options.kafkaTimeoutMs ?? config.WEBHOOK_KAFKA_TIMEOUT_MS,
    });
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    closing.push(() => receiver.close());
    const { port } = receiver.server.address() as AddressInfo;
    return { base: `http://127.0.0.1:${port}`, receiver, spool, vault, close };
  } catch (err) {
    await close();
    throw err;
  }
}

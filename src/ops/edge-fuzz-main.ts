import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Config, loadConfig, secretSetting } from '../config';
import { openSpool } from '../ingest/spool';
import { tokenizerFromConfig } from '../ingest/tokenize';
import { createWebhookReceiver, parsePartners } from '../ingest/webhook-receiver';
import { type Logger, createLogger, errorMessage } from '../logger';
import { createS3ClaimCheckStore } from '../stores/claim-checks';
import { createS3Client, ensureBucket } from '../stores/s3';
import { openVault } from '../stores/vault';
import {
  type KafkaAdmin,
  type KafkaClient,
  type TopicOffsets,
  createKafka,
  createTransactionalProducer,
  ensureTopics,
  readTopics,
  topicEnds,
  topicsFor,
} from '../streams/kafka';
import { createPublisher } from '../streams/publish';
import {
  type CommittedEdgeRecord,
  type EdgeFuzzSummary,
  checkDelivery,
  fuzzFailures,
  fuzzPartners,
  keepDraining,
  lettersOf,
  sendEdgeFuzz,
  spoolDrained,
  summarizeEdgeFuzz,
} from './edge-fuzz';

// `npm run fuzz:edge -- --requests N --seed S [--json]`: the edge fuzz of test/integration/edge-fuzz.test.ts, longer,
// against a receiver started in this process on the configured stack (Kafka, the vault's Postgres, S3). It
// writes to the `fuzz` topic namespace, which no pipeline consumer reads, and checks what it committed there.
// Exit 1 when a check fails.

const log = createLogger('fuzz-edge');

const USAGE = 'usage: npm run fuzz:edge -- [--requests N] [--seed S] [--concurrency C] [--json]';

/** The fuzz's own topics: its events are real facts, so they stay out of the pipeline's topics. */
const FUZZ_NAMESPACE = 'fuzz';

/** Committed records on `topics` between `from` and their ends now (read committed). */
async function committedSince(
  kafka: KafkaClient,
  from: ReadonlyMap<string, TopicOffsets>,
  ends: ReadonlyMap<string, TopicOffsets>,
): Promise<CommittedEdgeRecord[]> {
  const records: CommittedEdgeRecord[] = [];
  const pending = new Map<string, bigint>();
  for (const [topic, offsets] of ends) {
    const start = new Map((from.get(topic) ?? []).map((o) => [o.partition, BigInt(o.offset)]));
    for (const o of offsets)
      if (BigInt(o.offset) > (start.get(o.partition) ?? 0n)) pending.set(`${topic}/${o.partition}`, BigInt(o.offset));
  }
  if (pending.size === 0) return records;
  const finished = await readTopics(
    kafka,
    from,
    (topic, _partition, message) => {
      records.push({ topic, headers: message.headers });
      return false;
    },
    120_000,
    (topic, partition, next) => {
      const end = pending.get(`${topic}/${partition}`);
      if (end !== undefined && next >= end) pending.delete(`${topic}/${partition}`);
      return pending.size === 0;
    },
  );
  if (!finished)
    throw new Error(`reading the fuzz topics: not done within 120 s (${[...pending.keys()].join(', ')} behind)`);
  return records;
}

/** A topic's ends; a topic created a moment ago may not have its leader elected yet. */
async function endsOnceLed(admin: KafkaAdmin, topic: string): Promise<TopicOffsets> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await topicEnds(admin, topic);
    } catch (err) {
      if (attempt >= 40) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

export async function fuzzEdge(
  config: Config,
  options: {
    requests: number;
    seed: number;
    concurrency: number;
    progress?: (answered: number, total: number) => void;
  },
  logger: Logger,
): Promise<EdgeFuzzSummary> {
  const runTag = lettersOf(Date.now());
  const topics = topicsFor({ KAFKA_TOPIC_NAMESPACE: FUZZ_NAMESPACE });
  const kafka = createKafka(config, 'paylink-fuzz-edge');
  const admin = kafka.admin();
  await admin.connect();
  const watched = [topics.rawWebhooks, topics.quarantine];
  const dir = mkdtempSync(join(tmpdir(), 'paylink-fuzz-edge-'));
  const s3 = createS3Client(config);
  const closing: (() => Promise<unknown>)[] = [
    async () => rmSync(dir, { recursive: true, force: true }),
    () => admin.disconnect(),
    async () => s3.destroy(),
  ];
  try {
    await ensureTopics(admin, { ...config, KAFKA_TOPIC_NAMESPACE: FUZZ_NAMESPACE });
    await ensureBucket(s3, config.S3_BUCKET);
    const from = new Map(await Promise.all(watched.map(async (t) => [t, await endsOnceLed(admin, t)] as const)));
    const publisher = createPublisher({
      createProducer: () => createTransactionalProducer(kafka, `paylink-fuzz-edge-${runTag}`),
      claimChecks: createS3ClaimCheckStore(s3, config.S3_BUCKET),
      quarantineTopic: topics.quarantine,
      log: logger,
    });
    closing.push(() => publisher.close());
    const spool = await openSpool({ dir: join(dir, 'spool'), maxBytes: config.WEBHOOK_SPOOL_MAX_BYTES });
    closing.push(() => spool.close());
    const vault = await openVault(config);
    closing.push(() => vault.close());
    const partners = parsePartners(secretSetting(config, 'WEBHOOK_PARTNERS'));
    const receiver = createWebhookReceiver({
      partners,
      publisher,
      topics,
      spool,
      tokenizer: tokenizerFromConfig(config),
      vault,
      log: logger,
      maxBodyBytes: config.WEBHOOK_MAX_BODY_BYTES,
      kafkaTimeoutMs: config.WEBHOOK_KAFKA_TIMEOUT_MS,
    });
    await new Promise<void>((r) => receiver.server.listen(0, '127.0.0.1', r));
    closing.push(() => receiver.close());
    const port = (receiver.server.address() as AddressInfo).port;

    const agents = {
      requests: new Agent({ keepAlive: true, maxSockets: options.concurrency }),
      healthz: new Agent({ keepAlive: true, maxSockets: 1 }),
    };
    const draining = keepDraining(receiver);
    let sent;
    try {
      sent = await sendEdgeFuzz(
        {
          base: `http://127.0.0.1:${port}`,
          partners: fuzzPartners(partners),
          maxBodyBytes: config.WEBHOOK_MAX_BODY_BYTES,
          requests: options.requests,
          seed: options.seed,
          runTag,
          concurrency: options.concurrency,
          ...(options.progress ? { onProgress: options.progress } : {}),
        },
        agents,
      );
    } finally {
      await draining.stop();
      agents.requests.destroy();
      agents.healthz.destroy();
    }
    await spoolDrained(receiver);
    const ends = new Map(await Promise.all(watched.map(async (t) => [t, await topicEnds(admin, t)] as const)));
    const records = await committedSince(kafka, from, ends);
    return summarizeEdgeFuzz(
      options.seed,
      sent,
      checkDelivery(sent.exchanges, records, { raw: topics.rawWebhooks, quarantine: topics.quarantine }),
    );
  } finally {
    for (const close of closing.reverse())
      await close().catch((err: unknown) => logger.warn('closing', { error: errorMessage(err) }));
  }
}

function printText(s: EdgeFuzzSummary, failures: string[]): void {
  const lines = [
    `edge fuzz: seed ${s.seed}, ${s.requests} requests in ${(s.durationMs / 1000).toFixed(1)} s`,
    `statuses: ${Object.entries(s.statuses)
      .map(([k, v]) => `${k} ×${v}`)
      .join(', ')}`,
    'by class:',
    ...Object.entries(s.byClass).map(
      ([cls, statuses]) =>
        `  ${cls.padEnd(36)} ${Object.entries(statuses)
          .map(([k, v]) => `${k} ×${v}`)
          .join(', ')}`,
    ),
    `forgeries accepted: ${s.forgeriesAccepted}; 5xx: ${s.serverErrors}; no answer: ${s.transportErrors}; Adyen replays produced again: ${s.replaysProduced}`,
    `/healthz: ${s.healthz.polls} polls, ${s.healthz.failures} failed; p50 ${s.healthz.p50Ms} ms, p99 ${s.healthz.p99Ms} ms, max ${s.healthz.maxMs} ms`,
    `delivered exactly once: ${s.delivery.ok ? 'yes' : 'NO'} — ${s.delivery.acceptedEvents} events answered 2xx, ${s.delivery.rawRecords} on the raw topic, ` +
      `${s.delivery.claimChecked} claim-checked, ${s.delivery.quarantineRecords} quarantine records; duplicates ${s.delivery.duplicates.length}, ` +
      `missing ${s.delivery.missing.length}, refused yet produced ${s.delivery.unexpected.length}`,
    failures.length === 0 ? 'PASS' : `FAIL (seed ${s.seed}):\n  ${failures.join('\n  ')}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '5000' },
      seed: { type: 'string', default: '1' },
      concurrency: { type: 'string', default: '8' },
      json: { type: 'boolean', default: false },
    },
  });
  const [requests, seed, concurrency] = [values.requests, values.seed, values.concurrency].map(Number) as [
    number,
    number,
    number,
  ];
  if (![requests, seed, concurrency].every((n) => Number.isInteger(n) && n >= 0) || concurrency < 1)
    throw new Error(USAGE);
  const tty = !values.json && process.stderr.isTTY;
  let last = 0;
  const progress = tty
    ? (answered: number, total: number): void => {
        if (answered !== total && Date.now() - last < 250) return;
        last = Date.now();
        process.stderr.write(`\r${answered}/${total} requests answered`);
        if (answered === total) process.stderr.write('\n');
      }
    : undefined;
  // Each refused request is an info line; the summary counts them, so only warnings and errors are logged.
  const quiet: Logger = { ...log, debug: () => undefined, info: () => undefined };
  const summary = await fuzzEdge(
    loadConfig(),
    { requests, seed, concurrency, ...(progress ? { progress } : {}) },
    quiet,
  );
  const failures = fuzzFailures(summary);
  if (values.json) process.stdout.write(`${JSON.stringify({ ...summary, failures })}\n`);
  else printText(summary, failures);
  if (failures.length > 0) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    log.error('fuzz:edge failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

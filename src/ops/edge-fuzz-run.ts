import { type Config, secretSetting } from '../config';
import { parsePartners } from '../ingest/webhook-receiver';
import { type Logger, errorMessage } from '../logger';
import { createS3Client, ensureBucket } from '../stores/s3';
import {
  type KafkaAdmin,
  type KafkaClient,
  type TopicOffsets,
  type TopicSet,
  createKafka,
  ensureTopics,
  readTopics,
  settledEnds,
  topicEnds,
  topicsFor,
} from '../streams/kafka';
import { startEdgeInProcess } from './edge-in-process';
import {
  type CommittedEdgeRecord,
  type EdgeFuzzSummary,
  type FuzzMix,
  type FuzzSendResult,
  checkDelivery,
  fuzzPartners,
  lettersOf,
  sendEdgeFuzz,
  summarizeEdgeFuzz,
} from './edge-fuzz';

// One edge fuzz run (`npm run fuzz:edge`, test/integration/edge-fuzz.test.ts): against a receiver started in this
// process, or one already running at a URL (`npm run webhooks`, its own process, so its stalls are its own);
// then what it committed on the raw and quarantine topics, read committed, checked against what was answered.

/** The fuzz's own topics: its events are real facts, so they stay out of the pipeline's topics. */
export const FUZZ_NAMESPACE = 'fuzz';

/** The receiver the fuzz sends to, and how it learns that the receiver's spool is empty (everything on Kafka). */
interface FuzzTarget {
  base: string;
  spooled(): Promise<number>;
  /** Drains the spool now; absent for a receiver process, which drains its own every 500 ms. */
  drain?(): Promise<unknown>;
}

/** A receiver process: its /readyz counts what its spool holds. */
function runningReceiver(base: string): FuzzTarget {
  return {
    base,
    async spooled() {
      const res = await fetch(new URL('/readyz', base), { signal: AbortSignal.timeout(10_000) });
      const body = (await res.json()) as { spooled?: unknown };
      if (typeof body.spooled !== 'number') throw new Error(`${base}/readyz has no spooled count: is it the receiver?`);
      return body.spooled;
    },
  };
}

/** Drains the target's spool every `intervalMs` while the fuzz runs, as the receiver's process does. */
function keepDraining(target: FuzzTarget, intervalMs = 500): { stop(): Promise<void> } {
  let running = true;
  const loop = (async () => {
    while (running && target.drain) {
      await target.drain();
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** Resolves once the target's spool is empty (drained to Kafka); throws past `timeoutMs`. */
async function spoolDrained(target: FuzzTarget, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let spooled = await target.spooled(); spooled > 0; spooled = await target.spooled()) {
    if (Date.now() > deadline) throw new Error(`the spool still holds ${spooled} records after ${timeoutMs} ms`);
    await target.drain?.();
    await new Promise((r) => setTimeout(r, 100));
  }
}

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

export interface FuzzEdgeOptions {
  requests: number;
  seed: number;
  concurrency: number;
  mix?: FuzzMix;
  /**
   * http://host:port of a receiver already running (`npm run webhooks`) with KAFKA_TOPIC_NAMESPACE=fuzz (or
   * writing to `topics`) and this process's WEBHOOK_PARTNERS; absent: a receiver in this process.
   */
  url?: string;
  /** Topics that exist already (a test's own); default: the `fuzz` namespace's, created if missing. */
  topics?: TopicSet;
  progress?: (answered: number, total: number) => void;
}

/** Sends the seeded requests, waits until nothing is spooled, and checks what the topics hold. */
export async function fuzzEdge(config: Config, options: FuzzEdgeOptions, logger: Logger): Promise<EdgeFuzzSummary> {
  const runTag = lettersOf(Date.now());
  const topics = options.topics ?? topicsFor({ KAFKA_TOPIC_NAMESPACE: FUZZ_NAMESPACE });
  const partners = parsePartners(secretSetting(config, 'WEBHOOK_PARTNERS'));
  const kafka = createKafka(config, 'paylink-fuzz-edge');
  const admin = kafka.admin();
  await admin.connect();
  const watched = [topics.rawWebhooks, topics.quarantine];
  const closing: (() => Promise<unknown>)[] = [() => admin.disconnect()];
  try {
    if (!options.topics) await ensureTopics(admin, { ...config, KAFKA_TOPIC_NAMESPACE: FUZZ_NAMESPACE });
    let target: FuzzTarget;
    if (options.url) {
      target = runningReceiver(options.url);
      await target.spooled(); // it answers, and it is a receiver
    } else {
      const s3 = createS3Client(config);
      await ensureBucket(s3, config.S3_BUCKET).finally(() => s3.destroy());
      const edge = await startEdgeInProcess(config, { name: 'fuzz-edge', topics, partners, log: logger });
      closing.push(() => edge.close());
      target = {
        base: edge.base,
        spooled: async () => edge.receiver.status().spooled,
        drain: () => edge.receiver.drainSpool(),
      };
    }
    const from = new Map(await Promise.all(watched.map(async (t) => [t, await endsOnceLed(admin, t)] as const)));
    const draining = keepDraining(target);
    let sent: FuzzSendResult;
    try {
      sent = await sendEdgeFuzz({
        base: target.base,
        partners: fuzzPartners(partners),
        maxBodyBytes: config.WEBHOOK_MAX_BODY_BYTES,
        requests: options.requests,
        seed: options.seed,
        runTag,
        concurrency: options.concurrency,
        ...(options.mix ? { mix: options.mix } : {}),
        ...(options.progress ? { onProgress: options.progress } : {}),
      });
    } finally {
      await draining.stop();
    }
    await spoolDrained(target);
    const ends = await settledEnds(admin, watched);
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

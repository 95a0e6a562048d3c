import { Kafka, logLevel } from 'kafkajs';
import { kafkaBrokers } from '../../src/config';
import { HEADERS } from '../../src/contracts/envelope';
import {
  type KafkaClient,
  type TopicOffsets,
  type TopicSet,
  readTopics,
  settledEnds,
  topicsFor,
} from '../../src/streams/kafka';
import { config, uniqueId } from './stack';

// Reading the shared topics from where they ended when a test started: however much benchmarks and
// earlier runs put there, a test reads only its own messages.

export { type TopicOffsets, topicEnds } from '../../src/streams/kafka';

/** A kafkajs client of its own, for tests that watch topics live (src/ sees kafkajs only through src/streams/kafka.ts). */
export function testKafka(clientId: string): Kafka {
  return new Kafka({ clientId, brokers: kafkaBrokers(config), logLevel: logLevel.WARN });
}

export interface ReadMessage {
  key: string;
  value: string;
  headers: Record<string, string>;
}

/**
 * Reads `topic` from `from` with a fresh group, keeping the messages whose key `keep` accepts,
 * until `done` says the kept ones are enough; past `timeoutMs` it throws with what it kept.
 */
export async function readKeyed(
  kafka: KafkaClient,
  topic: string,
  from: TopicOffsets,
  keep: (key: string) => boolean,
  done: (kept: ReadMessage[]) => boolean,
  timeoutMs = 30_000,
): Promise<ReadMessage[]> {
  const kept: ReadMessage[] = [];
  let enough = false;
  const finished = await readTopics(
    kafka,
    new Map([[topic, from]]),
    (_topic, _partition, message) => {
      const key = message.key?.toString() ?? '';
      if (enough || !keep(key)) return enough;
      kept.push({ key, value: String(message.value), headers: message.headers });
      return (enough = done(kept));
    },
    timeoutMs,
  );
  if (!finished) {
    const keys = kept.map((m) => m.key).join(', ') || 'none';
    throw new Error(`reading ${topic}: not done within ${timeoutMs} ms; kept ${kept.length} (keys: ${keys})`);
  }
  return kept;
}

/** A record as a read-committed consumer sees it (value as bytes, so sizes can be checked). */
export interface CommittedRecord {
  topic: string;
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
}

export interface PrivateTopics {
  /** The project's topics under a namespace of this test's own (the three an edge writes exist). */
  topics: TopicSet;
  /** Every committed record on them so far, in commit order per topic (one partition each). */
  readonly records: CommittedRecord[];
  /** On `topic`, in commit order. */
  on(topic: string): CommittedRecord[];
  /**
   * Resolves once every record committed before the call has been read (read committed: records of aborted
   * transactions are skipped); throws past `timeoutMs`. A test calls it before asserting what is (not) there.
   */
  caughtUp(timeoutMs?: number): Promise<void>;
  /** Stops reading and deletes the topics. */
  drop(): Promise<void>;
}

/**
 * The edge's three topics (raw webhooks, payment facts, quarantine) under a namespace of `name`'s own, one
 * partition each, and a read-committed consumer that keeps everything committed on them: what the test's
 * publisher committed, in commit order, and nothing of anyone else's.
 */
export async function privateTopics(name: string): Promise<PrivateTopics> {
  const namespace = uniqueId(`t-${name}`)
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 40);
  const topics = topicsFor({ KAFKA_TOPIC_NAMESPACE: namespace });
  const watched = [topics.rawWebhooks, topics.paymentEvents, topics.quarantine];
  const kafka = testKafka(`private-topics-${name}`);
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: watched.map((topic) => ({ topic, numPartitions: 1, replicationFactor: config.KAFKA_REPLICATION_FACTOR })),
    waitForLeaders: true,
  });
  const records: CommittedRecord[] = [];
  const kept = new Map<string, bigint>(); // the offset after the last record kept, per topic
  // The next offset to read per topic (partition 0): past data, aborted records and transaction markers alike.
  const readUpTo = new Map(watched.map((t) => [t, 0n]));
  const groupId = uniqueId(`private-topics-${name}`);
  const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false }); // read committed (kafkajs default)
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    const next = BigInt(payload.lastOffset) + 1n;
    if (next > (readUpTo.get(payload.topic) ?? 0n)) readUpTo.set(payload.topic, next);
  });
  await consumer.connect();
  await consumer.subscribe({ topics: watched, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      // A rebalance redelivers from the last committed offset: keep each record once.
      const offset = BigInt(message.offset);
      if (offset < (kept.get(topic) ?? 0n)) return;
      kept.set(topic, offset + 1n);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers ?? {})) if (v !== undefined) headers[k] = String(v);
      records.push({ topic, key: message.key?.toString() ?? null, value: message.value ?? Buffer.alloc(0), headers });
    },
  });
  return {
    topics,
    records,
    on: (topic) => records.filter((r) => r.topic === topic),
    async caughtUp(timeoutMs = 30_000) {
      // Settled: a transaction committed a moment ago may not be readable yet (its markers are being written).
      const settled = await settledEnds(admin, watched);
      const ends = new Map(watched.map((t) => [t, BigInt(settled.get(t)?.[0]?.offset ?? '0')]));
      const deadline = Date.now() + timeoutMs;
      const behind = (): string[] =>
        watched
          .filter((t) => (readUpTo.get(t) ?? 0n) < (ends.get(t) ?? 0n))
          .map((t) => `${t} at ${readUpTo.get(t)}/${ends.get(t)}`);
      while (behind().length > 0) {
        if (Date.now() > deadline)
          throw new Error(`reading ${namespace}: not caught up within ${timeoutMs} ms: ${behind().join(', ')}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async drop() {
      await consumer.disconnect();
      await admin.deleteGroups([groupId]).catch(() => undefined);
      await admin.deleteTopics({ topics: watched }).catch(() => undefined);
      await admin.disconnect();
    },
  };
}

/** The idempotency keys committed on `topic` of `t` so far, in commit order (once everything committed is read). */
export async function committedKeys(t: PrivateTopics, topic: string): Promise<string[]> {
  await t.caughtUp();
  return t.on(topic).map((r) => r.headers[HEADERS.idempotencyKey]!);
}

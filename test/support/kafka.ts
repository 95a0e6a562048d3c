import { Kafka, Partitioners, logLevel } from 'kafkajs';
import { kafkaBrokers } from '../../src/config';
import { HEADERS } from '../../src/contracts/envelope';
import { type KafkaClient, type TopicOffsets, type TopicSet, readTopics, topicsFor } from '../../src/streams/kafka';
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

/**
 * Every message on `topic` from `from` up to `to` whose key `keep` accepts, for counting copies where readKeyed
 * stops at the first. `to`: end offsets read once what the test waits for was seen (so it is committed).
 */
export async function readKeyedBetween(
  kafka: KafkaClient,
  topic: string,
  from: TopicOffsets,
  to: TopicOffsets,
  keep: (key: string) => boolean,
  timeoutMs = 30_000,
): Promise<ReadMessage[]> {
  const kept: ReadMessage[] = [];
  const next = new Map(from.map((p) => [p.partition, BigInt(p.offset)]));
  const reached = (): boolean => to.every((p) => (next.get(p.partition) ?? 0n) >= BigInt(p.offset));
  if (reached()) return kept;
  const finished = await readTopics(
    kafka,
    new Map([[topic, from]]),
    (_topic, _partition, message) => {
      const key = message.key?.toString() ?? '';
      if (keep(key)) kept.push({ key, value: String(message.value), headers: message.headers });
      return false;
    },
    timeoutMs,
    (_topic, partition, position) => {
      if (position > (next.get(partition) ?? 0n)) next.set(partition, position);
      return reached();
    },
  );
  if (!finished) throw new Error(`reading ${topic} up to its end offsets: not there within ${timeoutMs} ms`);
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
  /** Every committed record on them so far, in commit order per topic (one partition each); markers excluded. */
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

/** Header of the marker records caughtUp appends; the reader keeps them out of `records`. */
const CAUGHT_UP_MARKER = 'x-test-caught-up';

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
  const markers = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  await markers.connect();
  const records: CommittedRecord[] = [];
  const kept = new Map<string, bigint>(); // the offset after the last record kept, per topic
  const markersRead = new Map<string, Set<string>>(); // marker id → the topics it was read on
  const groupId = uniqueId(`private-topics-${name}`);
  const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false }); // read committed (kafkajs default)
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
      const marker = headers[CAUGHT_UP_MARKER];
      if (marker !== undefined) {
        markersRead.set(marker, (markersRead.get(marker) ?? new Set()).add(topic));
        return;
      }
      records.push({ topic, key: message.key?.toString() ?? null, value: message.value ?? Buffer.alloc(0), headers });
    },
  });
  return {
    topics,
    records,
    on: (topic) => records.filter((r) => r.topic === topic),
    async caughtUp(timeoutMs = 30_000) {
      // Not the read-committed end offset: the coordinator answers a commit before it writes the transaction's
      // markers, so that offset can still stop short of a transaction already committed. A record appended now
      // lands after every such transaction, and a read-committed consumer reaches it only past them.
      const marker = uniqueId('caught-up');
      await markers.sendBatch({
        acks: -1,
        topicMessages: watched.map((topic) => ({
          topic,
          messages: [{ value: 'caught-up marker', headers: { [CAUGHT_UP_MARKER]: marker } }],
        })),
      });
      const deadline = Date.now() + timeoutMs;
      const behind = (): string[] => watched.filter((t) => !markersRead.get(marker)?.has(t));
      while (behind().length > 0) {
        if (Date.now() > deadline)
          throw new Error(`reading ${namespace}: not caught up within ${timeoutMs} ms on ${behind().join(', ')}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      markersRead.delete(marker);
    },
    async drop() {
      await consumer.disconnect();
      await markers.disconnect();
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

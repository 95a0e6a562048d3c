import { Kafka, Partitioners, logLevel, type EachBatchPayload, type IHeaders, type KafkaMessage } from 'kafkajs';
import type { EnvelopeHeaders, ReadMessage } from '../contracts/envelope';
import { type Config, kafkaBrokers } from '../config';

// The one Kafka module: kafkajs stays behind it so the client can be swapped (kafkajs#1603). The rest of
// PayLink sees the small types below; lint forbids importing kafkajs anywhere else in src/ (but src/stack/).

/** Topic names after `paylink.` (see topicsFor). */
const TOPIC_NAMES = {
  /** Payment lifecycle facts keyed by paymentId (every ingest path → router). */
  paymentEvents: 'payments.events.v1',
  /** Authentic but invalid events, with the reason in a header. Never dropped. */
  quarantine: 'quarantine.v1',
  /** Partner webhooks as received (tokenized), keyed by payment: the archive's and replay's source. */
  rawWebhooks: 'raw.webhooks.v1',
  /** Regional gateway events as received (tokenized), keyed by payment. */
  rawGateways: 'raw.gateways.v1',
  /** Partner API records as polled (tokenized), keyed by payment. */
  rawPartnerApi: 'raw.partner-api.v1',
  /** Debezium-format change events of PayLink's OLTP tables, one topic per table (Debezium's naming). */
  cdcPayments: 'cdc.oltp.public.payments',
  cdcLedgerEntries: 'cdc.oltp.public.ledger_entries',
  /** Fraud rule hits (src/streams/fraud-views), keyed by their deterministic alert id. */
  fraudAlerts: 'fraud.alerts.v1',
} as const;

export type TopicSet = { readonly [K in keyof typeof TOPIC_NAMES]: string };

/**
 * `paylink.<name>`, or `paylink.<namespace>.<name>` for a namespace (KAFKA_TOPIC_NAMESPACE): the edge
 * benchmark writes to its own topics, so its events never reach the dev stack's router as payments.
 * Entry points call it once and pass the set to the modules that produce or consume.
 */
export function topicsFor(config: Pick<Config, 'KAFKA_TOPIC_NAMESPACE'>): TopicSet {
  const namespace = config.KAFKA_TOPIC_NAMESPACE;
  const prefix = namespace === '' ? 'paylink.' : `paylink.${namespace}.`;
  return Object.fromEntries(Object.entries(TOPIC_NAMES).map(([k, name]) => [k, prefix + name])) as TopicSet;
}

/** An edge's three topics: its raw topic, the payment facts and the quarantine. */
export const edgeTopicsOf = (t: TopicSet, raw: 'rawWebhooks' | 'rawGateways' | 'rawPartnerApi') => ({
  raw: t[raw],
  facts: t.paymentEvents,
  quarantine: t.quarantine,
});

/** Topics that hold events as they entered PayLink (the archive's, replay's and quality's source). */
export const rawTopicsOf = (t: TopicSet): string[] => [
  t.rawWebhooks,
  t.rawGateways,
  t.rawPartnerApi,
  t.cdcPayments,
  t.cdcLedgerEntries,
];

// ---- Producing -------------------------------------------------------------------------------------

/** One message to produce; headers are text (src/contracts/envelope.ts says which). */
export interface KafkaRecord {
  key?: string | Buffer | null;
  value: string | Buffer | null;
  headers?: EnvelopeHeaders;
}

export interface TopicRecord extends KafkaRecord {
  topic: string;
}

/** The producer as PayLink uses it: idempotent, acks=all (createProducer). */
export interface Producer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  send(request: { topic: string; messages: KafkaRecord[]; acks?: number }): Promise<unknown>;
  sendBatch(request: { topicMessages: { topic: string; messages: KafkaRecord[] }[]; acks?: number }): Promise<unknown>;
}

/** Produces `records` in one request (acks=all), grouped by topic in their order; an empty list sends nothing. */
export async function produce(producer: Producer, records: readonly TopicRecord[]): Promise<void> {
  const topicMessages = groupByTopic(records);
  if (topicMessages.length === 0) return;
  await producer.sendBatch({ acks: -1, topicMessages });
}

function groupByTopic(records: readonly TopicRecord[]): { topic: string; messages: KafkaRecord[] }[] {
  const byTopic = new Map<string, KafkaRecord[]>();
  for (const { topic, key, value, headers } of records) {
    const record: KafkaRecord = { key, value, ...(headers ? { headers } : {}) };
    const list = byTopic.get(topic);
    if (list) list.push(record);
    else byTopic.set(topic, [record]);
  }
  return [...byTopic].map(([topic, messages]) => ({ topic, messages }));
}

// ---- Consuming -------------------------------------------------------------------------------------

/** A consumed message. */
export interface ConsumedMessage extends ReadMessage {
  /** Broker timestamp, ms since the epoch as a decimal string. */
  timestamp: string;
  /** Every header value as its bytes, in the order kafkajs decoded them (a repeated name keeps each value). */
  rawHeaders: readonly (readonly [string, Buffer])[];
}

/** One partition's messages, in offset order (never empty). */
export interface ConsumedBatch {
  topic: string;
  partition: number;
  messages: ConsumedMessage[];
  /** The offset after this batch, past the control records (transaction markers) that follow its last message. */
  nextOffset: string;
}

export interface BatchControl {
  /** False once this member no longer owns the partition (rebalanced, sought): stop; the batch is redelivered. */
  owned: () => boolean;
  /** Keeps the membership through a long batch (kafkajs sends one only when its interval is due). */
  heartbeat: () => Promise<void>;
}

/**
 * `commit` once the batch's work is durable; `redeliver` leaves its offsets, so the group reads it again;
 * `hold` reads on past the batch without committing it: the handler keeps it and commits later with
 * GroupConsumer.commitOffset (the archiver, whose objects span many batches). After a rebalance the group
 * reads again from the committed offset, so a held batch is redelivered unless it was committed.
 */
export type BatchOutcome = 'commit' | 'redeliver' | 'hold';
export type BatchHandler = (batch: ConsumedBatch, control: BatchControl) => Promise<BatchOutcome>;

/** A consumer group member. Run it with runConsumer (./consumer-runner.ts), which adds signals and crashes. */
export interface GroupConsumer {
  readonly groupId: string;
  connect(): Promise<void>;
  /**
   * Subscribes (a group without committed offsets starts at the beginning: a new group misses nothing) and
   * hands each partition's batch to `handle`, 3 partitions at a time, committing after `commit`.
   */
  consume(topics: readonly string[], handle: BatchHandler): Promise<void>;
  /** Stops fetching, lets the batches in flight finish and commit, leaves the group, disconnects. */
  disconnect(): Promise<void>;
  onJoin(listener: () => void): void;
  /**
   * Commits `nextOffset` for one partition (after held batches became durable). Fails when this member no
   * longer owns the partition; the new owner then starts from the earlier commit, which is safe to redo.
   */
  commitOffset(topic: string, partition: number, nextOffset: string): Promise<void>;
  /** The next fetch of this partition starts at `offset` (a batch in flight there is dropped as stale). */
  seek(topic: string, partition: number, offset: string): void;
  /** kafkajs gave up on this member: it restarts it after a retriable failure, otherwise it stays down. */
  onCrash(listener: (error: Error, willRestart: boolean) => void): void;
}

function headersOf(headers: IHeaders | undefined): EnvelopeHeaders {
  const out: EnvelopeHeaders = {};
  for (const [name, raw] of Object.entries(headers ?? {})) {
    const first = Array.isArray(raw) ? raw[0] : raw;
    if (first !== undefined) out[name] = first.toString();
  }
  return out;
}

function rawHeadersOf(headers: IHeaders | undefined): [string, Buffer][] {
  const out: [string, Buffer][] = [];
  for (const [name, raw] of Object.entries(headers ?? {})) {
    for (const v of Array.isArray(raw) ? raw : [raw]) {
      if (v !== undefined) out.push([name, Buffer.isBuffer(v) ? v : Buffer.from(v)]);
    }
  }
  return out;
}

const consumed = (m: KafkaMessage): ConsumedMessage => ({
  key: m.key,
  value: m.value,
  headers: headersOf(m.headers),
  rawHeaders: rawHeadersOf(m.headers),
  offset: m.offset,
  timestamp: m.timestamp,
});

/** The last offset the batch covers: its last message, or the control records that follow it. */
function batchThrough(batch: EachBatchPayload['batch']): string {
  const last = batch.messages[batch.messages.length - 1]!;
  return BigInt(batch.lastOffset()) > BigInt(last.offset) ? batch.lastOffset() : last.offset;
}

/**
 * Commits the batch's next offset once its work is durable, only while this member still owns the
 * partition (otherwise the batch is redelivered, which every consumer here makes harmless). A member that
 * is stopping owns its partitions until it leaves, so a batch finished after SIGTERM commits too: the
 * offsets go through the batch's own commit, as consumer.commitOffsets skips silently once stopping.
 */
async function commitBatch(payload: EachBatchPayload): Promise<void> {
  const { batch } = payload;
  if (batch.messages.length === 0 || payload.isStale()) return;
  // Past the control records that follow it too (the edge's transaction markers): committing after the last
  // data record would leave a read-committed group one offset short of the end for good.
  const through = batchThrough(batch);
  payload.resolveOffset(through);
  const offset = (BigInt(through) + 1n).toString();
  await payload.commitOffsetsIfNecessary({
    topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset }] }],
  });
  await payload.heartbeat();
}

/** How often a member heartbeats while a batch is in its handler (kafkajs sends at most one per 3 s interval). */
const KEEP_ALIVE_MS = 1_000;
/** Heartbeat answers after which this member no longer owns its partitions. */
const MEMBERSHIP_LOST = new Set(['REBALANCE_IN_PROGRESS', 'UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION']);

/** A group member; `sessionTimeoutMs` is KAFKA_SESSION_TIMEOUT_MS (how long a member killed -9 holds its partitions). */
export function createConsumer(kafka: KafkaClient, groupId: string, sessionTimeoutMs = 30_000): GroupConsumer {
  const consumer = (kafka as Kafka).consumer({
    groupId,
    allowAutoTopicCreation: false,
    sessionTimeout: sessionTimeoutMs,
    heartbeatInterval: Math.min(3_000, Math.floor(sessionTimeoutMs / 3)),
  });
  return {
    groupId,
    connect: () => consumer.connect(),
    disconnect: () => consumer.disconnect(),
    async consume(topics, handle) {
      await consumer.subscribe({ topics: [...topics], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 3,
        eachBatch: async (payload) => {
          const { batch } = payload;
          if (batch.messages.length === 0) return;
          // While the handler works (or waits out a dependency), keep the membership: a session that
          // expires mid-batch means a rebalance and the whole batch again (issue 10: a 30 s Temporal
          // outage cost 50% more signals). A heartbeat answered "rebalancing" means the partition may
          // go elsewhere: `owned` turns false so the handler stops and the batch is redelivered.
          let lost = false;
          const beat = async (): Promise<void> => {
            try {
              await payload.heartbeat();
            } catch (err) {
              if (MEMBERSHIP_LOST.has(String((err as { type?: unknown }).type))) lost = true;
              throw err;
            }
          };
          const keepAlive = setInterval(() => void beat().catch(() => undefined), KEEP_ALIVE_MS);
          let outcome: BatchOutcome;
          try {
            outcome = await handle(
              {
                topic: batch.topic,
                partition: batch.partition,
                messages: batch.messages.map(consumed),
                nextOffset: (BigInt(batchThrough(batch)) + 1n).toString(),
              },
              { owned: () => !lost && !payload.isStale(), heartbeat: beat },
            );
          } finally {
            clearInterval(keepAlive);
          }
          if (outcome === 'commit' && !lost) await commitBatch(payload);
          if (outcome === 'hold' && !lost && !payload.isStale()) {
            // The next fetch starts after the batch; nothing is committed (autoCommit is off).
            payload.resolveOffset(batchThrough(batch));
            await payload.heartbeat();
          }
        },
      });
    },
    commitOffset: (topic, partition, offset) => consumer.commitOffsets([{ topic, partition, offset }]),
    seek: (topic, partition, offset) => consumer.seek({ topic, partition, offset }),
    onJoin: (listener) => void consumer.on(consumer.events.GROUP_JOIN, () => listener()),
    onCrash: (listener) => void consumer.on(consumer.events.CRASH, (e) => listener(e.payload.error, e.payload.restart)),
  };
}

// ---- The client and the admin ----------------------------------------------------------------------

export type TopicOffsets = { partition: number; offset: string }[];

/** A topic as created: explicit partitions and configs. */
export interface TopicSpec {
  topic: string;
  numPartitions: number;
  replicationFactor: number;
  configEntries?: { name: string; value: string }[];
}

/** The admin operations PayLink uses. */
export interface KafkaAdmin {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  listTopics(): Promise<string[]>;
  createTopics(request: { topics: TopicSpec[]; waitForLeaders?: boolean }): Promise<boolean>;
  fetchTopicOffsets(topic: string): Promise<{ partition: number; offset: string; high: string; low: string }[]>;
  fetchOffsets(request: {
    groupId: string;
    topics: string[];
  }): Promise<{ topic: string; partitions: { partition: number; offset: string }[] }[]>;
  setOffsets(request: { groupId: string; topic: string; partitions: TopicOffsets }): Promise<void>;
  describeGroups(groupIds: string[]): Promise<{
    groups: { groupId: string; state: string; members: { memberId: string; clientId: string; clientHost: string }[] }[];
  }>;
  deleteGroups(groupIds: string[]): Promise<unknown>;
}

/** The cluster connection; producers, consumers and admins are made from it here. */
export interface KafkaClient {
  admin(): KafkaAdmin;
}

export function createKafka(config: Config, clientId = config.KAFKA_CLIENT_ID): KafkaClient {
  return new Kafka({
    clientId,
    brokers: kafkaBrokers(config),
    logLevel: logLevel.WARN,
    retry: { initialRetryTime: 200, retries: 8 },
  });
}

/**
 * acks=all + idempotent: a retried send never duplicates inside Kafka. Retries are unbounded so the
 * idempotence holds; callers that must answer in bounded time (the edge) race the send with a timeout.
 * The default partitioner is murmur2, as Java clients (Debezium, Kafka Connect) hash keys.
 */
export function createProducer(kafka: KafkaClient): Producer {
  return (kafka as Kafka).producer({
    idempotent: true,
    maxInFlightRequests: 5,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 200, maxRetryTime: 5_000 },
  });
}

/** One Kafka transaction: what is sent in it becomes visible to read-committed consumers at commit, or never. */
export interface KafkaTransaction {
  /** Produces `records` inside the transaction (acks=all), grouped by topic in their order. */
  send(records: readonly TopicRecord[]): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** A transactional producer (one transaction at a time): the publish step's (./publish.ts). */
export interface TransactionalProducer {
  readonly transactionalId: string;
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  /** Begins a transaction; the first one registers the transactional id, fencing an older producer with it. */
  transaction(): Promise<KafkaTransaction>;
}

/** How long the coordinator lets an open transaction of a dead producer block read-committed consumers. */
const TRANSACTION_TIMEOUT_MS = 30_000;

/**
 * Starts at 10 ms: a transaction begun right after the last one committed is answered CONCURRENT_TRANSACTIONS
 * while the coordinator writes the last one's markers (a few ms), and kafkajs retries it like any error; from
 * 100 ms that wait was most of a group commit's time. 8 retries reach about the same 2.3 s before giving up.
 */
const TRANSACTIONAL_RETRY = { retries: 8, initialRetryTime: 10, maxRetryTime: 1_000 };

/**
 * Idempotent, acks=all, one request in flight, with a transactional id that stays the same for the same
 * process slot across restarts, so a restart fences its zombie. Retries are bounded, unlike createProducer's:
 * a transaction that fails is aborted as a whole, so a give-up never leaves half an event visible.
 */
export function createTransactionalProducer(kafka: KafkaClient, transactionalId: string): TransactionalProducer {
  const producer = (kafka as Kafka).producer({
    idempotent: true,
    transactionalId,
    maxInFlightRequests: 1,
    transactionTimeout: TRANSACTION_TIMEOUT_MS,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: TRANSACTIONAL_RETRY,
  });
  return {
    transactionalId,
    connect: () => producer.connect(),
    disconnect: () => producer.disconnect(),
    async transaction() {
      const txn = await producer.transaction();
      return {
        async send(records) {
          const topicMessages = groupByTopic(records);
          if (topicMessages.length > 0) await txn.sendBatch({ acks: -1, topicMessages });
        },
        commit: () => txn.commit(),
        abort: () => txn.abort(),
      };
    },
  };
}

export function topicSpecs(config: Config): TopicSpec[] {
  const common = [
    { name: 'min.insync.replicas', value: String(config.KAFKA_MIN_INSYNC_REPLICAS) },
    { name: 'unclean.leader.election.enable', value: 'false' },
  ];
  const week = String(7 * 24 * 3600 * 1000);
  const partitioned = (topic: string, retentionMs: string): TopicSpec => ({
    topic,
    numPartitions: config.KAFKA_TOPIC_PARTITIONS,
    replicationFactor: config.KAFKA_REPLICATION_FACTOR,
    configEntries: [...common, { name: 'retention.ms', value: retentionMs }],
  });
  const topics = topicsFor(config);
  return [
    partitioned(topics.paymentEvents, week),
    // Raw topics keep a week in Kafka; the S3 archive keeps 180 days.
    ...rawTopicsOf(topics).map((t) => partitioned(t, week)),
    {
      topic: topics.quarantine,
      numPartitions: 3,
      replicationFactor: config.KAFKA_REPLICATION_FACTOR,
      configEntries: [...common, { name: 'retention.ms', value: String(30 * 24 * 3600 * 1000) }],
    },
    partitioned(topics.fraudAlerts, String(30 * 24 * 3600 * 1000)),
  ];
}

/** Creates the project's topics with explicit partitions and configs; existing ones are left as they are. */
export async function ensureTopics(admin: KafkaAdmin, config: Config): Promise<string[]> {
  const existing = new Set(await admin.listTopics());
  const missing = topicSpecs(config).filter((t) => !existing.has(t.topic));
  if (missing.length > 0) await admin.createTopics({ topics: missing, waitForLeaders: true });
  return missing.map((t) => t.topic);
}

/** Each partition's end offset now: the next message any producer writes there. */
export async function topicEnds(admin: KafkaAdmin, topic: string): Promise<TopicOffsets> {
  return (await admin.fetchTopicOffsets(topic)).map((p) => ({ partition: p.partition, offset: p.high }));
}

/**
 * Each topic's ends once they have not moved for `quietMs` (or after `timeoutMs`, as they are then). These are
 * what read-committed readers see, and a commit returns before the coordinator has written its markers: for a
 * few ms a transaction that has committed is not yet readable. A reader that must find what was just committed
 * reads up to these ends, not to ends taken at once.
 */
export async function settledEnds(
  admin: KafkaAdmin,
  topics: readonly string[],
  quietMs = 100,
  timeoutMs = 10_000,
): Promise<Map<string, TopicOffsets>> {
  const read = async (): Promise<Map<string, TopicOffsets>> =>
    new Map(await Promise.all(topics.map(async (t) => [t, await topicEnds(admin, t)] as const)));
  const deadline = Date.now() + timeoutMs;
  let ends = await read();
  for (;;) {
    await new Promise((r) => setTimeout(r, quietMs));
    const again = await read();
    if (JSON.stringify([...again]) === JSON.stringify([...ends]) || Date.now() > deadline) return again;
    ends = again;
  }
}

/** Messages the group has not committed yet across a topic's partitions (0 = caught up). */
export async function consumerGroupLag(admin: KafkaAdmin, groupId: string, topic: string): Promise<number> {
  const [ends, committed] = await Promise.all([
    admin.fetchTopicOffsets(topic),
    admin.fetchOffsets({ groupId, topics: [topic] }),
  ]);
  const done = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
  let lag = 0n;
  for (const e of ends) {
    const high = BigInt(e.high);
    const at = done.get(e.partition) ?? -1n;
    if (high > 0n && at < high) lag += high - (at < 0n ? 0n : at);
  }
  return Number(lag);
}

/**
 * Reads topics with a throwaway group (deleted after) from the given offsets per topic, or from the
 * beginning, handing every message to `onMessage` until it answers true. False when `timeoutMs` passed first.
 */
export async function readTopics(
  kafka: KafkaClient,
  from: ReadonlyMap<string, TopicOffsets | 'beginning'>,
  onMessage: (topic: string, partition: number, message: ConsumedMessage) => boolean,
  timeoutMs: number,
  /**
   * Called after each fetched batch with the next offset to read in that partition, including past
   * transaction markers and aborted records no message shows (the edge produces transactionally, so the
   * last message of a partition is followed by a control record): `true` ends the read, as from onMessage.
   */
  onPosition?: (topic: string, partition: number, next: bigint) => boolean,
): Promise<boolean> {
  const groupId = `paylink-reader-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
  const admin = kafka.admin();
  await admin.connect();
  const consumer = (kafka as Kafka).consumer({ groupId, allowAutoTopicCreation: false });
  let timer: NodeJS.Timeout | undefined;
  try {
    for (const [topic, offsets] of from) {
      if (offsets !== 'beginning') await admin.setOffsets({ groupId, topic, partitions: offsets });
    }
    await consumer.connect();
    await consumer.subscribe({ topics: [...from.keys()], fromBeginning: true });
    return await new Promise<boolean>((resolve, reject) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
      if (onPosition) {
        // Emitted for batches of only control records too, which never reach eachMessage.
        consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
          if (onPosition(payload.topic, payload.partition, BigInt(payload.lastOffset) + 1n)) resolve(true);
        });
      }
      consumer
        .run({
          eachMessage: async ({ topic, partition, message }) => {
            if (onMessage(topic, partition, consumed(message))) resolve(true);
          },
        })
        .catch(reject);
    });
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  }
}

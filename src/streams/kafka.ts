import {
  Kafka,
  Partitioners,
  logLevel,
  type Admin,
  type Consumer,
  type EachBatchPayload,
  type ITopicConfig,
  type KafkaMessage,
  type Message,
  type Producer,
} from 'kafkajs';
import { type Config, kafkaBrokers, loadConfig } from '../config';

// The one Kafka module: kafkajs stays behind it so the client can be swapped (kafkajs#1603).

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
} as const;

export type TopicSet = { readonly [K in keyof typeof TOPIC_NAMES]: string };

/**
 * `paylink.<name>`, or `paylink.<namespace>.<name>` for a namespace (KAFKA_TOPIC_NAMESPACE): the edge
 * benchmark writes to its own topics, so its events never reach the dev stack's router as payments.
 */
export function topicsFor(namespace: string): TopicSet {
  const prefix = namespace === '' ? 'paylink.' : `paylink.${namespace}.`;
  return Object.fromEntries(Object.entries(TOPIC_NAMES).map(([k, name]) => [k, prefix + name])) as TopicSet;
}

export const TOPICS: TopicSet = topicsFor(loadConfig().KAFKA_TOPIC_NAMESPACE);

/** Topics that hold events as they entered PayLink (the archive's, replay's and quality's source). */
export const rawTopicsOf = (t: TopicSet): string[] => [
  t.rawWebhooks,
  t.rawGateways,
  t.rawPartnerApi,
  t.cdcPayments,
  t.cdcLedgerEntries,
];

export const RAW_TOPICS: readonly string[] = rawTopicsOf(TOPICS);

/** A consumed message as it goes to quarantine: its own key, bytes and headers, plus why and where it came from. */
export function quarantineMessage(topic: string, partition: number, message: KafkaMessage, reason: string): Message {
  return {
    key: message.key,
    value: message.value,
    headers: {
      ...message.headers,
      'quarantine-reason': reason,
      'source-topic': topic,
      'source-partition': String(partition),
      'source-offset': message.offset,
    },
  };
}

/** Batch consumption with manual commits, 3 partitions at a time: `eachBatch` ends with commitBatch once its work is durable. */
export function runBatches(consumer: Consumer, eachBatch: (payload: EachBatchPayload) => Promise<void>): Promise<void> {
  return consumer.run({ autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: 3, eachBatch });
}

/**
 * Call once the batch's work is durable (signalled, produced, counted): commits the next offset to read,
 * only while this member still owns the partition; otherwise the batch is redelivered, which every
 * consumer here makes harmless. Then heartbeats.
 */
export async function commitBatch(consumer: Consumer, payload: EachBatchPayload): Promise<void> {
  const { batch } = payload;
  const last = batch.messages[batch.messages.length - 1];
  if (!last || !payload.isRunning() || payload.isStale()) return;
  payload.resolveOffset(last.offset);
  await consumer.commitOffsets([
    { topic: batch.topic, partition: batch.partition, offset: (BigInt(last.offset) + 1n).toString() },
  ]);
  await payload.heartbeat();
}

export function createKafka(config: Config, clientId = config.KAFKA_CLIENT_ID): Kafka {
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
export function createProducer(kafka: Kafka): Producer {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 5,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 200, maxRetryTime: 5_000 },
  });
}

export function createConsumer(kafka: Kafka, groupId: string): Consumer {
  return kafka.consumer({ groupId, allowAutoTopicCreation: false, sessionTimeout: 30_000, heartbeatInterval: 3_000 });
}

export function topicSpecs(config: Config): ITopicConfig[] {
  const common = [
    { name: 'min.insync.replicas', value: String(config.KAFKA_MIN_INSYNC_REPLICAS) },
    { name: 'unclean.leader.election.enable', value: 'false' },
  ];
  const week = String(7 * 24 * 3600 * 1000);
  const partitioned = (topic: string, retentionMs: string): ITopicConfig => ({
    topic,
    numPartitions: config.KAFKA_TOPIC_PARTITIONS,
    replicationFactor: config.KAFKA_REPLICATION_FACTOR,
    configEntries: [...common, { name: 'retention.ms', value: retentionMs }],
  });
  const topics = topicsFor(config.KAFKA_TOPIC_NAMESPACE);
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
  ];
}

/** Messages the group has not committed yet across a topic's partitions (0 = caught up). */
export async function consumerGroupLag(admin: Admin, groupId: string, topic: string): Promise<number> {
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

/** Creates the project's topics with explicit partitions and configs; existing ones are left as they are. */
export async function ensureTopics(admin: Admin, config: Config): Promise<string[]> {
  const existing = new Set(await admin.listTopics());
  const missing = topicSpecs(config).filter((t) => !existing.has(t.topic));
  if (missing.length > 0) await admin.createTopics({ topics: missing, waitForLeaders: true });
  return missing.map((t) => t.topic);
}

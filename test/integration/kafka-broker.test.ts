import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Kafka, Partitioners, logLevel, type Admin, type Consumer, type Producer } from 'kafkajs';
import { kafkaBrokers, loadConfig } from '../../src/config';

// Talks to the real broker at KAFKA_BROKERS (started by the stack); fails, never skips, when it is down.

const config = loadConfig();
const brokers = kafkaBrokers(config);
const kafka = new Kafka({
  clientId: `${config.KAFKA_CLIENT_ID}-broker-test`,
  brokers,
  connectionTimeout: 3000,
  retry: { retries: 5 },
  // kafkajs logs retriable coordinator-loading responses as ERROR; real failures still throw.
  logLevel: logLevel.NOTHING,
});

const topic = `paylink-it-broker-${randomUUID()}`;
const groupId = `paylink-it-broker-${randomUUID()}`;
const admin: Admin = kafka.admin();
let topicCreated = false;

interface Sent {
  key: string;
  value: string;
}
interface Seen extends Sent {
  partition: number;
}

before(async () => {
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    assert.ok(cluster.brokers.length > 0, 'describeCluster returned no brokers');
  } catch (err) {
    throw new Error(
      `Kafka is not answering at ${brokers.join(',')} — start it with the stack (npm run stack) first: ${String(err)}`,
    );
  }
});

after(async () => {
  if (topicCreated) await admin.deleteTopics({ topics: [topic], timeout: 10_000 });
  await admin.disconnect();
});

void test(
  'idempotent producer round-trips keyed messages through a 3-partition topic',
  { timeout: 90_000 },
  async () => {
    topicCreated = await admin.createTopics({
      topics: [{ topic, numPartitions: 3, replicationFactor: config.KAFKA_REPLICATION_FACTOR }],
      waitForLeaders: true,
    });
    assert.equal(topicCreated, true, `topic ${topic} was not created`);
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    assert.equal(metadata.topics[0]?.partitions.length, 3);

    const keys = ['acct-001', 'acct-002', 'acct-003', 'acct-004'];
    const sent: Sent[] = [];
    for (const key of keys) {
      for (let seq = 0; seq < 3; seq++) sent.push({ key, value: JSON.stringify({ key, seq }) });
    }

    const producer: Producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // murmur2 like the Java client, so a key maps to the same partition from any producer.
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    try {
      const results = await producer.send({
        topic,
        acks: -1,
        messages: sent.map((m) => ({ key: m.key, value: m.value })),
      });
      assert.ok(results.length > 0 && results.every((r) => r.errorCode === 0), JSON.stringify(results));
    } finally {
      await producer.disconnect();
    }

    const consumer: Consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1000 });
    const seen: Seen[] = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      const allSeen = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`consumed ${seen.length}/${sent.length} messages within 30 s`)),
          30_000,
        );
        consumer
          .run({
            eachMessage: ({ partition, message }) => {
              seen.push({ key: String(message.key), value: String(message.value), partition });
              if (seen.length >= sent.length) {
                clearTimeout(timer);
                resolve();
              }
              return Promise.resolve();
            },
          })
          .catch((err: unknown) => {
            clearTimeout(timer);
            reject(err instanceof Error ? err : new Error(String(err)));
          });
      });
      await allSeen;
    } finally {
      await consumer.disconnect();
    }

    const byValue = (a: Sent, b: Sent): number => a.value.localeCompare(b.value);
    assert.deepEqual(seen.map(({ key, value }) => ({ key, value })).sort(byValue), [...sent].sort(byValue));

    for (const key of keys) {
      const forKey = seen.filter((m) => m.key === key);
      const partitions = new Set(forKey.map((m) => m.partition));
      assert.equal(partitions.size, 1, `key ${key} landed on partitions ${[...partitions].join(',')}`);
      // Within one partition the per-key order is the send order.
      assert.deepEqual(
        forKey.map((m) => m.value),
        sent.filter((m) => m.key === key).map((m) => m.value),
      );
    }
    assert.ok(seen.every((m) => m.partition >= 0 && m.partition < 3));
  },
);

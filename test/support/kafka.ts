import type { Admin, Kafka } from 'kafkajs';
import { uniqueId } from './stack';

// Reading the shared topics from where they ended when a test started: however much benchmarks and
// earlier runs put there, a test reads only its own messages.

export type TopicOffsets = { partition: number; offset: string }[];

/** Each partition's end offset now: the next message any producer writes there. */
export async function topicEnds(admin: Admin, topic: string): Promise<TopicOffsets> {
  return (await admin.fetchTopicOffsets(topic)).map((p) => ({ partition: p.partition, offset: p.high }));
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
  kafka: Kafka,
  topic: string,
  from: TopicOffsets,
  keep: (key: string) => boolean,
  done: (kept: ReadMessage[]) => boolean,
  timeoutMs = 30_000,
): Promise<ReadMessage[]> {
  const groupId = uniqueId('test-reader');
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.setOffsets({ groupId, topic, partitions: from });
  } finally {
    await admin.disconnect();
  }
  const consumer = kafka.consumer({ groupId });
  const kept: ReadMessage[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const keys = kept.map((m) => m.key).join(', ') || 'none';
        reject(new Error(`reading ${topic}: not done within ${timeoutMs} ms; kept ${kept.length} (keys: ${keys})`));
      }, timeoutMs);
      consumer
        .run({
          eachMessage: async ({ message }) => {
            const key = message.key?.toString() ?? '';
            if (!keep(key)) return;
            const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]));
            kept.push({ key, value: String(message.value), headers });
            if (done(kept)) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch((err: Error) => {
          clearTimeout(timer);
          reject(err);
        });
    });
  } finally {
    await consumer.disconnect();
  }
  return kept;
}

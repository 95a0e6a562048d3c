import { Kafka, logLevel } from 'kafkajs';
import { kafkaBrokers } from '../../src/config';
import { type KafkaClient, type TopicOffsets, readTopics } from '../../src/streams/kafka';
import { config } from './stack';

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

import { loadConfig } from '../../config';
import { createLogger } from '../../logger';
import { runConsumer, runMain } from '../../streams/consumer-runner';
import { createConsumer, createKafka, createProducer, topicsFor } from '../../streams/kafka';
import { cdcNormalizerBatches, cdcTopicsOf } from './normalizer-consumer';

// `npm run cdc-normalizer`: the CDC normalizer (cdc topics → created facts) in consumer group
// CDC_NORMALIZER_GROUP. Scale it by replicas (up to the cdc topics' partitions); it reads only Kafka,
// so it runs unchanged behind the reader (`npm run cdc`, one per slot) or a real Debezium connector.

const log = createLogger('cdc-normalizer');

async function main(): Promise<void> {
  const config = loadConfig();
  const topics = topicsFor(config);
  const kafka = createKafka(config, 'paylink-cdc-normalizer');
  const producer = createProducer(kafka);
  const consumer = createConsumer(kafka, config.CDC_NORMALIZER_GROUP, config.KAFKA_SESSION_TIMEOUT_MS);
  try {
    await producer.connect();
    await runConsumer({
      consumer,
      topics: cdcTopicsOf(topics),
      handle: cdcNormalizerBatches({ producer, topics, log }),
      log,
    });
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
  }
}

runMain(log, main);

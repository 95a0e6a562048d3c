import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../config';
import { createLogger, errorMessage } from '../../logger';
import { createOltpPool } from '../../stores/oltp';
import { openVault } from '../../stores/vault';
import { runMain, startConsumer, untilSignal } from '../../streams/consumer-runner';
import { createConsumer, createKafka, createProducer, topicsFor } from '../../streams/kafka';
import { tokenizerFromConfig } from '../tokenize';
import { cdcNormalizerBatches, cdcTopicsOf } from './normalizer-consumer';
import { CDC_FAULT_EXIT_CODE, createCdcReader } from './reader';

// `npm run cdc`: the CDC reader (slot → Debezium envelopes on Kafka) and, as a separate component
// with its own consumer group, the normalizer (cdc topics → created facts). Either works without the other.

const log = createLogger('cdc');

async function main(): Promise<void> {
  const config = loadConfig();
  const topics = topicsFor(config);
  const pool = createOltpPool(config);
  const tokenizer = tokenizerFromConfig(config);
  const vault = await openVault(config);
  const kafka = createKafka(config, 'paylink-cdc');
  const producer = createProducer(kafka);
  const consumer = createConsumer(kafka, config.CDC_NORMALIZER_GROUP);
  const stopped = untilSignal();
  let running = true;
  void stopped.then(() => (running = false));
  try {
    await producer.connect();
    const reader = createCdcReader({
      pool,
      producer,
      topics,
      tokenizer,
      vault,
      log,
      slot: config.CDC_SLOT,
      publication: config.CDC_PUBLICATION,
      schema: config.CDC_SCHEMA,
      serverName: config.CDC_SERVER_NAME,
      batchSize: config.CDC_BATCH_SIZE,
      afterProduce: config.PAYLINK_FAULT_CDC_EXIT_BEFORE_ADVANCE
        ? (batch) => {
            if (batch.records === 0) return;
            log.warn('fault injection: exiting after produce, before advancing the slot', batch);
            process.exit(CDC_FAULT_EXIT_CODE);
          }
        : undefined,
    });
    const started = await reader.start();
    const normalizer = await startConsumer({
      consumer,
      topics: cdcTopicsOf(topics),
      handle: cdcNormalizerBatches({ producer, topics, log }),
      log,
      ready: { slot: config.CDC_SLOT, publication: config.CDC_PUBLICATION, schema: config.CDC_SCHEMA, ...started },
      stop: stopped,
    });
    // A normalizer crash stops the reader too: the process exits non-zero and is restarted whole.
    const crashed = normalizer.done.catch((err: unknown) => {
      running = false;
      throw err;
    });

    const pollLoop = async (): Promise<void> => {
      let backoffMs = config.CDC_POLL_INTERVAL_MS;
      while (running) {
        try {
          const result = await reader.poll();
          backoffMs = config.CDC_POLL_INTERVAL_MS;
          if (result.records > 0) log.info('changes produced', { ...result });
          else await sleep(config.CDC_POLL_INTERVAL_MS);
        } catch (err) {
          // The slot has not advanced past anything unproduced: retrying re-reads the same changes.
          log.error('cdc poll failed; retrying', { error: errorMessage(err), backoffMs });
          await sleep(backoffMs);
          backoffMs = Math.min(backoffMs * 2, 30_000);
        }
      }
    };
    await Promise.all([pollLoop(), crashed]);
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await vault.close().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }
}

runMain(log, main);

import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../config';
import { createLogger, errorMessage } from '../../logger';
import { createOltpPool } from '../../simulator/oltp';
import { openVault } from '../../stores/vault';
import { createConsumer, createKafka, createProducer } from '../../streams/kafka';
import { tokenizerFromConfig } from '../tokenize';
import { runCdcNormalizer } from './normalizer-consumer';
import { CDC_FAULT_EXIT_CODE, createCdcReader } from './reader';

// `npm run cdc`: the CDC reader (slot → Debezium envelopes on Kafka) and, as a separate component
// with its own consumer group, the normalizer (cdc topics → created facts). Either works without the other.

const log = createLogger('cdc');

async function main(): Promise<void> {
  const config = loadConfig();
  const pool = createOltpPool(config);
  const tokenizer = tokenizerFromConfig(config);
  const vault = await openVault(config);
  const kafka = createKafka(config, 'paylink-cdc');
  const producer = createProducer(kafka);
  const consumer = createConsumer(kafka, config.CDC_NORMALIZER_GROUP);
  let running = true;
  const stopped = new Promise<void>((resolve) => {
    const stop = (): void => {
      running = false;
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  try {
    await Promise.all([producer.connect(), consumer.connect()]);
    const reader = createCdcReader({
      pool,
      producer,
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

    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
    const crashed = new Promise<never>((_, reject) =>
      consumer.on(consumer.events.CRASH, (e) => {
        if (!e.payload.restart) reject(e.payload.error);
      }),
    );
    await runCdcNormalizer({ consumer, producer, log });
    await Promise.race([joined, crashed]);
    log.info('ready', {
      slot: config.CDC_SLOT,
      publication: config.CDC_PUBLICATION,
      schema: config.CDC_SCHEMA,
      group: config.CDC_NORMALIZER_GROUP,
      ...started,
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
    await Promise.race([Promise.all([pollLoop(), stopped]), crashed]);
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await vault.close().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  log.error('cdc failed', { error: errorMessage(err) });
  process.exit(1);
});

import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../config';
import { createLogger, errorMessage } from '../../logger';
import { createOltpPool } from '../../stores/oltp';
import { openVault } from '../../stores/vault';
import { runMain, untilSignal } from '../../streams/consumer-runner';
import { createKafka } from '../../streams/kafka';
import { createEdgePublisher } from '../edge-publisher';
import { CDC_FAULT_EXIT_CODE, cdcReaderFromConfig } from './reader';

// `npm run cdc`: the CDC reader (slot → Debezium envelopes on Kafka). Exactly one per slot: a second
// one would emit every change twice and race the first over the slot's position. The normalizer
// that turns the envelopes into facts is its own process (`npm run cdc-normalizer`), scaled by replicas.

const log = createLogger('cdc-reader');

async function main(): Promise<void> {
  const config = loadConfig();
  const pool = createOltpPool(config);
  const vault = await openVault(config);
  const kafka = createKafka(config, 'paylink-cdc-reader');
  // The slot is this reader's identity: one reader per slot, and a restarted one fences its zombie.
  const publisher = createEdgePublisher(config, kafka, 'paylink-cdc', config.CDC_SLOT, log);
  let running = true;
  void untilSignal().then(() => (running = false));
  try {
    const reader = cdcReaderFromConfig(config, {
      pool,
      publisher,
      vault,
      log,
      afterProduce: config.PAYLINK_FAULT_CDC_EXIT_BEFORE_ADVANCE
        ? (batch) => {
            if (batch.records === 0) return;
            log.warn('fault injection: exiting after produce, before advancing the slot', batch);
            process.exit(CDC_FAULT_EXIT_CODE);
          }
        : undefined,
    });
    const started = await reader.start();
    log.info('ready', {
      slot: config.CDC_SLOT,
      publication: config.CDC_PUBLICATION,
      schema: config.CDC_SCHEMA,
      ...started,
    });

    let backoffMs = config.CDC_POLL_INTERVAL_MS;
    while (running) {
      try {
        const result = await reader.poll();
        backoffMs = config.CDC_POLL_INTERVAL_MS;
        if (result.records > 0) log.info('changes produced', { ...result, ...reader.counters });
        else await sleep(config.CDC_POLL_INTERVAL_MS);
      } catch (err) {
        // The slot has not advanced past anything unproduced: retrying re-reads the same changes.
        log.error('cdc poll failed; retrying', { error: errorMessage(err), backoffMs, ...reader.counters });
        await sleep(backoffMs);
        // Capped at 5 s: once Postgres or Kafka is back, changes flow within seconds. A longer wait only
        // delays CDC's facts behind the other paths' and reopens payments that closed meanwhile.
        backoffMs = Math.min(backoffMs * 2, 5_000);
      }
    }
    log.info('stopped', { slot: config.CDC_SLOT, ...reader.counters });
  } finally {
    await publisher.close().catch(() => undefined);
    await vault.close().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }
}

runMain(log, main);

import type { Pool } from 'pg';
import { loadConfig } from '../../config';
import { createLogger, errorMessage } from '../../logger';
import { retryTransient } from '../../resilience';
import { createRiskPool, riskRulesOf, sweepRiskStore } from '../../stores/risk';
import { runConsumer, runMain, untilSignal } from '../consumer-runner';
import { createConsumer, createKafka, createProducer, ensureTopics, topicsFor } from '../kafka';
import { createFraudViews } from './fraud-views-consumer';

// `npm run fraud-views`: the fraud and risk views' consumer (group FRAUD_VIEWS_GROUP) until SIGTERM, which
// flushes what is queued to the risk store, commits it and leaves the group.

const log = createLogger('fraud-views');

/** The consumer runs as the application role and does not migrate: say so if the owner has not yet. */
async function requireRiskTables(pool: Pool): Promise<void> {
  try {
    await retryTransient(
      'postgres',
      'checking the risk tables',
      () => pool.query('select 1 from risk.window_counts, risk.consumed_offsets, risk.alerts limit 0'),
      { log },
    );
  } catch (err) {
    throw new Error(`risk tables are not usable (${errorMessage(err)}); run \`npm run migrate\` first`);
  }
}

runMain(log, async () => {
  const config = loadConfig();
  const topics = topicsFor(config);
  const kafka = createKafka(config, 'paylink-fraud-views');
  const admin = kafka.admin();
  const consumer = createConsumer(kafka, config.FRAUD_VIEWS_GROUP, config.KAFKA_SESSION_TIMEOUT_MS);
  const producer = createProducer(kafka);
  const pool = createRiskPool(config, 4);
  let sweep: NodeJS.Timeout | undefined;
  try {
    await requireRiskTables(pool);
    await admin.connect();
    await ensureTopics(admin, config);
    await admin.disconnect();
    await producer.connect();
    const views = createFraudViews({
      pool,
      topics,
      group: config.FRAUD_VIEWS_GROUP,
      log,
      producer,
      settings: {
        flushMs: config.FRAUD_VIEWS_FLUSH_MS,
        graceMs: config.FRAUD_VIEWS_GRACE_MS,
        maxPending: config.FRAUD_VIEWS_MAX_PENDING,
        rules: riskRulesOf(config),
      },
      commitOffset: (topic, partition, offset) => consumer.commitOffset(topic, partition, offset),
    });
    await views.start();
    sweep = setInterval(
      () =>
        void sweepRiskStore(pool, config.FRAUD_VIEWS_RETENTION_DAYS, config.FRAUD_VIEWS_DEDUP_RETENTION_HOURS).then(
          (deleted) => deleted > 0 && log.info('retention sweep', { deleted }),
          (err: unknown) => log.warn('retention sweep failed; next hour', { error: errorMessage(err) }),
        ),
      3_600_000,
    );
    await runConsumer({
      consumer,
      topics: [topics.rawGateways, topics.paymentEvents],
      handle: views.handle,
      log,
      ready: { flushMs: config.FRAUD_VIEWS_FLUSH_MS, graceMs: config.FRAUD_VIEWS_GRACE_MS },
      // Flush the queue while still in the group, so its offsets can be committed.
      stop: untilSignal().then(() => views.stop()),
    });
    log.info('counted since start', { ...views.counters });
  } finally {
    clearInterval(sweep);
    await consumer.disconnect();
    await producer.disconnect().catch(() => undefined);
    await pool.end();
  }
});

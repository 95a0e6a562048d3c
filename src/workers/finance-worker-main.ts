import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../config';
import { createLogger } from '../logger';
import { createOltpPool } from '../stores/oltp';
import { createPool } from '../stores/postgres';
import { createS3Client } from '../stores/s3';
import { connectSnowflake } from '../stores/snowflake';
import { runMain } from '../streams/consumer-runner';
import { FINANCE_TASK_QUEUE } from '../workflows/finance-load';
import {
  createFinanceWorker,
  ensureDataQualitySchedule,
  ensureFinanceSchedule,
  ensureReconciliationSchedule,
} from './finance-worker';

// `npm run finance-worker`: the finance worker process (FinanceLoad workflows, ledger → Snowflake), and
// the Schedule that starts a load every FINANCE_LOAD_INTERVAL_S seconds (0: leave the schedule alone).
const log = createLogger('finance-worker');
const DATA_QUALITY_INTERVAL_S = 300;

async function main(): Promise<void> {
  const config = loadConfig();
  const pool = createPool(config, 4);
  const oltp = createOltpPool(config, 2);
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const snowflake = await connectSnowflake(config);
  const s3 = createS3Client(config);
  try {
    const faultHoldBeforeCommitMs = config.FINANCE_FAULT_HOLD_BEFORE_COMMIT_MS;
    const worker = await createFinanceWorker({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      snowflake,
      oltp,
      oltpSchema: config.CDC_SCHEMA,
      log,
      faultHoldBeforeCommitMs,
      reconciliation: { oltp, s3, bucket: config.S3_BUCKET },
    });
    const intervalS = config.FINANCE_LOAD_INTERVAL_S;
    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    const schedule = intervalS > 0 ? await ensureFinanceSchedule(client, intervalS) : 'none';
    // Data quality runs with the loads it gates, every DATA_QUALITY_INTERVAL_S (not when loads are off).
    const dqSchedule = intervalS > 0 ? await ensureDataQualitySchedule(client, DATA_QUALITY_INTERVAL_S) : 'none';
    const reconcileHour = config.RECONCILIATION_SCHEDULE_HOUR_UTC;
    const reconciliationSchedule =
      reconcileHour >= 0 ? await ensureReconciliationSchedule(client, reconcileHour) : 'none';
    // The SDK's runtime shuts the worker down gracefully on SIGINT/SIGTERM.
    log.info('ready', {
      taskQueue: FINANCE_TASK_QUEUE,
      schedule,
      intervalS,
      dqSchedule,
      reconciliationSchedule,
      ...(faultHoldBeforeCommitMs > 0 && { faultHoldBeforeCommitMs }),
    });
    await worker.run();
  } finally {
    await snowflake.close().catch(() => undefined);
    await pool.end();
    await oltp.end();
    s3.destroy();
    await connection.close();
  }
}

runMain(log, main);

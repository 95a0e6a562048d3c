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
import { createFinanceWorker, ensureFinanceSchedule, ensureReconciliationSchedule } from './finance-worker';

// `npm run finance-worker`: the finance worker process (FinanceLoad workflows, ledger → Snowflake), and
// the Schedule that starts a load every FINANCE_LOAD_INTERVAL_S seconds (0: leave the schedule alone).
const log = createLogger('finance-worker');

async function main(): Promise<void> {
  const config = loadConfig();
  const pool = createPool(config, 4);
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const snowflake = await connectSnowflake(config);
  const oltp = createOltpPool(config, 2);
  const s3 = createS3Client(config);
  try {
    const faultHoldBeforeCommitMs = config.FINANCE_FAULT_HOLD_BEFORE_COMMIT_MS;
    const worker = await createFinanceWorker({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      snowflake,
      log,
      faultHoldBeforeCommitMs,
      reconciliation: { oltp, s3, bucket: config.S3_BUCKET },
    });
    const intervalS = config.FINANCE_LOAD_INTERVAL_S;
    const schedule =
      intervalS > 0
        ? await ensureFinanceSchedule(new Client({ connection, namespace: config.TEMPORAL_NAMESPACE }), intervalS)
        : 'none';
    const reconcileHour = config.RECONCILIATION_SCHEDULE_HOUR_UTC;
    const reconciliationSchedule =
      reconcileHour >= 0
        ? await ensureReconciliationSchedule(
            new Client({ connection, namespace: config.TEMPORAL_NAMESPACE }),
            reconcileHour,
          )
        : 'none';
    // The SDK's runtime shuts the worker down gracefully on SIGINT/SIGTERM.
    log.info('ready', {
      taskQueue: FINANCE_TASK_QUEUE,
      schedule,
      intervalS,
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

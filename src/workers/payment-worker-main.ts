import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../config';
import { createLogger } from '../logger';
import { createPool } from '../stores/postgres';
import { createS3Client } from '../stores/s3';
import { runMain } from '../streams/consumer-runner';
import { PAYMENT_TASK_QUEUE } from '../workflows/payment';
import { createPaymentWorker } from './payment-worker';

// `npm run worker`: the payment worker process (workflows; ledger, SLA and backfill activities).
const log = createLogger('payment-worker');

async function main(): Promise<void> {
  const config = loadConfig();
  const pool = createPool(config); // first (it connects lazily): a refused production secret stops the start at once
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const s3 = createS3Client(config);
  try {
    const faultPostDelayMs = config.PAYLINK_FAULT_POST_DELAY_MS;
    const worker = await createPaymentWorker({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      faultPostDelayMs,
      // Backfills replay the raw archive through the router's path, which signals payments like the router.
      backfill: {
        s3,
        client: new Client({ connection, namespace: config.TEMPORAL_NAMESPACE }),
      },
    });
    // The SDK's runtime shuts the worker down gracefully on SIGINT/SIGTERM.
    log.info('ready', { taskQueue: PAYMENT_TASK_QUEUE, ...(faultPostDelayMs > 0 && { faultPostDelayMs }) });
    await worker.run();
  } finally {
    s3.destroy();
    await pool.end();
    await connection.close();
  }
}

runMain(log, main);

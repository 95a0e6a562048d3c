import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Pool } from 'pg';
import { createLedgerActivities } from '../activities/ledger';
import { createSlaActivities } from '../activities/sla';
import { loadConfig } from '../config';
import { createLogger, errorMessage } from '../logger';
import { createPool } from '../stores/postgres';
import { PAYMENT_TASK_QUEUE } from '../workflows/payment';

const log = createLogger('payment-worker');

export interface PaymentWorkerDeps {
  connection: NativeConnection;
  namespace: string;
  pool: Pool;
  taskQueue?: string;
  /** A prebuilt bundle (production) or, by default, bundle src/workflows at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

export async function createPaymentWorker(deps: PaymentWorkerDeps): Promise<Worker> {
  return Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue ?? PAYMENT_TASK_QUEUE,
    ...(deps.workflowBundle
      ? { workflowBundle: deps.workflowBundle }
      : { workflowsPath: require.resolve('../workflows') }),
    activities: { ...createLedgerActivities(deps.pool), ...createSlaActivities(deps.pool) },
  });
}

async function main(): Promise<void> {
  const config = loadConfig();
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const pool = createPool(config);
  try {
    const worker = await createPaymentWorker({ connection, namespace: config.TEMPORAL_NAMESPACE, pool });
    // The SDK's runtime shuts the worker down gracefully on SIGINT/SIGTERM.
    log.info('ready', { taskQueue: PAYMENT_TASK_QUEUE });
    await worker.run();
  } finally {
    await pool.end();
    await connection.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    log.error('worker failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

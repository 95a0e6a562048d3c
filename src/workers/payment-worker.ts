import { setTimeout as sleep } from 'node:timers/promises';
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
  /** Crash tests only (0 = off): hold each posting this long after its transaction committed. */
  faultPostDelayMs?: number;
}

export async function createPaymentWorker(deps: PaymentWorkerDeps): Promise<Worker> {
  const ledger = createLedgerActivities(deps.pool);
  const delayMs = deps.faultPostDelayMs ?? 0;
  if (delayMs > 0) {
    const post = ledger.postJournalEntry.bind(ledger);
    ledger.postJournalEntry = async (request) => {
      const result = await post(request);
      await sleep(delayMs); // committed, not yet reported to Temporal: where a kill -9 hurts most
      return result;
    };
  }
  return Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue ?? PAYMENT_TASK_QUEUE,
    ...(deps.workflowBundle
      ? { workflowBundle: deps.workflowBundle }
      : { workflowsPath: require.resolve('../workflows') }),
    activities: { ...ledger, ...createSlaActivities(deps.pool) },
  });
}

async function main(): Promise<void> {
  const config = loadConfig();
  const pool = createPool(config); // first (it connects lazily): a refused production secret stops the start at once
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const faultPostDelayMs = config.PAYLINK_FAULT_POST_DELAY_MS;
    const worker = await createPaymentWorker({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      faultPostDelayMs,
    });
    // The SDK's runtime shuts the worker down gracefully on SIGINT/SIGTERM.
    log.info('ready', { taskQueue: PAYMENT_TASK_QUEUE, ...(faultPostDelayMs > 0 && { faultPostDelayMs }) });
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

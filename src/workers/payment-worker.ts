import { setTimeout as sleep } from 'node:timers/promises';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Pool } from 'pg';
import { type BackfillDeps, createBackfillActivities } from '../activities/backfill';
import { createLedgerActivities } from '../activities/ledger';
import { createSlaActivities } from '../activities/sla';
import { loadConfig } from '../config';
import { createLogger } from '../logger';
import { type RoutingPolicy, routingPolicy } from '../streams/payment-router';
import { PAYMENT_TASK_QUEUE } from '../workflows/payment';
import { workflowCode } from './workflow-code';

// The payment worker: workflows plus ledger and SLA activities. The process: payment-worker-main.ts.

export interface PaymentWorkerDeps {
  connection: NativeConnection;
  namespace: string;
  pool: Pool;
  taskQueue?: string;
  /** A prebuilt bundle (production) or, by default, bundle src/workflows at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** How runs the SLA sweep starts are configured; by default the router's settings from the config. */
  routing?: Omit<RoutingPolicy, 'taskQueue'>;
  /** Crash tests only (0 = off): hold each posting this long after its transaction committed. */
  faultPostDelayMs?: number;
  /** An S3 client and a Temporal client: with them the worker also runs backfills (the router's path). */
  backfill?: Pick<BackfillDeps, 's3' | 'client'>;
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
  const taskQueue = deps.taskQueue ?? PAYMENT_TASK_QUEUE;
  const routing = deps.routing ?? routingPolicy(loadConfig());
  return Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue,
    ...workflowCode(deps.workflowBundle),
    activities: {
      ...ledger,
      ...createSlaActivities(deps.pool, { ...routing, taskQueue }),
      ...(deps.backfill &&
        createBackfillActivities({
          ...deps.backfill,
          pool: deps.pool,
          policy: { ...routing, taskQueue },
          log: createLogger('backfill'),
          timestampSkewMs: loadConfig().ARCHIVE_TIMESTAMP_SKEW_MS,
        })),
    },
  });
}

import type { Client } from '@temporalio/client';
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Pool } from 'pg';
import { createDataQualityActivities } from '../activities/data-quality';
import { createFinanceLoadActivities } from '../activities/finance-load';
import { type ReconciliationDeps, createReconciliationActivities } from '../activities/reconciliation';
import type { Logger } from '../logger';
import type { SnowflakeSession } from '../stores/snowflake';
import { DATA_QUALITY_SCHEDULE_ID, dataQualityWorkflow } from '../workflows/data-quality';
import { FINANCE_SCHEDULE_ID, FINANCE_TASK_QUEUE, financeLoadWorkflow } from '../workflows/finance-load';
import {
  RECONCILIATION_SCHEDULE_ID,
  RECONCILIATION_TASK_QUEUE,
  reconciliationWorkflow,
} from '../workflows/reconciliation';
import { workflowCode } from './workflow-code';

// The finance worker: FinanceLoad workflows and their activities on their own task queue, so loads
// to Snowflake never compete with payment postings for worker slots. The process: finance-worker-main.ts.

export interface FinanceWorkerDeps {
  connection: NativeConnection;
  namespace: string;
  pool: Pool;
  snowflake: SnowflakeSession;
  /** PayLink's OLTP database and schema: the data-quality check of its legacy ledger rows. */
  oltp: Pool;
  oltpSchema: string;
  log: Logger;
  taskQueue?: string;
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Crash tests only (0 = off). */
  faultHoldBeforeCommitMs?: number;
  /** ReconciliationWorkflow's inputs (docs/reconciliation.md): the OLTP database and the settlement files' bucket. */
  reconciliation?: Pick<ReconciliationDeps, 'oltp' | 's3' | 'bucket'>;
}

export async function createFinanceWorker(deps: FinanceWorkerDeps): Promise<Worker> {
  return Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue ?? FINANCE_TASK_QUEUE,
    ...workflowCode(deps.workflowBundle),
    activities: {
      ...createFinanceLoadActivities({
        pool: deps.pool,
        snowflake: deps.snowflake,
        log: deps.log,
        faultHoldBeforeCommitMs: deps.faultHoldBeforeCommitMs,
      }),
      // DataQuality runs here too: it reads the ledger and Snowflake like the load, and gates its publication.
      ...createDataQualityActivities({
        pool: deps.pool,
        oltp: deps.oltp,
        oltpSchema: deps.oltpSchema,
        snowflake: deps.snowflake,
        log: deps.log,
      }),
      ...(deps.reconciliation &&
        createReconciliationActivities({
          pool: deps.pool,
          snowflake: deps.snowflake,
          log: deps.log,
          ...deps.reconciliation,
        })),
    },
  });
}

/**
 * Creates the Schedule that starts a FinanceLoad every `intervalS` seconds, or updates its interval.
 * Overlap SKIP: one load at a time (a slow load delays the next window, it never races it).
 */
export async function ensureFinanceSchedule(client: Client, intervalS: number): Promise<'created' | 'updated'> {
  const spec = { intervals: [{ every: intervalS * 1000 }] };
  try {
    await client.schedule.create({
      scheduleId: FINANCE_SCHEDULE_ID,
      spec,
      action: {
        type: 'startWorkflow',
        workflowType: financeLoadWorkflow,
        args: [{}],
        taskQueue: FINANCE_TASK_QUEUE,
        workflowId: 'finance-load/scheduled',
        workflowExecutionTimeout: '10 minutes',
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
    });
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(FINANCE_SCHEDULE_ID).update((previous) => ({ ...previous, spec }));
    return 'updated';
  }
}

/**
 * Creates (or updates) the Schedule that runs DataQuality on the current hour every `intervalS` seconds
 * (docs/data-quality.md); each run supersedes the hour's earlier results. Overlap SKIP: one run at a time.
 */
export async function ensureDataQualitySchedule(client: Client, intervalS: number): Promise<'created' | 'updated'> {
  const spec = { intervals: [{ every: intervalS * 1000 }] };
  try {
    await client.schedule.create({
      scheduleId: DATA_QUALITY_SCHEDULE_ID,
      spec,
      action: {
        type: 'startWorkflow',
        workflowType: dataQualityWorkflow,
        args: [{}],
        taskQueue: FINANCE_TASK_QUEUE,
        workflowId: 'data-quality/scheduled',
        workflowExecutionTimeout: '10 minutes',
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '5 minutes' },
    });
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(DATA_QUALITY_SCHEDULE_ID).update((previous) => ({ ...previous, spec }));
    return 'updated';
  }
}

/**
 * Creates the daily Schedule that reconciles yesterday (UTC) at `hourUtc`:05, or updates its time.
 * The workflow computes its window from its start time; overlap SKIP, a missed day caught up within 6 h.
 */
export async function ensureReconciliationSchedule(client: Client, hourUtc: number): Promise<'created' | 'updated'> {
  const spec = { calendars: [{ hour: hourUtc, minute: 5, comment: 'reconcile yesterday (UTC)' }] };
  try {
    await client.schedule.create({
      scheduleId: RECONCILIATION_SCHEDULE_ID,
      spec,
      action: {
        type: 'startWorkflow',
        workflowType: reconciliationWorkflow,
        args: [{}],
        taskQueue: RECONCILIATION_TASK_QUEUE,
        workflowId: 'reconciliation/scheduled',
        workflowExecutionTimeout: '1 hour',
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '6 hours' },
    });
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(RECONCILIATION_SCHEDULE_ID).update((previous) => ({ ...previous, spec }));
    return 'updated';
  }
}

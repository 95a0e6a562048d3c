import type { Client } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
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

type ScheduleSpec = Parameters<Client['schedule']['create']>[0]['spec'];

/**
 * Creates a Schedule that starts `workflowType` with `{}` on the finance task queue, or updates its spec
 * if it exists (a changed interval or hour takes effect without losing its history). Overlap SKIP: one
 * run at a time, a slow run delays the next, never races it.
 */
async function ensureSchedule(
  client: Client,
  s: {
    scheduleId: string;
    spec: ScheduleSpec;
    workflowType: typeof financeLoadWorkflow | typeof dataQualityWorkflow | typeof reconciliationWorkflow;
    taskQueue: string;
    workflowId: string;
    workflowExecutionTimeout: Duration;
    catchupWindow: Duration;
  },
): Promise<'created' | 'updated'> {
  try {
    await client.schedule.create({
      scheduleId: s.scheduleId,
      spec: s.spec,
      action: {
        type: 'startWorkflow',
        workflowType: s.workflowType,
        args: [{}],
        taskQueue: s.taskQueue,
        workflowId: s.workflowId,
        workflowExecutionTimeout: s.workflowExecutionTimeout,
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: s.catchupWindow },
    });
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(s.scheduleId).update((previous) => ({ ...previous, spec: s.spec }));
    return 'updated';
  }
}

/** The Schedule that starts a FinanceLoad every `intervalS` seconds. */
export function ensureFinanceSchedule(client: Client, intervalS: number): Promise<'created' | 'updated'> {
  return ensureSchedule(client, {
    scheduleId: FINANCE_SCHEDULE_ID,
    spec: { intervals: [{ every: intervalS * 1000 }] },
    workflowType: financeLoadWorkflow,
    taskQueue: FINANCE_TASK_QUEUE,
    workflowId: 'finance-load/scheduled',
    workflowExecutionTimeout: '10 minutes',
    catchupWindow: '1 minute',
  });
}

/**
 * The Schedule that runs DataQuality on the current hour (and the previous one again) every `intervalS`
 * seconds (docs/data-quality.md); each run supersedes the hour's earlier results.
 */
export function ensureDataQualitySchedule(client: Client, intervalS: number): Promise<'created' | 'updated'> {
  return ensureSchedule(client, {
    scheduleId: DATA_QUALITY_SCHEDULE_ID,
    spec: { intervals: [{ every: intervalS * 1000 }] },
    workflowType: dataQualityWorkflow,
    taskQueue: FINANCE_TASK_QUEUE,
    workflowId: 'data-quality/scheduled',
    workflowExecutionTimeout: '10 minutes',
    catchupWindow: '5 minutes',
  });
}

/**
 * The daily Schedule that reconciles yesterday (UTC) at `hourUtc`:05. The workflow computes its window
 * from its start time; a missed day is caught up within 6 h.
 */
export function ensureReconciliationSchedule(client: Client, hourUtc: number): Promise<'created' | 'updated'> {
  return ensureSchedule(client, {
    scheduleId: RECONCILIATION_SCHEDULE_ID,
    spec: { calendars: [{ hour: hourUtc, minute: 5, comment: 'reconcile yesterday (UTC)' }] },
    workflowType: reconciliationWorkflow,
    taskQueue: RECONCILIATION_TASK_QUEUE,
    workflowId: 'reconciliation/scheduled',
    workflowExecutionTimeout: '1 hour',
    catchupWindow: '6 hours',
  });
}

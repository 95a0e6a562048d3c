import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { Pool } from 'pg';
import type { GroundTruth } from '../../src/simulator/payments';
import { summarizeLedger } from '../../src/stores/ledger';
import { type KafkaAdmin, consumerGroupLag } from '../../src/streams/kafka';
import { PAYMENT_ROUTER_GROUP } from '../../src/streams/payment-router';
import { topics } from './stack';

// Waiting on the real pipeline (router, workflows, ledger) for one simulated run, by its runId prefix.

/** A check answers true when done, or a short description of where things stand (for the timeout error). */
export type Progress = true | string;

/**
 * Polls `check` until it answers true; past `deadline` throws with what was last seen. `guard` runs
 * before every poll and throws to stop waiting early (e.g. a process that must be running exited).
 */
export async function waitFor(
  what: string,
  deadline: number,
  check: () => Promise<Progress>,
  { intervalMs = 500, guard }: { intervalMs?: number; guard?: () => void } = {},
): Promise<void> {
  let last = 'not checked yet';
  for (;;) {
    guard?.();
    const progress = await check();
    if (progress === true) return;
    last = progress;
    if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}; last seen: ${last}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Rejects with a clear error when `promise` does not settle within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Lag of the router group: committed offsets vs every partition's end. */
export async function routerLag(admin: KafkaAdmin): Promise<number> {
  return consumerGroupLag(admin, PAYMENT_ROUTER_GROUP, topics.paymentEvents);
}

/** Members of the router's consumer group (a router killed with -9 stays until its session times out). */
export async function routerGroupMembers(admin: KafkaAdmin): Promise<string[]> {
  const { groups } = await admin.describeGroups([PAYMENT_ROUTER_GROUP]);
  return (groups[0]?.members ?? []).map((m) => `${m.clientId}@${m.clientHost}`);
}

export interface RunScope {
  pool: Pool;
  admin: KafkaAdmin;
  client: Client;
  runId: string;
  payments: number;
  truth: GroundTruth;
  /** Called before every poll: throws to stop waiting (e.g. a process that must run has exited). */
  guard?: () => void;
}

export const runPrefix = (runId: string): string => `${runId}-`;
export const runQuery = (runId: string): string =>
  `WorkflowType = "paymentWorkflow" AND WorkflowId STARTS_WITH "payment/${runPrefix(runId)}"`;

export async function countWorkflows(scope: RunScope, where: string): Promise<number> {
  return (await scope.client.workflow.count(`${runQuery(scope.runId)} AND ${where}`)).count;
}

/** Inbox rows of the run: admitted, and marked signalled (Temporal accepted the signal). */
export async function inboxCounts(pool: Pool, runId: string): Promise<{ admitted: number; signalled: number }> {
  const r = await pool.query<{ admitted: number; signalled: number }>(
    `select count(*)::int8 as admitted, count(signalled_at)::int8 as signalled
       from payments.facts where payment_id like $1`,
    [`${runPrefix(runId)}%`],
  );
  return r.rows[0] ?? { admitted: 0, signalled: 0 };
}

/**
 * The demo's completion conditions, stricter: router caught up, every fact of the run signalled,
 * the ledger holds as many entries as the simulator's money-moving facts, and no workflow of the
 * run is still running (and every payment has a completed one).
 */
export async function waitForRunComplete(scope: RunScope, deadline: number): Promise<void> {
  const options = { guard: scope.guard };
  await waitFor(
    'the router to consume every event',
    deadline,
    async () => {
      const lag = await routerLag(scope.admin);
      return lag === 0 || `router group lag ${lag} messages`;
    },
    options,
  );
  await waitFor(
    'every fact of the run to be signalled',
    deadline,
    async () => {
      const c = await inboxCounts(scope.pool, scope.runId);
      return c.signalled >= scope.truth.uniqueEvents || `signalled ${c.signalled}/${scope.truth.uniqueEvents}`;
    },
    options,
  );
  await waitFor(
    'every money-moving fact to be posted',
    deadline,
    async () => {
      const { entries } = await summarizeLedger(scope.pool, runPrefix(scope.runId));
      return entries >= scope.truth.moneyMovingFacts || `ledger entries ${entries}/${scope.truth.moneyMovingFacts}`;
    },
    options,
  );
  await waitFor(
    'every payment workflow of the run to close',
    deadline,
    async () => {
      const [running, completed] = await Promise.all([
        countWorkflows(scope, 'ExecutionStatus = "Running"'),
        countWorkflows(scope, 'ExecutionStatus = "Completed"'),
      ]);
      return (running === 0 && completed >= scope.payments) || `running ${running}, completed ${completed}`;
    },
    options,
  );
}

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
const EventType = temporal.api.enums.v1.EventType;

/** Every event of every run of the run's payment workflows (visibility lists each run). */
export async function runHistories(scope: RunScope, concurrency = 16): Promise<HistoryEvent[][]> {
  const executions: { workflowId: string; runId: string }[] = [];
  for await (const w of scope.client.workflow.list({ query: runQuery(scope.runId) })) {
    executions.push({ workflowId: w.workflowId, runId: w.runId });
  }
  const out: HistoryEvent[][] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < executions.length) {
        const e = executions[next++]!;
        const history = await scope.client.workflow.getHandle(e.workflowId, e.runId).fetchHistory();
        out.push(history.events ?? []);
      }
    }),
  );
  return out;
}

/**
 * Fact signals whose idempotency key an earlier signal already carried: facts Temporal accepted, then got
 * again (a router killed between signalling and marking its inbox rows).
 */
export function resignalledFacts(histories: HistoryEvent[][]): number {
  const decoder = new TextDecoder();
  const seen = new Set<string>();
  let again = 0;
  for (const e of histories.flat()) {
    const signal = e.workflowExecutionSignaledEventAttributes;
    if (e.eventType !== EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED || signal?.signalName !== 'paymentFact')
      continue;
    const data = signal.input?.payloads?.[0]?.data;
    const key = data ? (JSON.parse(decoder.decode(data)) as { idempotencyKey?: string }).idempotencyKey : undefined;
    if (key === undefined) continue;
    if (seen.has(key)) again += 1;
    else seen.add(key);
  }
  return again;
}

/** Local-activity markers whose recorded result says the posting was already there (a re-run after a crash). */
export function alreadyPostedResults(histories: HistoryEvent[][]): number {
  const decoder = new TextDecoder();
  return histories
    .flat()
    .filter((e) => e.eventType === EventType.EVENT_TYPE_MARKER_RECORDED)
    .filter((e) =>
      Object.values(e.markerRecordedEventAttributes?.details ?? {}).some((payloads) =>
        (payloads.payloads ?? []).some((p) => p.data && decoder.decode(p.data).includes('"already-posted"')),
      ),
    ).length;
}

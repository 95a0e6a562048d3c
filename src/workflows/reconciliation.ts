import { type ActivityOptions, defineQuery, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { ReconciliationActivities } from '../activities/reconciliation';
import type { MatchResult } from '../reconciliation/match';
import type { CarriedOver } from '../stores/reconciliation';

// One ReconciliationWorkflow per window (a UTC day), id `reconciliation/<day>` (docs/reconciliation.md):
// match the ledger, PayLink's OLTP rows and the partners' settlement files; record the run in Postgres
// (superseding the window's earlier run, kept as history); open suspense entries for the money at stake
// and close those of breaks this run resolved; copy the window's runs to Snowflake. Re-running a window
// is idempotent: same break keys, same suspense posting keys, a new run that supersedes the old one.

export const RECONCILIATION_TASK_QUEUE = 'finance';
export const RECONCILIATION_SCHEDULE_ID = 'reconciliation-daily';

export const reconciliationWorkflowId = (window: string, scope = ''): string =>
  scope ? `reconciliation/${window}/${scope}` : `reconciliation/${window}`;

export interface ReconciliationInput {
  /** The UTC day, YYYY-MM-DD; absent (the daily schedule): yesterday of the workflow's start time. */
  window?: string;
  /** Payment-id prefix ('' = all). */
  scope?: string;
  oltpSchema?: string;
  bucket?: string;
}

export type ReconciliationStep = 'starting' | 'matching' | 'recording' | 'suspense' | 'warehouse' | 'done';

export interface ReconciliationProgress {
  step: ReconciliationStep;
  window: string;
}

export interface ReconciliationResult {
  window: string;
  scope: string;
  runId: number;
  outcome: 'written' | 'already-written';
  supersededRunId: number | null;
  files: number;
  ledgerEntries: number;
  settlementLines: number;
  items: MatchResult['items'];
  breaks: number;
  breaksByType: MatchResult['breaksByType'];
  amountsByType: MatchResult['amountsByType'];
  byCurrency: MatchResult['byCurrency'];
  resolved: number;
  carriedOver: CarriedOver;
  suspense: { opened: number; closed: number; alreadyPosted: number };
}

export const progressQuery = defineQuery<ReconciliationProgress>('progress');

const retry: ActivityOptions['retry'] = {
  initialInterval: '1 second',
  maximumInterval: '10 seconds',
  nonRetryableErrorTypes: ['SettlementFileError'],
};
const acts = proxyActivities<ReconciliationActivities>({ startToCloseTimeout: '5 minutes', retry });

const DAY_MS = 86_400_000;

export async function reconciliationWorkflow(input: ReconciliationInput = {}): Promise<ReconciliationResult> {
  const info = workflowInfo();
  const window =
    input.window ??
    new Date(Math.floor(info.runStartTime.getTime() / DAY_MS) * DAY_MS - DAY_MS).toISOString().slice(0, 10);
  const scope = input.scope ?? '';
  let step: ReconciliationStep = 'starting';
  setHandler(progressQuery, () => ({ step, window }));
  const request = { window, scope, oltpSchema: input.oltpSchema ?? 'public', bucket: input.bucket };
  // The window's canonical id, whoever started the run (the schedule's runs have ids of their own):
  // suspense posting keys derive from it, so a scheduled run and a manual re-run share them.
  const windowId = reconciliationWorkflowId(window, scope);

  step = 'matching';
  const matched = await acts.matchReconciliationWindow(request);
  step = 'recording';
  const run = await acts.recordReconciliationRun({
    ...request,
    runKey: `${info.workflowId}/${info.runId}`,
    workflowId: info.workflowId,
    windowId,
    startedAt: info.runStartTime.toISOString(),
    result: matched.result,
  });
  step = 'suspense';
  const resolvedAtBirth = new Set(run.resolvedAtBirth);
  const suspense = await acts.postSuspenseEntries({
    workflowId: windowId,
    window,
    breaks: matched.result.breaks.filter((b) => !resolvedAtBirth.has(b.breakKey)),
    resolved: run.resolved,
  });
  step = 'warehouse';
  await acts.loadReconciliationRun({ runId: run.runId });
  step = 'done';
  const r = matched.result;
  return {
    window,
    scope,
    runId: run.runId,
    outcome: run.outcome,
    supersededRunId: run.supersededRunId,
    files: matched.files.length,
    ledgerEntries: matched.ledgerEntries,
    settlementLines: matched.settlementLines,
    items: r.items,
    breaks: r.breaks.length,
    breaksByType: r.breaksByType,
    amountsByType: r.amountsByType,
    byCurrency: r.byCurrency,
    resolved: run.resolved.length,
    carriedOver: run.carriedOver,
    suspense,
  };
}

import { type ActivityOptions, proxyActivities } from '@temporalio/workflow';
import type { FinanceLoadActivities, FinanceLoadRequest } from '../activities/finance-load';
import { FINANCE_NON_RETRYABLE_ERRORS, type FinanceWindow, financeLoadId } from '../contracts/finance';

// One FinanceLoad per watermark window (docs/finance.md): plan [lo, hi) after the published chain,
// load it into Snowflake in one transaction, verify Snowflake against the ledger after commit, then
// publish and seal it. The Temporal Schedule FINANCE_SCHEDULE_ID starts one every few seconds; a
// window given in the input (`npm run finance -- load --window lo-hi`) is re-run instead: same load
// id, so nothing changes. A failed verification fails the workflow, and nothing after it publishes.

export const FINANCE_TASK_QUEUE = 'finance';
export const FINANCE_SCHEDULE_ID = 'finance-load';
export const financeLoadWorkflowId = (w: FinanceWindow): string => `finance-load/${w.lo}-${w.hi}`;

export interface FinanceLoadInput {
  /** A window to (re-)run; planned from the ledger's safe watermark when absent. */
  window?: FinanceWindow;
}

export interface FinanceLoadResult {
  outcome: 'nothing-to-load' | 'published' | 'already-published' | 'superseded';
  window: FinanceWindow | null;
  loadId: string | null;
  entries: number;
  lines: number;
  entriesInserted: number;
  linesInserted: number;
  seal: string | null;
}

const retry: ActivityOptions['retry'] = {
  initialInterval: '1 second',
  maximumInterval: '10 seconds',
  nonRetryableErrorTypes: [...FINANCE_NON_RETRYABLE_ERRORS],
};

const { planFinanceWindow, verifyFinanceWindow, publishFinanceWindow } = proxyActivities<FinanceLoadActivities>({
  startToCloseTimeout: '2 minutes',
  retry,
});
// Heartbeats tell a killed worker's attempt from a slow one within seconds.
const { loadFinanceWindow } = proxyActivities<FinanceLoadActivities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '10 seconds',
  retry,
});

export async function financeLoadWorkflow(input: FinanceLoadInput = {}): Promise<FinanceLoadResult> {
  const window = input.window ?? (await planFinanceWindow());
  if (!window) {
    return {
      outcome: 'nothing-to-load',
      window: null,
      loadId: null,
      entries: 0,
      lines: 0,
      entriesInserted: 0,
      linesInserted: 0,
      seal: null,
    };
  }
  const request: FinanceLoadRequest = { ...window, loadId: financeLoadId(window) };
  const loaded = await loadFinanceWindow(request);
  await verifyFinanceWindow(request);
  const published = await publishFinanceWindow({ ...request, loadedAt: loaded.loadedAt });
  return {
    outcome: published.outcome,
    window,
    loadId: request.loadId,
    entries: loaded.entries,
    lines: loaded.lines,
    entriesInserted: loaded.entriesInserted,
    linesInserted: loaded.linesInserted,
    seal: published.seal,
  };
}

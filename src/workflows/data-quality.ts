import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { DataQualityActivities, DqTuning } from '../activities/data-quality';
import {
  DQ_CHECKS,
  type DqRunSummary,
  evaluate,
  hourWindowOf,
  parseDqWindow,
  summarize,
} from '../contracts/data-quality';

// One DataQuality run per window (docs/data-quality.md): measure every check of the catalogue, judge it
// against its threshold, record one result row per check in Postgres and Snowflake. The Temporal
// Schedule DATA_QUALITY_SCHEDULE_ID runs the previous and the current hour every few minutes; a re-run
// supersedes by time and keeps the history. A failing money check is what the finance load's publish step reads.

export const DATA_QUALITY_SCHEDULE_ID = 'data-quality';

export interface DataQualityInput {
  /** A day (2026-11-30) or hour (2026-11-30T01); the current hour when absent. */
  window?: string;
  /** Payment-id prefix; '' (the default) is the whole pipeline, the only scope that gates finance. */
  scope?: string;
  tuning?: Partial<DqTuning>;
}

const { measureDataQualityCheck, recordDataQualityResults } = proxyActivities<DataQualityActivities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', nonRetryableErrorTypes: ['DqWindowError'] },
});

export async function dataQualityWorkflow(input: DataQualityInput = {}): Promise<DqRunSummary> {
  const scope = input.scope ?? '';
  const runWindow = async (id: string): Promise<DqRunSummary> => {
    const window = parseDqWindow(id);
    const runId = `${workflowInfo().runId}/${window.id}`;
    const measurements = await Promise.all(
      DQ_CHECKS.map((check) => measureDataQualityCheck({ window: window.id, scope, check, tuning: input.tuning })),
    );
    const ranAt = new Date(Date.now()).toISOString();
    const results = measurements.map((m) => evaluate(m, { runId, window, scope, ranAt }));
    await recordDataQualityResults(results);
    return summarize(results, { window: window.id, scope, runId });
  };
  if (input.window) return runWindow(input.window);
  // Scheduled: the previous hour once more too, so a defect fixed after its hour ends clears the gate.
  await runWindow(hourWindowOf(Date.now() - 3_600_000));
  return runWindow(hourWindowOf(Date.now()));
}

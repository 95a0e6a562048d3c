import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import {
  DQ_CHECKS,
  type DqCheckName,
  type DqMeasurement,
  type DqResult,
  type DqRunSummary,
  evaluate,
  parseDqWindow,
  summarize,
} from '../contracts/data-quality';
import type { Logger } from '../logger';
import {
  type MeasureScope,
  measureBeforePrecondition,
  measureConflictingDuplicates,
  measureLateness,
  measureMissingPostings,
  measureOltpCounterparts,
  measureRepeatRate,
  measureSchemaDrift,
  measureSnowflakeCompleteness,
  measureTokenization,
  recordDqResults,
  recordDqResultsInWarehouse,
} from '../stores/data-quality';
import type { SnowflakeQueries } from '../stores/snowflake';

// The I/O of a DataQuality run (src/workflows/data-quality.ts): one activity per check measurement,
// then the results into Postgres and Snowflake. Read-only but for the results, so retries are safe.

export interface DqTuning {
  /** A money-moving fact must have its postings this long after it was received. */
  postingSlaMs: number;
  /** A fact received this long after it occurred is late. */
  lateAfterMs: number;
  /** A fact that occurred this far after it was received has a skewed clock. */
  futureSkewMs: number;
  /** Rows of each kind the tokenization check samples. */
  piiSampleSize: number;
}

export const DEFAULT_DQ_TUNING: DqTuning = {
  postingSlaMs: 5 * 60_000,
  lateAfterMs: 60 * 60_000,
  futureSkewMs: 5 * 60_000,
  piiSampleSize: 2000,
};

export interface DqCheckRequest {
  window: string;
  scope: string;
  check: DqCheckName;
  /** Overrides of the tuning (tests, drills). */
  tuning?: Partial<DqTuning>;
}

export interface DataQualityActivities {
  measureDataQualityCheck(request: DqCheckRequest): Promise<DqMeasurement>;
  recordDataQualityResults(results: DqResult[]): Promise<void>;
}

export interface DataQualityDeps {
  pool: Pool;
  /** PayLink's OLTP database (read only): its legacy ledger rows. */
  oltp: Pool;
  /** The OLTP schema CDC reads (CDC_SCHEMA). */
  oltpSchema: string;
  snowflake: SnowflakeQueries;
  log: Logger;
}

export function createDataQualityActivities(deps: DataQualityDeps): DataQualityActivities {
  const { pool, oltp, snowflake, log } = deps;
  return {
    async measureDataQualityCheck(request) {
      const t = { ...DEFAULT_DQ_TUNING, ...request.tuning };
      const s: MeasureScope = { window: parseDqWindow(request.window), scope: request.scope };
      switch (request.check) {
        case 'duplicates.repeat_rate':
          return measureRepeatRate(pool, s);
        case 'duplicates.conflicting':
          return measureConflictingDuplicates(pool, s);
        case 'ledger.missing_postings':
          return measureMissingPostings(pool, s, t.postingSlaMs);
        case 'ledger.oltp_counterpart':
          return measureOltpCounterparts(oltp, pool, s, deps.oltpSchema, t.postingSlaMs);
        case 'ledger.snowflake_completeness':
          return measureSnowflakeCompleteness(pool, snowflake, s);
        case 'ordering.before_precondition':
          return measureBeforePrecondition(pool, s);
        case 'ordering.lateness':
          return measureLateness(pool, s, t.lateAfterMs, t.futureSkewMs);
        case 'schema.drift':
          return measureSchemaDrift(pool, s);
        case 'tokenization.pii':
          return measureTokenization(pool, s, t.piiSampleSize);
      }
    },

    async recordDataQualityResults(results) {
      await recordDqResults(pool, results);
      await recordDqResultsInWarehouse(snowflake, results);
      const failed = results.filter((r) => !r.passed);
      if (failed.length > 0) {
        log.warn('data-quality checks failed', {
          window: results[0]?.window.id,
          scope: results[0]?.scope,
          failed: failed.map((r) => `${r.check}: ${r.summary}`),
        });
      }
    },
  };
}

/**
 * The workflow's steps run in this process (`npm run quality -- dq`, tests): same activities, same
 * judgement, one result per check, progress after each.
 */
export async function runDataQualityHere(
  activities: DataQualityActivities,
  input: { window: string; scope?: string; tuning?: Partial<DqTuning>; runId?: string },
  onProgress: (check: DqCheckName, result: DqResult) => void = () => undefined,
): Promise<{ results: DqResult[]; summary: DqRunSummary }> {
  const window = parseDqWindow(input.window);
  const scope = input.scope ?? '';
  const runId = input.runId ?? `here-${new Date().toISOString()}-${randomUUID().slice(0, 8)}`;
  const results: DqResult[] = [];
  for (const check of DQ_CHECKS) {
    const m = await activities.measureDataQualityCheck({ window: window.id, scope, check, tuning: input.tuning });
    const r = evaluate(m, { runId, window, scope, ranAt: new Date().toISOString() });
    results.push(r);
    onProgress(check, r);
  }
  await activities.recordDataQualityResults(results);
  return { results, summary: summarize(results, { window: window.id, scope, runId }) };
}

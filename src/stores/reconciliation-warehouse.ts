import type { Pool } from 'pg';
import type { SnowflakeBind, SnowflakeSession } from './snowflake';

// The Snowflake copy of reconciliation results (snowflake-migrations/002): after a run, the rows of its
// window and the day before (a run can resolve the day before's timing breaks) are replaced by Postgres'
// in one transaction. Postgres is the record; the copy is idempotent.

const CHUNK = 100;

async function insertChunks(
  tx: { query: SnowflakeSession['query'] },
  insert: string,
  rows: SnowflakeBind[][],
): Promise<void> {
  for (let i = 0; i < rows.length; i += CHUNK) {
    const chunk = rows.slice(i, i + CHUNK);
    const tuple = `(${chunk[0]!.map(() => '?').join(', ')})`;
    await tx.query(`${insert} VALUES ${chunk.map(() => tuple).join(', ')}`, chunk.flat());
  }
}

const ts = (d: Date | null): string | null => (d ? d.toISOString().replace('T', ' ').replace('Z', '') : null);

export async function loadReconciliationToWarehouse(
  pool: Pool,
  snowflake: SnowflakeSession,
  runId: number,
): Promise<{ runs: number; breaks: number }> {
  const run = await pool.query<{ window_day: string; prev_day: string; scope: string }>(
    `select window_day::text, (window_day - 1)::text as prev_day, scope from reconciliation.runs where run_id = $1`,
    [runId],
  );
  const r = run.rows[0];
  if (!r) throw new Error(`reconciliation run ${runId} not found`);
  const days = [r.prev_day, r.window_day];
  const runs = await pool.query<{
    run_id: string;
    window_day: string;
    scope: string;
    workflow_id: string;
    status: string;
    superseded_by: string | null;
    matched: number;
    partially_matched: number;
    unmatched: number;
    breaks: number;
    summary: unknown;
    started_at: Date;
    finished_at: Date;
  }>(
    `select run_id::text, window_day::text, scope, workflow_id, status, superseded_by::text, matched, partially_matched,
            unmatched, breaks, summary, started_at, finished_at
       from reconciliation.runs where scope = $1 and window_day = any($2::date[]) order by run_id`,
    [r.scope, days],
  );
  const breaks = await pool.query<{
    run_id: string;
    break_key: string;
    window_day: string;
    break_type: string;
    provider: string | null;
    payment_id: string;
    kind: string;
    reference: string;
    line_reference: string | null;
    amount_minor: string;
    currency: string;
    direction: number;
    status: string;
    first_seen_window: string;
    resolved_at: Date | null;
    suspense_posting_key: string | null;
  }>(
    `select run_id::text, break_key, window_day::text, break_type, provider, payment_id, kind, reference, line_reference,
            amount_minor::text, currency, direction, status, first_seen_window::text, resolved_at, suspense_posting_key
       from reconciliation.breaks where scope = $1 and window_day = any($2::date[]) order by run_id, break_key`,
    [r.scope, days],
  );
  await snowflake.transaction(async (tx) => {
    for (const d of days) {
      await tx.query('DELETE FROM FINANCE.RECONCILIATION_BREAKS WHERE SCOPE = ? AND WINDOW_DAY = ?', [r.scope, d]);
      await tx.query('DELETE FROM FINANCE.RECONCILIATION_RUNS WHERE SCOPE = ? AND WINDOW_DAY = ?', [r.scope, d]);
    }
    if (runs.rows.length > 0) {
      await insertChunks(
        tx,
        `INSERT INTO FINANCE.RECONCILIATION_RUNS (RUN_ID, WINDOW_DAY, SCOPE, WORKFLOW_ID, STATUS, SUPERSEDED_BY, MATCHED,
           PARTIALLY_MATCHED, UNMATCHED, BREAKS, SUMMARY, STARTED_AT, FINISHED_AT)`,
        runs.rows.map((x) => [
          x.run_id,
          x.window_day,
          x.scope,
          x.workflow_id,
          x.status,
          x.superseded_by,
          x.matched,
          x.partially_matched,
          x.unmatched,
          x.breaks,
          JSON.stringify(x.summary),
          ts(x.started_at),
          ts(x.finished_at),
        ]),
      );
    }
    if (breaks.rows.length > 0) {
      await insertChunks(
        tx,
        `INSERT INTO FINANCE.RECONCILIATION_BREAKS (RUN_ID, BREAK_KEY, WINDOW_DAY, SCOPE, BREAK_TYPE, PROVIDER, PAYMENT_ID,
           KIND, REFERENCE, LINE_REFERENCE, AMOUNT_MINOR, CURRENCY, DIRECTION, STATUS, FIRST_SEEN_WINDOW, RESOLVED_AT,
           SUSPENSE_POSTING_KEY)`,
        breaks.rows.map((x) => [
          x.run_id,
          x.break_key,
          x.window_day,
          r.scope,
          x.break_type,
          x.provider,
          x.payment_id,
          x.kind,
          x.reference,
          x.line_reference,
          x.amount_minor,
          x.currency,
          x.direction,
          x.status,
          x.first_seen_window,
          ts(x.resolved_at),
          x.suspense_posting_key,
        ]),
      );
    }
  });
  return { runs: runs.rows.length, breaks: breaks.rows.length };
}

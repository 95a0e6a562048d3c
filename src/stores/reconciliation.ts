import type { Pool, PoolClient } from 'pg';
import type { LedgerEntryRow, MatchResult, OltpPayment, ReconciliationBreak } from '../reconciliation/match';
import { assertSchemaName } from './oltp';
import { likePrefix } from './postgres';

// Reconciliation's reads (ledger window, OLTP payments) and its results (migration 008). A run is
// written once per workflow execution (run_key); a later run of the same window and scope supersedes it
// and keeps it. Breaks carry their first-seen window across runs (aging) and are resolved by the first
// run that no longer finds them, or (a timing break) by the next day's run that books the late line.

const PARTNER_FACTS = ['settled', 'refunded', 'chargeback_opened', 'chargeback_won'];

/** Journal entries of partner-side facts that occurred in [fromDay, toDay) (UTC), payment ids under `scope`. */
export async function readLedgerWindow(
  pool: Pool,
  fromDay: string,
  toDay: string,
  scope: string,
): Promise<LedgerEntryRow[]> {
  const r = await pool.query<{
    entry_id: string;
    posting_key: string;
    payment_id: string;
    merchant_id: string;
    fact_type: string;
    occurred_at: Date;
    lines: { account: string; side: 'debit' | 'credit'; amountMinor: string; currency: string }[];
  }>(
    `select e.entry_id, e.posting_key, e.payment_id, e.merchant_id, e.fact_type, e.occurred_at,
            json_agg(json_build_object('account', l.account_code, 'side', l.side,
                                       'amountMinor', l.amount_minor::text, 'currency', l.currency)) as lines
       from ledger.journal_entries e join ledger.journal_lines l on l.entry_id = e.entry_id
      where e.fact_type = any($1)
        and e.occurred_at >= $2::date at time zone 'UTC' and e.occurred_at < $3::date at time zone 'UTC'
        and e.payment_id like $4
      group by e.entry_id
      order by e.entry_id`,
    [PARTNER_FACTS, fromDay, toDay, likePrefix(scope)],
  );
  return r.rows.map((row) => ({
    entryId: Number(row.entry_id),
    postingKey: row.posting_key,
    paymentId: row.payment_id,
    merchantId: row.merchant_id,
    factType: row.fact_type,
    occurredAt: row.occurred_at.toISOString(),
    lines: row.lines.map((l) => ({ ...l, amountMinor: Number(l.amountMinor) })),
  }));
}

/** PayLink's OLTP payment rows for these ids (OLTP database, `schema`). */
export async function readOltpPayments(oltp: Pool, schema: string, paymentIds: string[]): Promise<OltpPayment[]> {
  const s = assertSchemaName(schema);
  const r = await oltp.query<{
    id: string;
    merchant_id: string;
    currency: string;
    amount_minor: string;
    status: string;
  }>(`select id, merchant_id, currency, amount_minor::text, status from ${s}.payments where id = any($1)`, [
    paymentIds,
  ]);
  return r.rows.map((p) => ({
    paymentId: p.id,
    merchantId: p.merchant_id,
    currency: p.currency,
    amountMinor: Number(p.amount_minor),
    status: p.status,
  }));
}

export interface CarriedOver {
  /** Open breaks of earlier windows (current runs, same scope). */
  breaks: number;
  byType: Record<string, number>;
  /** Days between the oldest open break's first window and this window. */
  oldestAgeDays: number;
}

export interface RunRequest {
  runKey: string;
  workflowId: string;
  window: string;
  scope: string;
  startedAt: string;
  result: MatchResult;
  /** Posting key of the suspense entry per break key, for breaks with money at stake. */
  suspenseKeys: Record<string, string>;
}

export interface RunOutcome {
  runId: number;
  outcome: 'written' | 'already-written';
  supersededRunId: number | null;
  /** Breaks of this window's earlier run (or a timing break of another window) resolved by this run. */
  resolved: { breakKey: string; suspensePostingKey: string | null }[];
  /** This run's timing breaks whose late line another current run already booked: no suspense. */
  resolvedAtBirth: string[];
  carriedOver: CarriedOver;
}

/** Writes one run and its breaks in one transaction; idempotent by run key. */
export async function writeRun(pool: Pool, req: RunRequest): Promise<RunOutcome> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    // Serializes runs of the same window and scope (two re-runs at once cannot both be current).
    await client.query('select pg_advisory_xact_lock(hashtext($1))', [`reconciliation/${req.window}/${req.scope}`]);
    const existing = await client.query<{ run_id: string; summary: { carriedOver: CarriedOver } }>(
      'select run_id, summary from reconciliation.runs where run_key = $1',
      [req.runKey],
    );
    if (existing.rows[0]) {
      const runId = Number(existing.rows[0].run_id);
      // A retry after commit: answer what the first attempt resolved, so its suspense entries still close.
      const again = await client.query<{ break_key: string; suspense_posting_key: string | null }>(
        'select break_key, suspense_posting_key from reconciliation.breaks where resolved_by = $1 and run_id <> $1',
        [runId],
      );
      const prev = await client.query<{ run_id: string }>(
        'select run_id from reconciliation.runs where superseded_by = $1',
        [runId],
      );
      await client.query('rollback');
      return {
        runId,
        outcome: 'already-written',
        supersededRunId: prev.rows[0] ? Number(prev.rows[0].run_id) : null,
        resolved: again.rows.map((x) => ({ breakKey: x.break_key, suspensePostingKey: x.suspense_posting_key })),
        resolvedAtBirth: [],
        carriedOver: existing.rows[0].summary.carriedOver,
      };
    }
    const carriedOver = await carriedOverBreaks(client, req.window, req.scope);
    const prev = await client.query<{ run_id: string }>(
      `update reconciliation.runs set status = 'superseded'
        where window_day = $1 and scope = $2 and status = 'current' returning run_id`,
      [req.window, req.scope],
    );
    const supersededRunId = prev.rows[0] ? Number(prev.rows[0].run_id) : null;
    const r = req.result;
    const summary = {
      items: r.items,
      lateCounterparts: r.lateCounterparts,
      lateKeys: r.lateKeys,
      breaksByType: r.breaksByType,
      amountsByType: r.amountsByType,
      byCurrency: r.byCurrency,
      carriedOver,
    };
    const inserted = await client.query<{ run_id: string }>(
      `insert into reconciliation.runs (run_key, window_day, scope, workflow_id, status, matched, partially_matched,
                                        unmatched, breaks, summary, started_at)
       values ($1, $2, $3, $4, 'current', $5, $6, $7, $8, $9, $10) returning run_id`,
      [
        req.runKey,
        req.window,
        req.scope,
        req.workflowId,
        r.items.matched,
        r.items.partiallyMatched,
        r.items.unmatched,
        r.breaks.length,
        JSON.stringify(summary),
        req.startedAt,
      ],
    );
    const runId = Number(inserted.rows[0]!.run_id);
    if (supersededRunId !== null) {
      await client.query('update reconciliation.runs set superseded_by = $1 where run_id = $2', [
        runId,
        supersededRunId,
      ]);
    }
    // First seen: the earliest run (any window) that found the same break.
    const keys = r.breaks.map((b) => b.breakKey);
    const seen = await client.query<{ break_key: string; first_window: string; first_at: Date }>(
      `select break_key, min(first_seen_window)::text as first_window, min(first_seen_at) as first_at
         from reconciliation.breaks where break_key = any($1) group by break_key`,
      [keys],
    );
    const firstSeen = new Map(seen.rows.map((s) => [s.break_key, s]));
    // A timing break whose late line another current run has already booked is resolved at birth.
    const late = await client.query<{ key: string; run_id: string }>(
      `select k as key, run_id from reconciliation.runs, jsonb_array_elements_text(summary->'lateKeys') k
        where status = 'current' and scope = $1 and k = any($2)`,
      [req.scope, keys],
    );
    const lateBy = new Map(late.rows.map((l) => [l.key, Number(l.run_id)]));
    for (const b of r.breaks) {
      await insertBreak(client, runId, req, b, firstSeen.get(b.breakKey), lateBy.get(b.breakKey));
    }
    // Resolved by this run: the superseded run's open breaks it no longer finds, and open timing
    // breaks of other windows whose late line this window's files carry.
    const resolved = await client.query<{ break_key: string; suspense_posting_key: string | null }>(
      `update reconciliation.breaks b set status = 'resolved', resolved_at = now(), resolved_by = $1
        where b.status = 'open' and (
              (b.run_id = $2 and not (b.break_key = any($3)))
           or (b.break_type = 'timing' and b.break_key = any($4) and b.scope = $5
               and b.run_id in (select run_id from reconciliation.runs where status = 'current')))
        returning b.break_key, b.suspense_posting_key`,
      [runId, supersededRunId ?? -1, keys, r.lateKeys, req.scope],
    );
    // The superseded run's other breaks stay open on it, as history: only current runs' breaks are listed.
    await client.query('commit');
    return {
      runId,
      outcome: 'written',
      supersededRunId,
      resolved: resolved.rows
        .filter((x) => !keys.includes(x.break_key) || r.lateKeys.includes(x.break_key))
        .map((x) => ({ breakKey: x.break_key, suspensePostingKey: x.suspense_posting_key })),
      resolvedAtBirth: [...lateBy.keys()],
      carriedOver,
    };
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

async function insertBreak(
  client: PoolClient,
  runId: number,
  req: RunRequest,
  b: ReconciliationBreak,
  first: { first_window: string; first_at: Date } | undefined,
  resolvedByRun: number | undefined,
): Promise<void> {
  await client.query(
    `insert into reconciliation.breaks
       (run_id, break_key, window_day, scope, break_type, provider, payment_id, merchant_id, kind, reference,
        line_reference, amount_minor, currency, direction, expected, reported, status, first_seen_window,
        first_seen_at, resolved_at, resolved_by, suspense_posting_key)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
             case when $20::bigint is null then null else now() end, $20, $21)`,
    [
      runId,
      b.breakKey,
      req.window,
      req.scope,
      b.type,
      b.provider,
      b.paymentId,
      b.merchantId,
      b.kind,
      b.reference,
      b.lineReference,
      b.amountMinor,
      b.currency,
      b.direction,
      b.expected && JSON.stringify(b.expected),
      b.reported && JSON.stringify(b.reported),
      resolvedByRun === undefined ? 'open' : 'resolved',
      first?.first_window ?? req.window,
      first?.first_at ?? new Date(),
      resolvedByRun ?? null,
      req.suspenseKeys[b.breakKey] ?? null,
    ],
  );
}

async function carriedOverBreaks(client: PoolClient, window: string, scope: string): Promise<CarriedOver> {
  const r = await client.query<{ break_type: string; n: string; oldest: number | null }>(
    `select b.break_type, count(*)::int8::text as n, max($1::date - b.first_seen_window) as oldest
       from reconciliation.breaks b join reconciliation.runs r on r.run_id = b.run_id
      where r.status = 'current' and r.scope = $2 and b.status = 'open' and b.window_day < $1::date
      group by b.break_type`,
    [window, scope],
  );
  const byType = Object.fromEntries(r.rows.map((x) => [x.break_type, Number(x.n)]));
  return {
    breaks: Object.values(byType).reduce((s, n) => s + n, 0),
    byType,
    oldestAgeDays: r.rows.reduce((m, x) => Math.max(m, x.oldest ?? 0), 0),
  };
}

export interface BreakRow {
  runId: number;
  breakKey: string;
  window: string;
  scope: string;
  type: string;
  provider: string | null;
  paymentId: string;
  kind: string;
  reference: string;
  lineReference: string | null;
  amountMinor: number;
  currency: string;
  direction: number;
  status: 'open' | 'resolved';
  firstSeenWindow: string;
  /** Days from the first window that found it to today (UTC). */
  ageDays: number;
  suspensePostingKey: string | null;
}

/** Breaks of the current runs (history: `allRuns`), newest window first. */
export async function listBreaks(
  pool: Pool,
  filter: { open?: boolean; type?: string; scope?: string; window?: string; allRuns?: boolean } = {},
): Promise<BreakRow[]> {
  const r = await pool.query<{
    run_id: string;
    break_key: string;
    window_day: string;
    scope: string;
    break_type: string;
    provider: string | null;
    payment_id: string;
    kind: string;
    reference: string;
    line_reference: string | null;
    amount_minor: string;
    currency: string;
    direction: number;
    status: 'open' | 'resolved';
    first_seen_window: string;
    age_days: number;
    suspense_posting_key: string | null;
  }>(
    `select b.run_id, b.break_key, b.window_day::text, b.scope, b.break_type, b.provider, b.payment_id, b.kind,
            b.reference, b.line_reference, b.amount_minor::text, b.currency, b.direction, b.status,
            b.first_seen_window::text, ((now() at time zone 'UTC')::date - b.first_seen_window) as age_days,
            b.suspense_posting_key
       from reconciliation.breaks b join reconciliation.runs r on r.run_id = b.run_id
      where ($1 or r.status = 'current')
        and (not $2 or b.status = 'open')
        and ($3::text is null or b.break_type = $3)
        and ($4::text is null or b.scope = $4)
        and ($5::date is null or b.window_day = $5::date)
      order by b.window_day desc, b.break_type, b.payment_id`,
    [filter.allRuns ?? false, filter.open ?? false, filter.type ?? null, filter.scope ?? null, filter.window ?? null],
  );
  return r.rows.map((x) => ({
    runId: Number(x.run_id),
    breakKey: x.break_key,
    window: x.window_day,
    scope: x.scope,
    type: x.break_type,
    provider: x.provider,
    paymentId: x.payment_id,
    kind: x.kind,
    reference: x.reference,
    lineReference: x.line_reference,
    amountMinor: Number(x.amount_minor),
    currency: x.currency,
    direction: x.direction,
    status: x.status,
    firstSeenWindow: x.first_seen_window,
    ageDays: x.age_days,
    suspensePostingKey: x.suspense_posting_key,
  }));
}

export interface RunRow {
  runId: number;
  window: string;
  scope: string;
  workflowId: string;
  status: 'current' | 'superseded';
  supersededBy: number | null;
  matched: number;
  partiallyMatched: number;
  unmatched: number;
  breaks: number;
}

export async function listRuns(pool: Pool, window: string, scope: string): Promise<RunRow[]> {
  const r = await pool.query<{
    run_id: string;
    workflow_id: string;
    status: 'current' | 'superseded';
    superseded_by: string | null;
    matched: number;
    partially_matched: number;
    unmatched: number;
    breaks: number;
  }>(
    `select run_id, workflow_id, status, superseded_by, matched, partially_matched, unmatched, breaks
       from reconciliation.runs where window_day = $1 and scope = $2 order by run_id`,
    [window, scope],
  );
  return r.rows.map((x) => ({
    runId: Number(x.run_id),
    window,
    scope,
    workflowId: x.workflow_id,
    status: x.status,
    supersededBy: x.superseded_by === null ? null : Number(x.superseded_by),
    matched: x.matched,
    partiallyMatched: x.partially_matched,
    unmatched: x.unmatched,
    breaks: x.breaks,
  }));
}

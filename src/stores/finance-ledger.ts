import type { Pool } from 'pg';
import type { KafkaCoordinates } from '../contracts/envelope';
import type { FinanceWindow, WindowEntry, WindowTotals } from '../ledger/seals';
import { GENESIS_SEAL, normalizeTotals } from '../ledger/seals';
import { type FactCoordinateRow, factCoordinateColumns, factCoordinates } from './payment-inbox';

// The ledger side of the finance load (migration 007): the safe watermark, a window's entries and
// totals, and the published windows with their seals (finance.windows). docs/finance.md.

/**
 * The safe upper bound: every transaction with an id below pg_snapshot_xmin has ended, so the rows
 * with xid below it are final. One open transaction holds it at that transaction's id.
 */
export async function safeWatermark(pool: Pool): Promise<string> {
  const r = await pool.query<{ hi: string }>('select pg_snapshot_xmin(pg_current_snapshot())::text as hi');
  return r.rows[0]!.hi;
}

export interface PublishedWindow extends FinanceWindow {
  loadId: string;
  entries: number;
  lines: number;
  totals: WindowTotals;
  prevSeal: string;
  seal: string;
  loadedAt: string;
  publishedAt: string;
}

interface WindowRow {
  lo: string;
  hi: string;
  load_id: string;
  entries: number;
  lines: number;
  totals: WindowTotals['byCurrency'];
  prev_seal: string;
  seal: string;
  loaded_at: Date;
  published_at: Date;
}

const windowColumns = `lo::text as lo, hi::text as hi, load_id, entries, lines, totals, prev_seal, seal, loaded_at, published_at`;

function toWindow(r: WindowRow): PublishedWindow {
  return {
    lo: r.lo,
    hi: r.hi,
    loadId: r.load_id,
    entries: r.entries,
    lines: r.lines,
    totals: normalizeTotals({ entries: r.entries, lines: r.lines, byCurrency: r.totals }),
    prevSeal: r.prev_seal,
    seal: r.seal,
    loadedAt: r.loaded_at.toISOString(),
    publishedAt: r.published_at.toISOString(),
  };
}

export async function lastPublishedWindow(pool: Pool): Promise<PublishedWindow | undefined> {
  const r = await pool.query<WindowRow>(`select ${windowColumns} from finance.windows w order by w.hi desc limit 1`);
  return r.rows[0] && toWindow(r.rows[0]);
}

/** Published windows overlapping [from, to) of xids (all when unset), in order. */
export async function publishedWindows(pool: Pool, range: Partial<FinanceWindow> = {}): Promise<PublishedWindow[]> {
  const r = await pool.query<WindowRow>(
    `select ${windowColumns} from finance.windows
      where ($1::xid8 is null or hi > $1::xid8) and ($2::xid8 is null or lo < $2::xid8)
      order by windows.lo`,
    [range.lo ?? null, range.hi ?? null],
  );
  return r.rows.map(toWindow);
}

export async function windowAt(pool: Pool, lo: string): Promise<PublishedWindow | undefined> {
  const r = await pool.query<WindowRow>(`select ${windowColumns} from finance.windows where lo = $1::xid8`, [lo]);
  return r.rows[0] && toWindow(r.rows[0]);
}

/** Committed entries in [lo, hi). */
export async function countWindowEntries(pool: Pool, w: FinanceWindow): Promise<number> {
  const r = await pool.query<{ n: number }>(
    'select count(*)::int8 as n from ledger.journal_entries where xid >= $1::xid8 and xid < $2::xid8',
    [w.lo, w.hi],
  );
  return r.rows[0]!.n;
}

interface EntryLineRow {
  entry_id: number;
  xid: string;
  posting_key: string;
  payment_id: string;
  merchant_id: string;
  fact_type: string;
  idempotency_key: string;
  trace_id: string | null;
  occurred_ms: string;
  posted_ms: string;
  line_id: number;
  account_code: string;
  line_merchant_id: string;
  side: 'debit' | 'credit';
  amount_minor: string;
  currency: string;
  source: string | null;
  source_sequence: string | null;
  region: string | null;
}

/** A window entry plus what Snowflake keeps beside it (not sealed): where its fact came from. */
export interface LoadEntry extends WindowEntry {
  source: string | null;
  sourceSequence: string | null;
  region: string | null;
  /** The fact's message on the facts topic, as the router read it (migration 010). */
  sourceRecord: KafkaCoordinates | null;
  /** The raw record the fact was derived from, where the path names it (CDC, backfill). */
  rawRecord: KafkaCoordinates | null;
}

/** The window's entries with their lines, in entry-id order; the fact's source from the router's inbox. */
export async function readWindowEntries(pool: Pool, w: FinanceWindow): Promise<LoadEntry[]> {
  const r = await pool.query<EntryLineRow & FactCoordinateRow>(
    `select e.entry_id, e.xid::text as xid, e.posting_key, e.payment_id, e.merchant_id, e.fact_type, e.idempotency_key,
            e.trace_id, (extract(epoch from e.occurred_at) * 1000)::int8::text as occurred_ms,
            (extract(epoch from e.posted_at) * 1000)::int8::text as posted_ms,
            l.line_id, l.account_code, l.merchant_id as line_merchant_id, l.side, l.amount_minor::text as amount_minor,
            l.currency::text as currency,
            f.body->>'source' as source, f.body->>'sourceSequence' as source_sequence, f.body->>'region' as region,
            ${factCoordinateColumns('f')}
       from ledger.journal_entries e
       join ledger.journal_lines l on l.entry_id = e.entry_id
       left join payments.facts f on f.idempotency_key = e.idempotency_key
      where e.xid >= $1::xid8 and e.xid < $2::xid8
      order by e.entry_id, l.line_id`,
    [w.lo, w.hi],
  );
  const entries: LoadEntry[] = [];
  for (const row of r.rows) {
    let e = entries[entries.length - 1];
    if (!e || e.entryId !== row.entry_id) {
      e = {
        entryId: row.entry_id,
        xid: row.xid,
        postingKey: row.posting_key,
        paymentId: row.payment_id,
        merchantId: row.merchant_id,
        factType: row.fact_type,
        idempotencyKey: row.idempotency_key,
        traceId: row.trace_id,
        occurredAtMs: Number(row.occurred_ms),
        postedAtMs: Number(row.posted_ms),
        source: row.source,
        sourceSequence: row.source_sequence,
        region: row.region,
        ...factCoordinates(row),
        lines: [],
      };
      entries.push(e);
    }
    e.lines.push({
      lineId: row.line_id,
      accountCode: row.account_code,
      merchantId: row.line_merchant_id,
      side: row.side,
      amountMinor: row.amount_minor,
      currency: row.currency,
    });
  }
  return entries;
}

/** Counts and sums per currency of [lo, hi), computed by Postgres (independent of any rows read before). */
export async function ledgerWindowTotals(pool: Pool, w: FinanceWindow): Promise<WindowTotals> {
  const r = await pool.query<{
    currency: string | null;
    entries: number;
    lines: number;
    debit: string;
    credit: string;
  }>(
    `select l.currency::text as currency, count(distinct e.entry_id)::int8 as entries, count(*)::int8 as lines,
            coalesce(sum(l.amount_minor) filter (where l.side = 'debit'), 0)::text as debit,
            coalesce(sum(l.amount_minor) filter (where l.side = 'credit'), 0)::text as credit
       from ledger.journal_entries e join ledger.journal_lines l on l.entry_id = e.entry_id
      where e.xid >= $1::xid8 and e.xid < $2::xid8
      group by rollup (l.currency)`,
    [w.lo, w.hi],
  );
  const total = r.rows.find((x) => x.currency === null);
  return normalizeTotals({
    entries: total?.entries ?? 0,
    lines: total?.lines ?? 0,
    byCurrency: Object.fromEntries(
      r.rows
        .filter((x) => x.currency !== null)
        .map((x) => [x.currency!, { lines: x.lines, debitMinor: x.debit, creditMinor: x.credit }]),
    ),
  });
}

export interface PublishRequest extends FinanceWindow {
  loadId: string;
  totals: WindowTotals;
  prevSeal: string;
  seal: string;
  loadedAt: string;
}

export type PublishOutcome =
  | { outcome: 'published'; window: PublishedWindow }
  | { outcome: 'already-published'; window: PublishedWindow }
  /** Another load published a window starting at lo first (a different hi): this one is not published. */
  | { outcome: 'superseded'; window: PublishedWindow };

/** Window [lo, hi) does not start where the published chain ends. */
export class WindowNotContiguousError extends Error {
  constructor(
    readonly window: FinanceWindow,
    readonly chainEnd: string,
  ) {
    super(`window ${window.lo}-${window.hi} does not start where the published windows end (xid ${chainEnd})`);
    this.name = 'WindowNotContiguousError';
  }
}

/** The window is published already with another seal: the ledger changed under a sealed window. */
export class SealMismatchError extends Error {
  constructor(
    readonly window: FinanceWindow,
    readonly stored: string,
    readonly computed: string,
  ) {
    super(
      `window ${window.lo}-${window.hi} is sealed ${stored} but its entries now seal to ${computed}: run \`npm run finance -- verify\``,
    );
    this.name = 'SealMismatchError';
  }
}

/**
 * Publishes the window at the end of the chain (lo = the last hi, prev_seal = the last seal), or says it
 * already is. The insert's own conditions decide under concurrent loads; the primary key on lo keeps one.
 */
export async function publishWindow(pool: Pool, p: PublishRequest): Promise<PublishOutcome> {
  const inserted = await pool.query<WindowRow>(
    `insert into finance.windows (lo, hi, load_id, entries, lines, totals, prev_seal, seal, loaded_at)
     select $1::xid8, $2::xid8, $3, $4, $5, $6::jsonb, $7, $8, $9
      where $1::xid8 = coalesce((select max(hi) from finance.windows), '0'::xid8)
        and $7 = coalesce((select seal from finance.windows order by hi desc limit 1), $10)
     on conflict do nothing
     returning ${windowColumns}`,
    [
      p.lo,
      p.hi,
      p.loadId,
      p.totals.entries,
      p.totals.lines,
      JSON.stringify(p.totals.byCurrency),
      p.prevSeal,
      p.seal,
      p.loadedAt,
      GENESIS_SEAL,
    ],
  );
  if (inserted.rows[0]) return { outcome: 'published', window: toWindow(inserted.rows[0]) };
  const existing = await windowAt(pool, p.lo);
  if (!existing) {
    const last = await lastPublishedWindow(pool);
    throw new WindowNotContiguousError(p, last?.hi ?? '0');
  }
  if (existing.hi !== p.hi) return { outcome: 'superseded', window: existing };
  if (existing.seal !== p.seal) throw new SealMismatchError(p, existing.seal, p.seal);
  return { outcome: 'already-published', window: existing };
}

export async function recordLoadFailure(pool: Pool, loadId: string, w: FinanceWindow, reason: string): Promise<void> {
  await pool.query('insert into finance.load_failures (load_id, lo, hi, reason) values ($1, $2::xid8, $3::xid8, $4)', [
    loadId,
    w.lo,
    w.hi,
    reason,
  ]);
}

export interface WatermarkStatus {
  /** The end of the published chain: everything below is in Snowflake, verified and sealed. */
  publishedHi: string;
  publishedAt: string | null;
  windows: number;
  /** What a load could take now. */
  safeHi: string;
  /** Committed entries at or above the safe watermark: held back by an open transaction. */
  heldBackEntries: number;
  /** Age of the oldest committed entry not yet published (the freshness lag), seconds. */
  unpublishedAgeS: number | null;
  unpublishedEntries: number;
  /** The oldest open transaction holding the watermark, where the role may see it. */
  oldestOpenTransaction: { pid: number; ageS: number; state: string | null } | null;
  lastFailure: { loadId: string; reason: string; failedAt: string } | null;
}

export async function watermarkStatus(pool: Pool): Promise<WatermarkStatus> {
  const last = await lastPublishedWindow(pool);
  const publishedHi = last?.hi ?? '0';
  const safeHi = await safeWatermark(pool);
  const counts = await pool.query<{ held: number; unpublished: number; age_s: number | null; windows: number }>(
    `select count(*) filter (where xid >= $2::xid8)::int8 as held,
            count(*)::int8 as unpublished,
            extract(epoch from now() - min(posted_at))::float8 as age_s,
            (select count(*) from finance.windows)::int8 as windows
       from ledger.journal_entries where xid >= $1::xid8`,
    [publishedHi, safeHi],
  );
  const open = await pool.query<{ pid: number; age_s: number; state: string | null }>(
    `select pid, extract(epoch from now() - xact_start)::float8 as age_s, state from pg_stat_activity
      where backend_xid is not null and pid <> pg_backend_pid() and xact_start is not null
      order by xact_start limit 1`,
  );
  const failure = await pool.query<{ load_id: string; reason: string; failed_at: Date }>(
    'select load_id, reason, failed_at from finance.load_failures order by failure_id desc limit 1',
  );
  const c = counts.rows[0]!;
  const o = open.rows[0];
  const f = failure.rows[0];
  return {
    publishedHi,
    publishedAt: last?.publishedAt ?? null,
    windows: c.windows,
    safeHi,
    heldBackEntries: c.held,
    unpublishedAgeS: c.age_s === null ? null : Math.round(c.age_s * 10) / 10,
    unpublishedEntries: c.unpublished,
    oldestOpenTransaction: o ? { pid: o.pid, ageS: Math.round(o.age_s * 10) / 10, state: o.state } : null,
    lastFailure: f ? { loadId: f.load_id, reason: f.reason, failedAt: f.failed_at.toISOString() } : null,
  };
}

export async function countPublishedWindows(pool: Pool): Promise<number> {
  return (await pool.query<{ n: number }>('select count(*)::int8 as n from finance.windows')).rows[0]!.n;
}

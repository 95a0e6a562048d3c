import type { Pool } from 'pg';
import { totalsDifferences } from '../ledger/seals';
import { ledgerWindowTotals, publishedWindows, watermarkStatus } from '../stores/finance-ledger';
import { warehouseSeals, warehouseWindowTotals } from '../stores/finance-warehouse';
import { likePrefix } from '../stores/postgres';
import type { SnowflakeQueries } from '../stores/snowflake';
import { verifyFinance } from './finance-verify';

// The demo's finance numbers for one run: how many windows it took, how fresh Snowflake was (the
// window's Snowflake seal time minus each entry's ledger commit), and whether Snowflake equals the
// ledger and both still match their seals.

export interface FinanceSummary {
  loads: number;
  rowsLoaded: number;
  freshnessP50S: number | null;
  freshnessP99S: number | null;
  snowflakeMatchesLedger: boolean;
  sealsVerified: boolean;
  /** Windows whose totals differ, and seal problems, in words (empty when both flags are true). */
  problems: string[];
}

/**
 * True once every entry of the run's payments is below the published watermark, and Snowflake holds the
 * seal of that watermark's window: the load publishes in Postgres first and then copies the seal, so
 * between the two the window is published but not yet sealed in the warehouse.
 */
export async function runPublished(pool: Pool, snowflake: SnowflakeQueries, paymentIdPrefix: string): Promise<boolean> {
  const { publishedHi } = await watermarkStatus(pool);
  const r = await pool.query<{ n: number }>(
    `select count(*)::int8 as n from ledger.journal_entries where payment_id like $1 and xid >= $2::xid8`,
    [likePrefix(paymentIdPrefix), publishedHi],
  );
  if (r.rows[0]!.n !== 0) return false;
  if (publishedHi === '0') return true; // nothing published, and the run has no entry
  const sealed = await warehouseSeals(snowflake, { lo: (BigInt(publishedHi) - 1n).toString(), hi: publishedHi });
  return sealed.some((s) => s.hi === publishedHi);
}

const percentile = (sorted: number[], p: number): number | null =>
  sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

export async function financeSummary(
  pool: Pool,
  snowflake: SnowflakeQueries,
  paymentIdPrefix: string,
): Promise<FinanceSummary> {
  const entries = (
    await pool.query<{ xid: string; posted_ms: string }>(
      `select xid::text as xid, (extract(epoch from posted_at) * 1000)::int8::text as posted_ms
         from ledger.journal_entries where payment_id like $1`,
      [likePrefix(paymentIdPrefix)],
    )
  ).rows.map((r) => ({ xid: BigInt(r.xid), postedMs: Number(r.posted_ms) }));
  if (entries.length === 0) {
    return {
      loads: 0,
      rowsLoaded: 0,
      freshnessP50S: null,
      freshnessP99S: null,
      snowflakeMatchesLedger: true,
      sealsVerified: true,
      problems: [],
    };
  }
  const lo = entries.reduce((m, e) => (e.xid < m ? e.xid : m), entries[0]!.xid).toString();
  const hi = (entries.reduce((m, e) => (e.xid > m ? e.xid : m), entries[0]!.xid) + 1n).toString();
  const windows = await publishedWindows(pool, { lo, hi });
  const seals = new Map((await warehouseSeals(snowflake, { lo, hi })).map((s) => [s.lo, s]));
  const freshness: number[] = [];
  for (const e of entries) {
    const w = windows.find((x) => BigInt(x.lo) <= e.xid && e.xid < BigInt(x.hi));
    const seal = w && seals.get(w.lo);
    if (seal) freshness.push((seal.publishedAtMs - e.postedMs) / 1000);
  }
  freshness.sort((a, b) => a - b);
  const problems: string[] = [];
  for (const w of windows) {
    const warehouse = await warehouseWindowTotals(snowflake, w);
    const d = totalsDifferences(await ledgerWindowTotals(pool, w), warehouse);
    if (warehouse.duplicateEntries + warehouse.duplicateLines > 0) d.push('duplicate rows');
    problems.push(...d.map((x) => `window ${w.lo}-${w.hi}: ${x}`));
  }
  const matches = problems.length === 0 && freshness.length === entries.length;
  if (freshness.length < entries.length)
    problems.push(`${entries.length - freshness.length} entries of the run not published in Snowflake`);
  const verify = await verifyFinance(pool, snowflake, { lo, hi });
  const round = (s: number | null): number | null => (s === null ? null : Math.round(s * 10) / 10);
  return {
    loads: windows.length,
    rowsLoaded: windows.reduce((n, w) => n + w.entries + w.lines, 0),
    freshnessP50S: round(percentile(freshness, 50)),
    freshnessP99S: round(percentile(freshness, 99)),
    snowflakeMatchesLedger: matches,
    sealsVerified: verify.ok,
    problems: [...problems, ...verify.problems],
  };
}

import type { Pool } from 'pg';
import { type EntryDifferences, type FinanceWindow, GENESIS_SEAL, entryDifferences, sealOf } from '../ledger/seals';
import { publishedWindows, readWindowEntries } from '../stores/finance-ledger';
import { readWarehouseWindow, warehouseSeals } from '../stores/finance-warehouse';
import type { SnowflakeQueries } from '../stores/snowflake';

// `npm run finance -- verify`: recomputes every published window's seal from the ledger and from
// Snowflake and compares them with the seals both stores keep. Where a store no longer matches its seal,
// the other store (if it still does) is the reference that names the entries altered, missing or added.

export interface WindowVerdict extends FinanceWindow {
  ok: boolean;
  seal: string;
  /** The ledger's entries still seal to the stored seal. */
  ledgerSealOk: boolean;
  /** Snowflake's entries still seal to it. */
  snowflakeSealOk: boolean;
  /** Snowflake holds the same seal for this window as Postgres. */
  sealsAgree: boolean;
  /** prev_seal is the previous window's seal (the chain is unbroken). */
  chainOk: boolean;
  /** The ledger against Snowflake (when Snowflake still matches the seal; else against each other). */
  ledger: EntryDifferences;
  /** Snowflake against the ledger (when the ledger still matches the seal). */
  snowflake: EntryDifferences;
  problems: string[];
}

export interface VerifyReport {
  windows: number;
  ok: boolean;
  verdicts: WindowVerdict[];
  problems: string[];
}

const none = (): EntryDifferences => ({ altered: [], missing: [], added: [] });
const describe = (where: string, d: EntryDifferences): string[] =>
  [
    d.altered.length > 0 ? `${where}: entries altered ${d.altered.join(', ')}` : '',
    d.missing.length > 0 ? `${where}: entries missing ${d.missing.join(', ')}` : '',
    d.added.length > 0 ? `${where}: entries added ${d.added.join(', ')}` : '',
  ].filter((s) => s !== '');

export async function verifyFinance(
  pool: Pool,
  snowflake: SnowflakeQueries,
  range: Partial<FinanceWindow> = {},
  onWindow?: (done: number, total: number) => void,
): Promise<VerifyReport> {
  const windows = await publishedWindows(pool, range);
  const seals = new Map((await warehouseSeals(snowflake, range)).map((s) => [s.lo, s]));
  const previous = range.lo ? await publishedWindows(pool, { hi: windows[0]?.lo ?? '0' }) : [];
  let prevSeal = windows[0] && previous.length > 0 ? previous[previous.length - 1]!.seal : GENESIS_SEAL;
  const verdicts: WindowVerdict[] = [];
  for (const w of windows) {
    const ledgerEntries = await readWindowEntries(pool, w);
    const warehouseEntries = await readWarehouseWindow(snowflake, w);
    const stored = seals.get(w.lo);
    const ledgerSealOk = sealOf(w.prevSeal, ledgerEntries) === w.seal;
    const snowflakeSealOk = sealOf(w.prevSeal, warehouseEntries) === w.seal;
    const sealsAgree = stored !== undefined && stored.seal === w.seal && stored.hi === w.hi;
    const chainOk = w.prevSeal === prevSeal;
    const ledger = !ledgerSealOk ? entryDifferences(warehouseEntries, ledgerEntries) : none();
    const snowflakeDiff = !snowflakeSealOk ? entryDifferences(ledgerEntries, warehouseEntries) : none();
    const problems = [
      ...(ledgerSealOk ? [] : [`ledger no longer matches seal ${w.seal.slice(0, 12)}`]),
      ...describe('ledger', ledger),
      ...(snowflakeSealOk ? [] : [`snowflake no longer matches seal ${w.seal.slice(0, 12)}`]),
      ...describe('snowflake', snowflakeDiff),
      ...(sealsAgree
        ? []
        : [stored ? `snowflake seal ${stored.seal.slice(0, 12)} differs` : 'seal missing in snowflake']),
      ...(chainOk ? [] : ['prev_seal does not chain to the previous window']),
    ].map((p) => `window ${w.lo}-${w.hi}: ${p}`);
    verdicts.push({
      lo: w.lo,
      hi: w.hi,
      seal: w.seal,
      ok: problems.length === 0,
      ledgerSealOk,
      snowflakeSealOk,
      sealsAgree,
      chainOk,
      ledger,
      snowflake: snowflakeDiff,
      problems,
    });
    prevSeal = w.seal;
    onWindow?.(verdicts.length, windows.length);
  }
  const problems = verdicts.flatMap((v) => v.problems);
  return { windows: windows.length, ok: problems.length === 0, verdicts, problems };
}

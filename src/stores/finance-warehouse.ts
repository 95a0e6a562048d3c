import type { KafkaCoordinates } from '../contracts/envelope';
import type { FinanceWindow, WindowEntry, WindowTotals } from '../ledger/seals';
import { entryHash, normalizeTotals } from '../ledger/seals';
import type { LoadEntry } from './finance-ledger';
import type { SnowflakeBind, SnowflakeQueries, SnowflakeSession } from './snowflake';

// The Snowflake side of the finance load: every statement against FINANCE.* (snowflake-migrations/001, 004).
// A load stages its rows, MERGEs them by entry and line id from a deduplicated stage, and records its
// audit row, all in one transaction; publishing adds the seal and the daily balances it touched.

export interface WarehouseLoad extends FinanceWindow {
  loadId: string;
  entries: LoadEntry[];
  /** The ledger's totals of the window, kept in the audit row. */
  totals: WindowTotals;
  /** Crash tests only: called inside the transaction after the MERGEs, before COMMIT. */
  beforeCommit?: () => Promise<void>;
}

export interface WarehouseLoadResult {
  /** Rows the MERGEs inserted: 0 on a rerun; on a replay, only what Snowflake was missing. */
  entriesInserted: number;
  linesInserted: number;
}

/** Rows per multi-row INSERT (its binds stay well under Snowflake's limit per statement). */
const STAGE_CHUNK = 200;

const ts = (ms: number): string => new Date(ms).toISOString();
const day = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

/**
 * `INSERT … VALUES (?, …), (?, …)` per chunk: one statement for many rows. Array binds would be one
 * statement too in Snowflake, but the local server runs them row by row (~10 ms a row).
 */
async function insertChunks(tx: SnowflakeQueries, insert: string, rows: SnowflakeBind[][]): Promise<void> {
  for (let i = 0; i < rows.length; i += STAGE_CHUNK) {
    const chunk = rows.slice(i, i + STAGE_CHUNK);
    const tuple = `(${chunk[0]!.map(() => '?').join(', ')})`;
    await tx.query(`${insert} VALUES ${chunk.map(() => tuple).join(', ')}`, chunk.flat());
  }
}

/** Topic, partition and offset binds (nulls when the fact's record is not known). */
const coordinateBinds = (at: KafkaCoordinates | null): SnowflakeBind[] =>
  at === null ? [null, null, null] : [at.topic, at.partition, BigInt(at.offset)];

const inserted = (rows: Record<string, unknown>[]): number => Number(rows[0]?.['number of rows inserted'] ?? 0);

/**
 * Writes the window in one transaction: stage, MERGE (insert only: loaded history is never updated),
 * the audit row, unstage. Every run re-merges, never skips on "already loaded": a rerun of a load id
 * inserts nothing, and a replayed window restores exactly the rows Snowflake lacks.
 */
export async function loadWindowToWarehouse(
  session: SnowflakeSession,
  load: WarehouseLoad,
): Promise<WarehouseLoadResult> {
  return session.transaction(async (tx) => {
    await insertChunks(
      tx,
      `INSERT INTO FINANCE.STAGE_JOURNAL_ENTRIES (LOAD_ID, ENTRY_ID, XID, POSTING_KEY, PAYMENT_ID, MERCHANT_ID, REGION,
         FACT_TYPE, IDEMPOTENCY_KEY, TRACE_ID, SOURCE, SOURCE_SEQUENCE, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET,
         RAW_TOPIC, RAW_PARTITION, RAW_OFFSET, OCCURRED_AT, POSTED_AT, ROW_HASH)
`,
      load.entries.map((e) => [
        load.loadId,
        e.entryId,
        BigInt(e.xid),
        e.postingKey,
        e.paymentId,
        e.merchantId,
        e.region,
        e.factType,
        e.idempotencyKey,
        e.traceId,
        e.source,
        e.sourceSequence === null ? null : BigInt(e.sourceSequence),
        ...coordinateBinds(e.sourceRecord),
        ...coordinateBinds(e.rawRecord),
        ts(e.occurredAtMs),
        ts(e.postedAtMs),
        entryHash(e),
      ]),
    );
    await insertChunks(
      tx,
      `INSERT INTO FINANCE.STAGE_JOURNAL_LINES (LOAD_ID, LINE_ID, ENTRY_ID, XID, ACCOUNT_CODE, MERCHANT_ID, SIDE,
         AMOUNT_MINOR, CURRENCY, BALANCE_DATE, IDEMPOTENCY_KEY)`,
      load.entries.flatMap((e) =>
        e.lines.map((l) => [
          load.loadId,
          l.lineId,
          e.entryId,
          BigInt(e.xid),
          l.accountCode,
          l.merchantId,
          l.side,
          BigInt(l.amountMinor),
          l.currency,
          day(e.postedAtMs),
          e.idempotencyKey,
        ]),
      ),
    );
    // Snowflake's MERGE errors on two source rows for one target row: one row per id, explicitly.
    const entries = await tx.query(
      `MERGE INTO FINANCE.JOURNAL_ENTRIES t
       USING (SELECT * FROM FINANCE.STAGE_JOURNAL_ENTRIES WHERE LOAD_ID = ?
              QUALIFY ROW_NUMBER() OVER (PARTITION BY ENTRY_ID ORDER BY ROW_HASH) = 1) s
          ON t.ENTRY_ID = s.ENTRY_ID
       WHEN NOT MATCHED THEN INSERT (ENTRY_ID, XID, POSTING_KEY, PAYMENT_ID, MERCHANT_ID, REGION, FACT_TYPE,
         IDEMPOTENCY_KEY, TRACE_ID, SOURCE, SOURCE_SEQUENCE, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET,
         RAW_TOPIC, RAW_PARTITION, RAW_OFFSET, OCCURRED_AT, POSTED_AT, ROW_HASH, LOAD_ID, LOADED_AT)
       VALUES (s.ENTRY_ID, s.XID, s.POSTING_KEY, s.PAYMENT_ID, s.MERCHANT_ID, s.REGION, s.FACT_TYPE,
         s.IDEMPOTENCY_KEY, s.TRACE_ID, s.SOURCE, s.SOURCE_SEQUENCE, s.SOURCE_TOPIC, s.SOURCE_PARTITION,
         s.SOURCE_OFFSET, s.RAW_TOPIC, s.RAW_PARTITION, s.RAW_OFFSET, s.OCCURRED_AT, s.POSTED_AT, s.ROW_HASH,
         s.LOAD_ID, CURRENT_TIMESTAMP())`,
      [load.loadId],
    );
    const lines = await tx.query(
      `MERGE INTO FINANCE.JOURNAL_LINES t
       USING (SELECT * FROM FINANCE.STAGE_JOURNAL_LINES WHERE LOAD_ID = ?
              QUALIFY ROW_NUMBER() OVER (PARTITION BY LINE_ID ORDER BY ENTRY_ID) = 1) s
          ON t.LINE_ID = s.LINE_ID
       WHEN NOT MATCHED THEN INSERT (LINE_ID, ENTRY_ID, XID, ACCOUNT_CODE, MERCHANT_ID, SIDE, AMOUNT_MINOR, CURRENCY,
         BALANCE_DATE, IDEMPOTENCY_KEY, LOAD_ID, LOADED_AT)
       VALUES (s.LINE_ID, s.ENTRY_ID, s.XID, s.ACCOUNT_CODE, s.MERCHANT_ID, s.SIDE, s.AMOUNT_MINOR, s.CURRENCY,
         s.BALANCE_DATE, s.IDEMPOTENCY_KEY, s.LOAD_ID, CURRENT_TIMESTAMP())`,
      [load.loadId],
    );
    const result = { entriesInserted: inserted(entries), linesInserted: inserted(lines) };
    // One audit row per load id: the first run's counts (a rerun that inserts nothing adds no row).
    await tx.query(
      `MERGE INTO FINANCE.LOAD_AUDIT t
       USING (SELECT ? AS LOAD_ID, ? AS LO_XID, ? AS HI_XID, ? AS ENTRIES, ? AS LINES, ? AS TOTALS,
                     ? AS ENTRIES_INSERTED, ? AS LINES_INSERTED) s
          ON t.LOAD_ID = s.LOAD_ID
       WHEN NOT MATCHED THEN INSERT (LOAD_ID, LO_XID, HI_XID, ENTRIES, LINES, TOTALS, ENTRIES_INSERTED, LINES_INSERTED, LOADED_AT)
       VALUES (s.LOAD_ID, s.LO_XID, s.HI_XID, s.ENTRIES, s.LINES, s.TOTALS, s.ENTRIES_INSERTED, s.LINES_INSERTED,
         CURRENT_TIMESTAMP())`,
      [
        load.loadId,
        BigInt(load.lo),
        BigInt(load.hi),
        load.totals.entries,
        load.totals.lines,
        JSON.stringify(load.totals.byCurrency),
        result.entriesInserted,
        result.linesInserted,
      ],
    );
    await tx.query('DELETE FROM FINANCE.STAGE_JOURNAL_ENTRIES WHERE LOAD_ID = ?', [load.loadId]);
    await tx.query('DELETE FROM FINANCE.STAGE_JOURNAL_LINES WHERE LOAD_ID = ?', [load.loadId]);
    await load.beforeCommit?.();
    return result;
  });
}

/** Counts and sums per currency of [lo, hi) as Snowflake holds them, plus rows that share an id. */
export async function warehouseWindowTotals(
  session: SnowflakeQueries,
  w: FinanceWindow,
): Promise<WindowTotals & { duplicateEntries: number; duplicateLines: number }> {
  const binds = [BigInt(w.lo), BigInt(w.hi)];
  const [e] = await session.query<{ N: number; D: number }>(
    'SELECT COUNT(*) AS N, COUNT(*) - COUNT(DISTINCT ENTRY_ID) AS D FROM FINANCE.JOURNAL_ENTRIES WHERE XID >= ? AND XID < ?',
    binds,
  );
  const rows = await session.query<{ CURRENCY: string; N: number; D: number; DEBIT: string; CREDIT: string }>(
    `SELECT CURRENCY, COUNT(*) AS N, COUNT(*) - COUNT(DISTINCT LINE_ID) AS D,
            TO_VARCHAR(CAST(SUM(CASE WHEN SIDE = 'debit' THEN AMOUNT_MINOR ELSE 0 END) AS NUMBER(38,0))) AS DEBIT,
            TO_VARCHAR(CAST(SUM(CASE WHEN SIDE = 'credit' THEN AMOUNT_MINOR ELSE 0 END) AS NUMBER(38,0))) AS CREDIT
       FROM FINANCE.JOURNAL_LINES WHERE XID >= ? AND XID < ? GROUP BY CURRENCY`,
    binds,
  );
  const totals = normalizeTotals({
    entries: e?.N ?? 0,
    lines: rows.reduce((n, r) => n + r.N, 0),
    byCurrency: Object.fromEntries(
      rows.map((r) => [r.CURRENCY, { lines: r.N, debitMinor: r.DEBIT, creditMinor: r.CREDIT }]),
    ),
  });
  return { ...totals, duplicateEntries: e?.D ?? 0, duplicateLines: rows.reduce((n, r) => n + r.D, 0) };
}

interface WarehouseEntryRow {
  ENTRY_ID: number;
  XID: number;
  POSTING_KEY: string;
  PAYMENT_ID: string;
  MERCHANT_ID: string;
  FACT_TYPE: string;
  IDEMPOTENCY_KEY: string;
  TRACE_ID: string | null;
  OCCURRED_MS: number;
  POSTED_MS: number;
}

interface WarehouseLineRow {
  LINE_ID: number;
  ENTRY_ID: number;
  ACCOUNT_CODE: string;
  MERCHANT_ID: string;
  SIDE: 'debit' | 'credit';
  AMOUNT: string;
  CURRENCY: string;
}

/** The window's entries as Snowflake holds them, in the canonical shape the seals hash. */
export async function readWarehouseWindow(session: SnowflakeQueries, w: FinanceWindow): Promise<WindowEntry[]> {
  const binds = [BigInt(w.lo), BigInt(w.hi)];
  const entries = await session.query<WarehouseEntryRow>(
    `SELECT ENTRY_ID, XID, POSTING_KEY, PAYMENT_ID, MERCHANT_ID, FACT_TYPE, IDEMPOTENCY_KEY, TRACE_ID,
            DATE_PART(EPOCH_MILLISECOND, OCCURRED_AT) AS OCCURRED_MS, DATE_PART(EPOCH_MILLISECOND, POSTED_AT) AS POSTED_MS
       FROM FINANCE.JOURNAL_ENTRIES WHERE XID >= ? AND XID < ? ORDER BY ENTRY_ID`,
    binds,
  );
  const lines = await session.query<WarehouseLineRow>(
    `SELECT LINE_ID, ENTRY_ID, ACCOUNT_CODE, MERCHANT_ID, SIDE, TO_VARCHAR(AMOUNT_MINOR) AS AMOUNT, CURRENCY
       FROM FINANCE.JOURNAL_LINES WHERE XID >= ? AND XID < ? ORDER BY LINE_ID`,
    binds,
  );
  const byEntry = new Map<number, WindowEntry['lines']>();
  for (const l of lines) {
    const list = byEntry.get(l.ENTRY_ID) ?? [];
    list.push({
      lineId: l.LINE_ID,
      accountCode: l.ACCOUNT_CODE,
      merchantId: l.MERCHANT_ID,
      side: l.SIDE,
      amountMinor: l.AMOUNT,
      currency: l.CURRENCY,
    });
    byEntry.set(l.ENTRY_ID, list);
  }
  return entries.map((e) => ({
    entryId: e.ENTRY_ID,
    xid: String(e.XID),
    postingKey: e.POSTING_KEY,
    paymentId: e.PAYMENT_ID,
    merchantId: e.MERCHANT_ID,
    factType: e.FACT_TYPE,
    idempotencyKey: e.IDEMPOTENCY_KEY,
    traceId: e.TRACE_ID,
    occurredAtMs: Number(e.OCCURRED_MS),
    postedAtMs: Number(e.POSTED_MS),
    lines: byEntry.get(e.ENTRY_ID) ?? [],
  }));
}

export interface WarehouseSeal extends FinanceWindow {
  loadId: string;
  entries: number;
  lines: number;
  totals: WindowTotals;
  prevSeal: string;
  seal: string;
}

/**
 * Publishes a verified window in one transaction: its seal (once per window: MERGE by LO_XID) and the
 * daily balances of the days its lines touched, recomputed from every published line of those days.
 */
export async function publishToWarehouse(session: SnowflakeSession, s: WarehouseSeal): Promise<void> {
  await session.transaction(async (tx) => {
    await tx.query(
      `MERGE INTO FINANCE.SEALS t
       USING (SELECT ? AS LO_XID, ? AS HI_XID, ? AS LOAD_ID, ? AS ENTRIES, ? AS LINES, ? AS TOTALS, ? AS PREV_SEAL, ? AS SEAL) s
          ON t.LO_XID = s.LO_XID
       WHEN NOT MATCHED THEN INSERT (LO_XID, HI_XID, LOAD_ID, ENTRIES, LINES, TOTALS, PREV_SEAL, SEAL, PUBLISHED_AT)
       VALUES (s.LO_XID, s.HI_XID, s.LOAD_ID, s.ENTRIES, s.LINES, s.TOTALS, s.PREV_SEAL, s.SEAL, CURRENT_TIMESTAMP())`,
      [
        BigInt(s.lo),
        BigInt(s.hi),
        s.loadId,
        s.entries,
        s.lines,
        JSON.stringify(s.totals.byCurrency),
        s.prevSeal,
        s.seal,
      ],
    );
    await tx.query(
      `MERGE INTO FINANCE.DAILY_BALANCES d
       USING (SELECT l.BALANCE_DATE, l.MERCHANT_ID, l.ACCOUNT_CODE, l.CURRENCY, COUNT(*) AS LINES, MAX(k.HI) AS AS_OF_XID,
                     SUM(CASE WHEN l.SIDE = 'debit' THEN l.AMOUNT_MINOR ELSE 0 END) AS DEBIT_MINOR,
                     SUM(CASE WHEN l.SIDE = 'credit' THEN l.AMOUNT_MINOR ELSE 0 END) AS CREDIT_MINOR
                FROM FINANCE.JOURNAL_LINES l
                JOIN (SELECT DISTINCT BALANCE_DATE, MERCHANT_ID, ACCOUNT_CODE, CURRENCY, CAST(? AS NUMBER(20,0)) AS HI
                        FROM FINANCE.JOURNAL_LINES WHERE XID >= ? AND XID < ?) k
                  ON l.BALANCE_DATE = k.BALANCE_DATE AND l.MERCHANT_ID = k.MERCHANT_ID
                 AND l.ACCOUNT_CODE = k.ACCOUNT_CODE AND l.CURRENCY = k.CURRENCY
               WHERE l.XID < k.HI
               GROUP BY l.BALANCE_DATE, l.MERCHANT_ID, l.ACCOUNT_CODE, l.CURRENCY) s
          ON d.BALANCE_DATE = s.BALANCE_DATE AND d.MERCHANT_ID = s.MERCHANT_ID
         AND d.ACCOUNT_CODE = s.ACCOUNT_CODE AND d.CURRENCY = s.CURRENCY
       WHEN MATCHED THEN UPDATE SET LINES = s.LINES, DEBIT_MINOR = s.DEBIT_MINOR, CREDIT_MINOR = s.CREDIT_MINOR,
         AS_OF_XID = s.AS_OF_XID, UPDATED_AT = CURRENT_TIMESTAMP()
       WHEN NOT MATCHED THEN INSERT (BALANCE_DATE, MERCHANT_ID, ACCOUNT_CODE, CURRENCY, LINES, DEBIT_MINOR, CREDIT_MINOR,
         AS_OF_XID, UPDATED_AT)
       VALUES (s.BALANCE_DATE, s.MERCHANT_ID, s.ACCOUNT_CODE, s.CURRENCY, s.LINES, s.DEBIT_MINOR, s.CREDIT_MINOR,
         s.AS_OF_XID, CURRENT_TIMESTAMP())`,
      // Binds only inside USING: the local server runs a MERGE as several statements and hands every
      // one of them all the binds.
      [BigInt(s.hi), BigInt(s.lo), BigInt(s.hi)],
    );
  });
}

export interface WarehouseSealRow extends FinanceWindow {
  loadId: string;
  prevSeal: string;
  seal: string;
  publishedAtMs: number;
}

/** Seals in Snowflake overlapping [from, to) of xids (all when unset), in order. */
export async function warehouseSeals(
  session: SnowflakeQueries,
  range: Partial<FinanceWindow> = {},
): Promise<WarehouseSealRow[]> {
  const rows = await session.query<{
    LO: string;
    HI: string;
    LOAD_ID: string;
    PREV_SEAL: string;
    SEAL: string;
    MS: number;
  }>(
    `SELECT TO_VARCHAR(LO_XID) AS LO, TO_VARCHAR(HI_XID) AS HI, LOAD_ID, PREV_SEAL, SEAL,
            DATE_PART(EPOCH_MILLISECOND, PUBLISHED_AT) AS MS
       FROM FINANCE.SEALS WHERE HI_XID > ? AND LO_XID < ? ORDER BY LO_XID`,
    [BigInt(range.lo ?? '0'), BigInt(range.hi ?? '18446744073709551615')],
  );
  return rows.map((r) => ({
    lo: r.LO,
    hi: r.HI,
    loadId: r.LOAD_ID,
    prevSeal: r.PREV_SEAL,
    seal: r.SEAL,
    publishedAtMs: Number(r.MS),
  }));
}

export async function countWarehouseSeals(session: SnowflakeQueries): Promise<number> {
  return (await session.query<{ N: number }>('SELECT COUNT(*) AS N FROM FINANCE.SEALS'))[0]?.N ?? 0;
}

import { createHash } from 'node:crypto';

// Finance windows, pure: the canonical form of a journal entry (the same bytes whether read from the
// ledger or from Snowflake), a window's seal chained to the previous one, its totals per currency,
// and the comparison that names entries altered, missing or added. Money stays integer minor units
// (decimal strings, summed as bigint); nothing here reads a clock or a store.

import type { FinanceWindow } from '../contracts/finance';

export type { FinanceWindow };

export interface WindowLine {
  lineId: number;
  accountCode: string;
  merchantId: string;
  side: 'debit' | 'credit';
  /** Integer minor units as a decimal string (exact beyond 2^53). */
  amountMinor: string;
  currency: string;
}

/** One journal entry with its lines, as both stores hold it (the fields that seal it). */
export interface WindowEntry {
  entryId: number;
  xid: string;
  postingKey: string;
  paymentId: string;
  merchantId: string;
  factType: string;
  idempotencyKey: string;
  traceId: string | null;
  /** Epoch milliseconds (both stores keep at least millisecond precision). */
  occurredAtMs: number;
  postedAtMs: number;
  lines: WindowLine[];
}

export interface CurrencyTotals {
  lines: number;
  debitMinor: string;
  creditMinor: string;
}

export interface WindowTotals {
  entries: number;
  lines: number;
  /** Sorted by currency code, so two totals compare with deepEqual / JSON equality. */
  byCurrency: Record<string, CurrencyTotals>;
}

/** The previous seal of the first window. */
export const GENESIS_SEAL = '0'.repeat(64);

/** Parses "lo-hi" (the starter's --window and load ids' tail). */
export function parseWindow(text: string): FinanceWindow {
  const m = /^(?:load\/)?(\d+)-(\d+)$/.exec(text.trim());
  if (!m || BigInt(m[2]!) <= BigInt(m[1]!)) throw new Error(`window "${text}": expected <lo>-<hi> with lo < hi`);
  return { lo: BigInt(m[1]!).toString(), hi: BigInt(m[2]!).toString() };
}

/** The entry's canonical text: fixed field order, lines in line-id order, JSON-escaped strings. */
export function canonicalEntry(e: WindowEntry): string {
  const lines = [...e.lines]
    .sort((a, b) => a.lineId - b.lineId)
    .map((l) => [l.lineId, l.accountCode, l.merchantId, l.side, BigInt(l.amountMinor).toString(), l.currency]);
  return JSON.stringify([
    e.entryId,
    BigInt(e.xid).toString(),
    e.postingKey,
    e.paymentId,
    e.merchantId,
    e.factType,
    e.idempotencyKey,
    e.traceId,
    new Date(e.occurredAtMs).toISOString(),
    new Date(e.postedAtMs).toISOString(),
    lines,
  ]);
}

export const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

export const entryHash = (e: WindowEntry): string => sha256(canonicalEntry(e));

/** SHA-256 over the previous seal and the window's entry hashes in entry-id order. */
export function sealOf(prevSeal: string, entries: readonly WindowEntry[]): string {
  const hashes = [...entries].sort((a, b) => a.entryId - b.entryId).map(entryHash);
  return sha256([prevSeal, ...hashes].join('\n'));
}

export function totalsOf(entries: readonly WindowEntry[]): WindowTotals {
  const sums = new Map<string, { lines: number; debit: bigint; credit: bigint }>();
  let lines = 0;
  for (const e of entries) {
    for (const l of e.lines) {
      lines += 1;
      const t = sums.get(l.currency) ?? { lines: 0, debit: 0n, credit: 0n };
      t.lines += 1;
      if (l.side === 'debit') t.debit += BigInt(l.amountMinor);
      else t.credit += BigInt(l.amountMinor);
      sums.set(l.currency, t);
    }
  }
  return normalizeTotals({
    entries: entries.length,
    lines,
    byCurrency: Object.fromEntries(
      [...sums].map(([c, t]) => [
        c,
        { lines: t.lines, debitMinor: t.debit.toString(), creditMinor: t.credit.toString() },
      ]),
    ),
  });
}

/** Currencies sorted and amounts in canonical decimal form, so equal totals are equal JSON. */
export function normalizeTotals(t: WindowTotals): WindowTotals {
  const byCurrency: Record<string, CurrencyTotals> = {};
  for (const c of Object.keys(t.byCurrency).sort()) {
    const v = t.byCurrency[c]!;
    byCurrency[c] = {
      lines: v.lines,
      debitMinor: BigInt(v.debitMinor).toString(),
      creditMinor: BigInt(v.creditMinor).toString(),
    };
  }
  return { entries: t.entries, lines: t.lines, byCurrency };
}

/** Where two totals differ, in words ("EUR debitMinor ledger 2000 snowflake 1900"); empty when equal. */
export function totalsDifferences(ledger: WindowTotals, warehouse: WindowTotals): string[] {
  const out: string[] = [];
  if (ledger.entries !== warehouse.entries) out.push(`entries ledger ${ledger.entries} snowflake ${warehouse.entries}`);
  if (ledger.lines !== warehouse.lines) out.push(`lines ledger ${ledger.lines} snowflake ${warehouse.lines}`);
  const currencies = [...new Set([...Object.keys(ledger.byCurrency), ...Object.keys(warehouse.byCurrency)])].sort();
  for (const c of currencies) {
    const a = ledger.byCurrency[c];
    const b = warehouse.byCurrency[c];
    for (const k of ['lines', 'debitMinor', 'creditMinor'] as const) {
      if (String(a?.[k] ?? 0) !== String(b?.[k] ?? 0))
        out.push(`${c} ${k} ledger ${a?.[k] ?? 0} snowflake ${b?.[k] ?? 0}`);
    }
  }
  return out;
}

export interface EntryDifferences {
  /** In both, with different canonical rows. */
  altered: number[];
  /** In the reference, not in the other. */
  missing: number[];
  /** In the other, not in the reference. */
  added: number[];
}

/** Compares entries by id and canonical hash: reference (the sealed truth) against another reading. */
export function entryDifferences(reference: readonly WindowEntry[], other: readonly WindowEntry[]): EntryDifferences {
  const ref = new Map(reference.map((e) => [e.entryId, entryHash(e)]));
  const oth = new Map(other.map((e) => [e.entryId, entryHash(e)]));
  const altered: number[] = [];
  const missing: number[] = [];
  const added: number[] = [];
  for (const [id, h] of ref) {
    const o = oth.get(id);
    if (o === undefined) missing.push(id);
    else if (o !== h) altered.push(id);
  }
  for (const id of oth.keys()) if (!ref.has(id)) added.push(id);
  const asc = (a: number, b: number) => a - b;
  return { altered: altered.sort(asc), missing: missing.sort(asc), added: added.sort(asc) };
}

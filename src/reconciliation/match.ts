import { createHash } from 'node:crypto';
import type { SettlementItem, SettlementItemKind, SettlementProvider } from '../contracts/settlement-files';

// The three-way match of one window (a UTC day): the ledger's money movements at the partner
// (settled / refunded / chargeback_opened / chargeback_won entries) ↔ PayLink's OLTP payments ↔ the
// partners' settlement lines. Pure and deterministic: the activity reads, this decides, the store writes.
// Matching rules: docs/reconciliation.md#matching-rules.

/** Matchable kinds: a payout line closes a batch and carries no payment. */
export type MatchKind = Exclude<SettlementItemKind, 'payout' | 'other'>;

/** One money movement at the partner as the ledger has it; amounts signed as money to PayLink. */
export interface LedgerItem {
  paymentId: string;
  merchantId: string;
  kind: MatchKind;
  /** settlementId / refundId / chargebackId (from the posting key). */
  reference: string;
  currency: string;
  grossMinor: number;
  feeMinor: number;
  /** UTC day of the fact's occurredAt. */
  bookedDate: string;
  entryId: number;
}

/** PayLink's OLTP payment row, as its payments API keeps it. */
export interface OltpPayment {
  paymentId: string;
  merchantId: string;
  currency: string;
  amountMinor: number;
  status: string;
}

export const RECONCILIATION_BREAK_TYPES = [
  // the simulator's BREAK_TYPES: file ↔ ledger
  'missing',
  'amount_mismatch',
  'fee_mismatch',
  'duplicate',
  'unknown_payment',
  'timing',
  'currency_mismatch',
  // ledger-side: a line for a payment PayLink knows, without its ledger entry
  'unposted',
  // ledger ↔ OLTP
  'oltp_missing',
  'oltp_currency_mismatch',
] as const;
export type ReconciliationBreakType = (typeof RECONCILIATION_BREAK_TYPES)[number];

export interface SideAmounts {
  date: string;
  currency: string;
  grossMinor: number;
  feeMinor: number;
}

export interface ReconciliationBreak {
  /** Stable identity, the same on every run of any window: sha256 of type|payment|kind|reference|line. */
  breakKey: string;
  type: ReconciliationBreakType;
  provider: SettlementProvider | null;
  paymentId: string;
  merchantId: string | null;
  kind: MatchKind;
  reference: string;
  lineReference: string | null;
  /** The money at stake, ≥ 0, in `currency` (PayLink's, the file's for an unknown payment or an unposted line). */
  amountMinor: number;
  currency: string;
  /**
   * Which way the books are off: +1 when the partner reports more money to PayLink than the ledger
   * (duplicate, unknown payment, a higher gross), −1 when less (missing, timing, a higher fee), 0 when
   * no money is at stake (an OLTP disagreement).
   */
  direction: -1 | 0 | 1;
  expected: SideAmounts | null;
  reported: (SideAmounts & { file: string; line: number }) | null;
}

export type ItemStatus = 'matched' | 'partially_matched' | 'unmatched';

export interface MatchInput {
  window: string;
  /** Ledger items booked on `window` and on the day before (the look-back for timing counterparts). */
  ledger: readonly LedgerItem[];
  /** Settlement lines from the files of `window` and of the next day (the look-ahead for timing). */
  files: readonly SettlementItem[];
  /** OLTP rows of every payment named by the ledger items and the lines. */
  oltp: readonly OltpPayment[];
}

export interface CurrencyAmounts {
  ledgerGrossMinor: number;
  fileGrossMinor: number;
  ledgerFeeMinor: number;
  fileFeeMinor: number;
  /** fileGross − ledgerGross over the window: 0 once every break is resolved. */
  clearingDifferenceMinor: number;
}

export interface MatchResult {
  window: string;
  items: { matched: number; partiallyMatched: number; unmatched: number };
  /** Lines of this window's files that settle a ledger item of the day before (a timing break's other half). */
  lateCounterparts: number;
  /** breakKey of the timing break each late counterpart resolves (the day before's run opened it). */
  lateKeys: string[];
  breaks: ReconciliationBreak[];
  breaksByType: Partial<Record<ReconciliationBreakType, number>>;
  /** Per type and currency: money at stake. */
  amountsByType: Partial<Record<ReconciliationBreakType, Record<string, number>>>;
  byCurrency: Record<string, CurrencyAmounts>;
}

const MATCH_KINDS: ReadonlySet<SettlementItemKind> = new Set([
  'settlement',
  'refund',
  'chargeback',
  'chargeback_reversal',
]);

export const dayAfter = (day: string): string =>
  new Date(Date.parse(`${day}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
export const dayBefore = (day: string): string =>
  new Date(Date.parse(`${day}T00:00:00Z`) - 86_400_000).toISOString().slice(0, 10);

const keyOf = (i: { paymentId: string; kind: string; reference: string }): string =>
  `${i.paymentId}|${i.kind}|${i.reference}`;

export function breakKeyOf(
  b: Pick<ReconciliationBreak, 'type' | 'paymentId' | 'kind' | 'reference' | 'lineReference'>,
): string {
  return createHash('sha256')
    .update([b.type, b.paymentId, b.kind, b.reference, b.lineReference ?? ''].join('|'))
    .digest('hex')
    .slice(0, 32);
}

const amounts = (i: LedgerItem): SideAmounts => ({
  date: i.bookedDate,
  currency: i.currency,
  grossMinor: i.grossMinor,
  feeMinor: i.feeMinor,
});
const reportedOf = (s: SettlementItem): SideAmounts & { file: string; line: number } => ({
  date: s.bookedDate,
  currency: s.currency,
  grossMinor: s.grossMinor,
  feeMinor: s.feeMinor,
  file: s.file,
  line: s.line,
});

export function matchWindow(input: MatchInput): MatchResult {
  const { window } = input;
  const next = dayAfter(window);
  const prev = dayBefore(window);
  const oltp = new Map(input.oltp.map((p) => [p.paymentId, p]));
  const ledgerAll = input.ledger.filter((l) => l.bookedDate === window || l.bookedDate === prev);
  const ledgerHere = ledgerAll.filter((l) => l.bookedDate === window);
  const ledgerPrev = new Map(ledgerAll.filter((l) => l.bookedDate === prev).map((l) => [keyOf(l), l]));
  const knownPayments = new Set(input.ledger.map((l) => l.paymentId));
  const lines = input.files.filter((f) => MATCH_KINDS.has(f.kind));
  const linesHere = lines.filter((f) => f.bookedDate === window);
  const linesNext = new Map(lines.filter((f) => f.bookedDate === next).map((f) => [keyOf(f), f]));

  const breaks: Omit<ReconciliationBreak, 'breakKey'>[] = [];
  const byCurrency: Record<string, CurrencyAmounts> = {};
  const cur = (c: string): CurrencyAmounts =>
    (byCurrency[c] ??= {
      ledgerGrossMinor: 0,
      fileGrossMinor: 0,
      ledgerFeeMinor: 0,
      fileFeeMinor: 0,
      clearingDifferenceMinor: 0,
    });

  // 1. Duplicate lines: the same partner line reference twice in a window's files. The first counts.
  const byKey = new Map<string, SettlementItem>();
  const seenLine = new Set<string>();
  const extra: SettlementItem[] = [];
  for (const line of linesHere) {
    const c = cur(line.currency);
    c.fileGrossMinor += line.grossMinor;
    c.fileFeeMinor += line.feeMinor;
    const lineId = `${line.provider}|${line.lineReference}`;
    if (seenLine.has(lineId)) {
      breaks.push({
        type: 'duplicate',
        provider: line.provider,
        paymentId: line.paymentId,
        merchantId: oltp.get(line.paymentId)?.merchantId ?? null,
        kind: line.kind as MatchKind,
        reference: line.reference,
        lineReference: line.lineReference,
        amountMinor: Math.abs(line.grossMinor),
        currency: line.currency,
        direction: line.grossMinor >= 0 ? 1 : -1,
        expected: null,
        reported: reportedOf(line),
      });
      continue;
    }
    seenLine.add(lineId);
    if (!byKey.has(keyOf(line))) byKey.set(keyOf(line), line);
    else extra.push(line); // another line for the same movement under another line id: unposted below
  }

  // 2. Every ledger item of the window against its line.
  let matched = 0;
  let partiallyMatched = 0;
  let unmatched = 0;
  for (const item of ledgerHere) {
    const c = cur(item.currency);
    c.ledgerGrossMinor += item.grossMinor;
    c.ledgerFeeMinor += item.feeMinor;
    const p = oltp.get(item.paymentId);
    const base = {
      provider: null,
      paymentId: item.paymentId,
      merchantId: item.merchantId,
      kind: item.kind,
      reference: item.reference,
      expected: amounts(item),
    };
    let partial = false;
    if (!p) {
      breaks.push({
        ...base,
        type: 'oltp_missing',
        lineReference: null,
        amountMinor: 0,
        currency: item.currency,
        direction: 0,
        reported: null,
      });
      partial = true;
    } else if (p.currency !== item.currency) {
      breaks.push({
        ...base,
        type: 'oltp_currency_mismatch',
        lineReference: null,
        amountMinor: 0,
        currency: item.currency,
        direction: 0,
        reported: null,
      });
      partial = true;
    }
    const line = byKey.get(keyOf(item));
    if (!line) {
      const late = linesNext.get(keyOf(item));
      const gross = Math.abs(item.grossMinor);
      breaks.push({
        ...base,
        type: late ? 'timing' : 'missing',
        provider: late?.provider ?? null,
        lineReference: late?.lineReference ?? null,
        amountMinor: gross,
        currency: item.currency,
        direction: item.grossMinor >= 0 ? -1 : 1,
        reported: late ? reportedOf(late) : null,
      });
      unmatched++;
      continue;
    }
    byKey.delete(keyOf(item));
    const withLine = {
      ...base,
      provider: line.provider,
      lineReference: line.lineReference,
      reported: reportedOf(line),
    };
    if (line.currency !== item.currency) {
      breaks.push({
        ...withLine,
        type: 'currency_mismatch',
        amountMinor: Math.abs(item.grossMinor),
        currency: item.currency,
        direction: item.grossMinor >= 0 ? -1 : 1,
      });
      partiallyMatched++;
      continue;
    }
    if (line.grossMinor !== item.grossMinor) {
      const d = line.grossMinor - item.grossMinor;
      breaks.push({
        ...withLine,
        type: 'amount_mismatch',
        amountMinor: Math.abs(d),
        currency: item.currency,
        direction: d > 0 ? 1 : -1,
      });
      partial = true;
    }
    if (line.feeMinor !== item.feeMinor) {
      const d = line.feeMinor - item.feeMinor;
      breaks.push({
        ...withLine,
        type: 'fee_mismatch',
        amountMinor: Math.abs(d),
        currency: item.currency,
        direction: d > 0 ? -1 : 1,
      });
      partial = true;
    }
    if (partial) partiallyMatched++;
    else matched++;
  }

  // 3. Lines left over: the late half of yesterday's timing break, a payment PayLink never saw, or a
  //    movement of a known payment that the ledger has not posted.
  let lateCounterparts = 0;
  const lateKeys: string[] = [];
  for (const line of [...byKey.values(), ...extra]) {
    if (ledgerPrev.has(keyOf(line))) {
      lateCounterparts++;
      lateKeys.push(
        breakKeyOf({
          type: 'timing',
          paymentId: line.paymentId,
          kind: line.kind as MatchKind,
          reference: line.reference,
          lineReference: line.lineReference,
        }),
      );
      continue;
    }
    const known = oltp.has(line.paymentId) || knownPayments.has(line.paymentId);
    breaks.push({
      type: known ? 'unposted' : 'unknown_payment',
      provider: line.provider,
      paymentId: line.paymentId,
      merchantId: oltp.get(line.paymentId)?.merchantId ?? null,
      kind: line.kind as MatchKind,
      reference: line.reference,
      lineReference: line.lineReference,
      amountMinor: Math.abs(line.grossMinor),
      currency: line.currency,
      direction: line.grossMinor >= 0 ? 1 : -1,
      expected: null,
      reported: reportedOf(line),
    });
    unmatched++;
  }
  for (const c of Object.values(byCurrency)) c.clearingDifferenceMinor = c.fileGrossMinor - c.ledgerGrossMinor;

  const keyed = breaks
    .map((b) => ({ ...b, breakKey: breakKeyOf(b) }))
    .sort((a, b) => (a.breakKey < b.breakKey ? -1 : a.breakKey > b.breakKey ? 1 : 0));
  const breaksByType: MatchResult['breaksByType'] = {};
  const amountsByType: MatchResult['amountsByType'] = {};
  for (const b of keyed) {
    breaksByType[b.type] = (breaksByType[b.type] ?? 0) + 1;
    const t = (amountsByType[b.type] ??= {});
    t[b.currency] = (t[b.currency] ?? 0) + b.amountMinor;
  }
  return {
    window,
    items: { matched, partiallyMatched, unmatched },
    lateCounterparts,
    lateKeys: lateKeys.sort(),
    breaks: keyed,
    breaksByType,
    amountsByType,
    byCurrency,
  };
}

/** A journal entry as the ledger store reads it, with its lines. */
export interface LedgerEntryRow {
  entryId: number;
  postingKey: string;
  paymentId: string;
  merchantId: string;
  factType: string;
  occurredAt: string;
  lines: readonly { account: string; side: 'debit' | 'credit'; amountMinor: number; currency: string }[];
}

const FACT_KIND: Record<string, MatchKind> = {
  settled: 'settlement',
  refunded: 'refund',
  chargeback_opened: 'chargeback',
  chargeback_won: 'chargeback_reversal',
};

/**
 * The partner-side money movement a journal entry records, or null for entries the partner never
 * reports (captures, lost chargebacks, manual entries). Reference from the posting key
 * `payment/<id>/<fact>:<reference>`; amounts from the lines (posting-rules.ts).
 */
export function ledgerItemOf(e: LedgerEntryRow): LedgerItem | null {
  const kind = FACT_KIND[e.factType];
  if (!kind) return null;
  const reference = e.postingKey.slice(e.postingKey.lastIndexOf(':') + 1);
  const sum = (account: string, side: 'debit' | 'credit'): number =>
    e.lines.filter((l) => l.account === account && l.side === side).reduce((s, l) => s + l.amountMinor, 0);
  const currency = e.lines[0]?.currency;
  if (!currency) return null;
  let grossMinor: number;
  let feeMinor = 0;
  switch (kind) {
    case 'settlement':
      grossMinor = sum('gateway_clearing', 'credit');
      feeMinor = sum('gateway_fee_expense', 'debit');
      break;
    case 'refund':
      grossMinor = -sum('refunds_payable', 'credit');
      break;
    case 'chargeback':
      grossMinor = -sum('chargebacks_disputed', 'debit');
      break;
    case 'chargeback_reversal':
      grossMinor = sum('gateway_clearing', 'debit');
      break;
  }
  return {
    paymentId: e.paymentId,
    merchantId: e.merchantId,
    kind,
    reference,
    currency,
    grossMinor,
    feeMinor,
    bookedDate: new Date(e.occurredAt).toISOString().slice(0, 10),
    entryId: e.entryId,
  };
}

import { createHash } from 'node:crypto';
import type { PaymentEvent } from '../contracts/payment-event';
import {
  type AdyenSettlementRow,
  type SettlementProvider,
  type StripePayoutRow,
  writeAdyenSettlementReport,
  writeStripePayoutReport,
} from '../contracts/settlement-files';
import type { Simulation } from './payments';
import { type Random, seededRandom } from './random';

// The simulator as PayLink's settlement partners: per UTC day, an Adyen-style Settlement details report
// (us-east payments, like the Adyen-style webhooks) and a Stripe-style itemized payout reconciliation
// (the other regions). It injects known breaks and keeps them as the ground truth reconciliation must find.

export const BREAK_TYPES = [
  'missing',
  'amount_mismatch',
  'fee_mismatch',
  'duplicate',
  'unknown_payment',
  'timing',
  'currency_mismatch',
] as const;
export type BreakType = (typeof BREAK_TYPES)[number];

/** How many breaks of each type, per provider. */
export type BreakPlan = Partial<Record<BreakType, number>>;

export interface SettlementFileOptions {
  seed: number;
  /** 'none': files agree with the simulation; 'default': one break of each type per provider. */
  breaks?: 'none' | 'default' | BreakPlan;
}

export interface SettlementFile {
  provider: SettlementProvider;
  /** The UTC day the file covers (lines booked that day), YYYY-MM-DD. */
  date: string;
  /** File name as the partner names it. */
  name: string;
  /** CSV text. */
  content: string;
  /** Data lines (header excluded). */
  lines: number;
}

/** A settlement as one side has it: PayLink's record (expected) or the file's line (reported). */
export interface SettlementAmounts {
  date: string;
  currency: string;
  grossMinor: number;
  feeMinor: number;
}

export interface InjectedBreak {
  type: BreakType;
  provider: SettlementProvider;
  paymentId: string;
  /** PayLink's settlement id within the payment (set1, set2). */
  settlementId: string;
  /** The partner's id of the line (Adyen Modification Reference / Stripe balance transaction id). */
  lineReference: string;
  /** What PayLink recorded; null when PayLink never saw the payment. */
  expected: SettlementAmounts | null;
  /** What the file says (for a duplicate: the extra line); null when the line is missing. */
  reported: (SettlementAmounts & { file: string }) | null;
  /**
   * The money the break is about, ≥ 0: the gross of a missing, duplicate, unknown-payment, timing or
   * currency-mismatch line; the difference of gross (amount mismatch) or fee (fee mismatch).
   */
  amountMinor: number;
  /** The currency of amountMinor: PayLink's, except for a payment PayLink never saw (the file's). */
  currency: string;
}

type DraftBreak = Omit<InjectedBreak, 'amountMinor' | 'currency'>;

export interface SettlementTruth {
  files: SettlementFile[];
  breaks: InjectedBreak[];
}

const DAY_MS = 86_400_000;
const OTHER_CURRENCIES = ['EUR', 'USD', 'GBP', 'JPY'] as const;

/**
 * One break of each type per provider, as many types as the provider with fewer settled payments has
 * payments for (each break takes a settled payment of its own): 'default' for a run of a few hundred
 * payments, fewer types for a small one, none when a provider settled nothing.
 */
export function breakPlanFor(sim: Pick<Simulation, 'events'>): BreakPlan {
  const settled: Record<SettlementProvider, Set<string>> = { adyen: new Set(), stripe: new Set() };
  for (const e of sim.events) if (e.type === 'settled') settled[providerOf(e)].add(e.paymentId);
  const n = Math.min(settled.adyen.size, settled.stripe.size, BREAK_TYPES.length);
  return Object.fromEntries(BREAK_TYPES.slice(0, n).map((t) => [t, 1]));
}

/** Settlements of us-east payments come from the Adyen-style partner, the others' from the Stripe-style one. */
export function providerOf(event: Pick<PaymentEvent, 'region'>): SettlementProvider {
  return event.region === 'us-east' ? 'adyen' : 'stripe';
}

type ItemKind = 'settlement' | 'refund' | 'chargeback' | 'chargeback_reversal';

/** One money movement a partner reports, before it is formatted. */
interface Item {
  provider: SettlementProvider;
  kind: ItemKind;
  paymentId: string;
  /** settlementId / refundId / chargebackId. */
  reference: string;
  /** The fact's idempotency key: partner ids derive from it, so a duplicate line repeats them. */
  factKey: string;
  captureId: string;
  currency: string;
  amountMinor: number;
  feeMinor: number;
  atMs: number;
}

export function simulateSettlementFiles(sim: Simulation, options: SettlementFileOptions): SettlementTruth {
  const rnd = seededRandom(options.seed ^ 0x5e771e);
  const items = itemsOf(sim.events);
  const plan: BreakPlan =
    options.breaks === undefined || options.breaks === 'none'
      ? {}
      : options.breaks === 'default'
        ? Object.fromEntries(BREAK_TYPES.map((t) => [t, 1]))
        : options.breaks;
  const drafts: DraftBreak[] = [];
  const out: Item[] = [...items];
  for (const provider of ['adyen', 'stripe'] as const) {
    drafts.push(...injectBreaks(out, provider, plan, rnd, runIdOf(sim)));
  }
  const breaks = drafts.map((b) => ({
    ...b,
    // The file each reported line landed in.
    reported: b.reported && { ...b.reported, file: fileNameFor(b.provider, b.reported.date) },
    ...atStake(b),
  }));
  return { files: formatFiles(out), breaks };
}

function atStake(b: DraftBreak): Pick<InjectedBreak, 'amountMinor' | 'currency'> {
  const { expected, reported } = b;
  switch (b.type) {
    case 'missing':
    case 'timing':
    case 'currency_mismatch':
      return { amountMinor: expected!.grossMinor, currency: expected!.currency };
    case 'duplicate':
    case 'unknown_payment':
      return { amountMinor: reported!.grossMinor, currency: reported!.currency };
    case 'amount_mismatch':
      return { amountMinor: Math.abs(reported!.grossMinor - expected!.grossMinor), currency: expected!.currency };
    case 'fee_mismatch':
      return { amountMinor: Math.abs(reported!.feeMinor - expected!.feeMinor), currency: expected!.currency };
  }
}

function itemsOf(events: readonly PaymentEvent[]): Item[] {
  const items: Item[] = [];
  const disputed = new Map<string, number>();
  for (const e of events)
    if (e.type === 'chargeback_opened') disputed.set(`${e.paymentId}/${e.chargebackId}`, e.amountMinor);
  for (const e of events) {
    const base = {
      provider: providerOf(e),
      paymentId: e.paymentId,
      factKey: e.idempotencyKey,
      currency: e.currency,
      atMs: Date.parse(e.occurredAt),
      feeMinor: 0,
    };
    switch (e.type) {
      case 'settled':
        items.push({
          ...base,
          kind: 'settlement',
          reference: e.settlementId,
          captureId: e.captureId,
          amountMinor: e.amountMinor,
          feeMinor: e.feeMinor,
        });
        break;
      case 'refunded':
        items.push({ ...base, kind: 'refund', reference: e.refundId, captureId: 'cap1', amountMinor: e.amountMinor });
        break;
      case 'chargeback_opened':
        items.push({
          ...base,
          kind: 'chargeback',
          reference: e.chargebackId,
          captureId: 'cap1',
          amountMinor: e.amountMinor,
        });
        break;
      case 'chargeback_won':
        items.push({
          ...base,
          kind: 'chargeback_reversal',
          reference: e.chargebackId,
          captureId: 'cap1',
          amountMinor: disputed.get(`${e.paymentId}/${e.chargebackId}`) ?? 0,
        });
        break;
      default:
        break; // no money moves at the partner (a lost chargeback stays withheld)
    }
  }
  return items.filter((i) => i.amountMinor > 0);
}

/** The run prefix of the simulation's payment ids (`<runId>-p000001`), for a payment PayLink never saw. */
function runIdOf(sim: Simulation): string {
  const first = sim.events[0]?.paymentId ?? 'sim-p000000';
  return first.replace(/-p\d+$/, '');
}

const dateOf = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

function amountsOf(item: Item): SettlementAmounts {
  return { date: dateOf(item.atMs), currency: item.currency, grossMinor: item.amountMinor, feeMinor: item.feeMinor };
}

/** Mutates `items` (the file's lines) and answers the breaks it made, each on a distinct payment. */
function injectBreaks(
  items: Item[],
  provider: SettlementProvider,
  plan: BreakPlan,
  rnd: Random,
  runId: string,
): DraftBreak[] {
  const wanted = BREAK_TYPES.flatMap((t) => Array.from({ length: plan[t] ?? 0 }, () => t));
  if (wanted.length === 0) return [];
  const candidates = items.filter((i) => i.provider === provider && i.kind === 'settlement');
  const byPayment = new Map<string, Item>();
  for (const c of candidates) if (!byPayment.has(c.paymentId)) byPayment.set(c.paymentId, c);
  const pool = [...byPayment.values()];
  if (pool.length < wanted.length) {
    throw new RangeError(
      `${provider}: ${wanted.length} breaks need as many settled payments, the simulation has ${pool.length}; simulate more payments`,
    );
  }
  const out: DraftBreak[] = [];
  let ghosts = 0;
  for (const type of wanted) {
    const target = pool.splice(rnd.int(0, pool.length - 1), 1)[0]!;
    const expected = amountsOf(target);
    const b: DraftBreak = {
      type,
      provider,
      paymentId: target.paymentId,
      settlementId: target.reference,
      lineReference: lineReferenceOf(target),
      expected,
      reported: null,
    };
    switch (type) {
      case 'missing':
        items.splice(items.indexOf(target), 1);
        break;
      case 'amount_mismatch': {
        const delta = rnd.int(1, Math.max(1, Math.floor(target.amountMinor / 20)));
        target.amountMinor += target.amountMinor - delta > target.feeMinor && rnd.chance(0.5) ? -delta : delta;
        break;
      }
      case 'fee_mismatch': {
        const delta = rnd.int(1, Math.max(1, Math.floor(target.amountMinor / 100)));
        target.feeMinor =
          target.feeMinor < target.amountMinor
            ? Math.min(target.amountMinor, target.feeMinor + delta)
            : target.feeMinor - 1;
        break;
      }
      case 'duplicate': {
        const copy = { ...target };
        items.splice(items.indexOf(target) + 1, 0, copy);
        break;
      }
      case 'unknown_payment': {
        // A settlement for a payment PayLink never saw, in the same file as the target's.
        const paymentId = `${runId}-unknown${String(ghosts++).padStart(3, '0')}-${provider}`;
        const ghost: Item = {
          ...target,
          paymentId,
          reference: 'set1',
          factKey: `${paymentId}:settled`,
          amountMinor: rnd.int(500, 250_000),
          atMs: target.atMs + rnd.int(1, 1000),
        };
        ghost.feeMinor = Math.floor((ghost.amountMinor * rnd.int(10, 290)) / 10_000);
        items.splice(items.indexOf(target) + 1, 0, ghost);
        b.paymentId = ghost.paymentId;
        b.settlementId = ghost.reference;
        b.lineReference = lineReferenceOf(ghost);
        b.expected = null;
        b.reported = { ...amountsOf(ghost), file: '' };
        out.push(b);
        pool.push(target); // the target itself is untouched and may carry another break
        continue;
      }
      case 'timing': {
        // Booked just after midnight: in the next day's file.
        const nextDay = Math.floor(target.atMs / DAY_MS) * DAY_MS + DAY_MS;
        target.atMs = nextDay + rnd.int(0, 3_600_000);
        break;
      }
      case 'currency_mismatch':
        target.currency = rnd.pick(OTHER_CURRENCIES.filter((c) => c !== target.currency));
        break;
    }
    if (type !== 'missing') b.reported = { ...amountsOf(target), file: '' };
    out.push(b);
  }
  return out;
}

// Adyen's PSP and modification references are 16 uppercase alphanumerics (e.g. "QFQTPCQ8HXSKGK82"). A
// letter first: an all-digit reference is Luhn-valid one time in ten, and the PII scan rightly flags it.
const PSP_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const psp16 = (s: string): string => {
  const h = createHash('sha256').update(s).digest();
  const chars = [...h.subarray(0, 16)].map((b, i) => (i === 0 ? PSP_ALPHABET[b % 24] : PSP_ALPHABET[b % 32]));
  return chars.join('');
};
const hex24 = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 24);

function lineReferenceOf(item: Item): string {
  return item.provider === 'adyen' ? psp16(item.factKey) : `txn_${hex24(item.factKey)}`;
}

const timestamp = (ms: number): string => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');

/** Adyen names a report by its batch; here a batch is a UTC day (days since 1970). */
const batchOf = (date: string): number => Date.parse(`${date}T00:00:00Z`) / DAY_MS;

export function fileNameFor(provider: SettlementProvider, date: string): string {
  return provider === 'adyen'
    ? `settlement_detail_report_batch_${batchOf(date)}.csv`
    : `payout_reconciliation_itemized_${date}.csv`;
}

function formatFiles(items: readonly Item[]): SettlementFile[] {
  const groups = new Map<string, Item[]>();
  for (const item of items) {
    const key = `${item.provider}|${dateOf(item.atMs)}`;
    const g = groups.get(key) ?? [];
    g.push(item);
    groups.set(key, g);
  }
  const files: SettlementFile[] = [];
  for (const key of [...groups.keys()].sort()) {
    const [provider, date] = key.split('|') as [SettlementProvider, string];
    // Stable sort: a duplicate stays next to its original.
    const lines = groups.get(key)!.sort((a, b) => a.atMs - b.atMs);
    const rows = provider === 'adyen' ? adyenRows(lines, date) : stripeRows(lines, date);
    const content =
      provider === 'adyen'
        ? writeAdyenSettlementReport(rows as AdyenSettlementRow[])
        : writeStripePayoutReport(rows as StripePayoutRow[]);
    const count = rows.length;
    files.push({ provider, date, name: fileNameFor(provider, date), content, lines: count });
  }
  return files;
}

const METHODS = [
  ['visa', 'visaclassic'],
  ['mc', 'mccredit'],
  ['amex', 'amex'],
] as const;

function adyenRows(items: readonly Item[], date: string): AdyenSettlementRow[] {
  const batch = batchOf(date);
  const rows: AdyenSettlementRow[] = [];
  const payout = new Map<string, number>();
  for (const item of items) {
    const [method, variant] = METHODS[parseInt(hex24(item.paymentId).slice(0, 4), 16) % METHODS.length]!;
    const credit = item.kind === 'settlement' || item.kind === 'chargeback_reversal';
    // Interchange++: the partner's fee split into interchange, scheme fees and its markup, summing exactly.
    const interchange = Math.floor((item.feeMinor * 6) / 10);
    const scheme = Math.floor(item.feeMinor / 10);
    const markup = item.feeMinor - interchange - scheme;
    const net = credit ? item.amountMinor - item.feeMinor : item.amountMinor + item.feeMinor;
    payout.set(item.currency, (payout.get(item.currency) ?? 0) + (credit ? net : -net));
    rows.push({
      companyAccount: 'PayLink',
      merchantAccount: 'PayLinkUS',
      pspReference: psp16(item.paymentId),
      merchantReference: item.paymentId,
      paymentMethod: method,
      creationDate: timestamp(item.atMs),
      timeZone: 'UTC',
      type: (
        {
          settlement: 'Settled',
          refund: 'Refunded',
          chargeback: 'Chargeback',
          chargeback_reversal: 'ChargebackReversed',
        } as const
      )[item.kind],
      modificationReference: lineReferenceOf(item),
      grossCurrency: item.currency,
      grossDebitMinor: credit ? null : item.amountMinor,
      grossCreditMinor: credit ? item.amountMinor : null,
      exchangeRate: '1',
      netCurrency: item.currency,
      netDebitMinor: credit ? null : net,
      netCreditMinor: credit ? net : null,
      commissionMinor: null,
      markupMinor: item.feeMinor > 0 ? markup : null,
      schemeFeesMinor: item.feeMinor > 0 ? scheme : null,
      interchangeMinor: item.feeMinor > 0 ? interchange : null,
      paymentMethodVariant: variant,
      modificationMerchantReference: item.reference,
      batchNumber: batch,
      reserved: ['', '', '', '', '', '', ''],
    });
  }
  // The batch closes with one payout per currency (a negative balance is carried, not paid out).
  for (const [currency, net] of [...payout].sort(([a], [b]) => a.localeCompare(b))) {
    if (net <= 0) continue;
    rows.push({
      companyAccount: 'PayLink',
      merchantAccount: 'PayLinkUS',
      pspReference: '',
      merchantReference: '',
      paymentMethod: '',
      creationDate: `${date} 23:59:59`,
      timeZone: 'UTC',
      type: 'MerchantPayout',
      modificationReference: `TX${batch}${currency}XT`,
      grossCurrency: '',
      grossDebitMinor: null,
      grossCreditMinor: null,
      exchangeRate: '',
      netCurrency: currency,
      netDebitMinor: net,
      netCreditMinor: null,
      commissionMinor: null,
      markupMinor: null,
      schemeFeesMinor: null,
      interchangeMinor: null,
      paymentMethodVariant: '',
      modificationMerchantReference: '',
      batchNumber: batch,
      reserved: ['', '', '', '', '', '', ''],
    });
  }
  return rows;
}

function stripeRows(items: readonly Item[], date: string): StripePayoutRow[] {
  const payoutDay = Date.parse(`${date}T00:00:00Z`) + 2 * DAY_MS; // T+2 payout schedule
  return items.map((item) => {
    const sign = item.kind === 'settlement' || item.kind === 'chargeback_reversal' ? 1 : -1;
    const gross = sign * item.amountMinor;
    const chargeId = `ch_${hex24(`${item.paymentId}/${item.captureId}`)}`;
    const category = (
      {
        settlement: 'charge',
        refund: 'refund',
        chargeback: 'dispute',
        chargeback_reversal: 'dispute_reversal',
      } as const
    )[item.kind];
    return {
      automaticPayoutId: `po_${hex24(`${date}/${item.currency}`)}`,
      automaticPayoutEffectiveAt: timestamp(payoutDay),
      balanceTransactionId: lineReferenceOf(item),
      createdUtc: timestamp(item.atMs),
      availableOnUtc: timestamp(payoutDay),
      currency: item.currency,
      grossMinor: gross,
      feeMinor: item.feeMinor,
      netMinor: gross - item.feeMinor,
      reportingCategory: category,
      sourceId:
        item.kind === 'settlement' ? chargeId : `${item.kind === 'refund' ? 're' : 'du'}_${hex24(item.factKey)}`,
      description: `PayLink ${item.paymentId} ${item.reference}`,
      chargeId,
      paymentIntentId: `pi_${hex24(item.paymentId)}`,
      paylinkPaymentId: item.paymentId,
      paylinkReference: item.reference,
    };
  });
}

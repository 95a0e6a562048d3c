import type { PaymentEvent } from '../contracts/payment-event';
import { channelOf } from './channels';
import { simulatedCardholder } from './gateway-feed';

/** The windowed views whose counts the truth covers exactly (what the demo and the tests compare). */
export const COUNTED_VIEWS = [
  'velocity-card',
  'velocity-merchant',
  'velocity-bin',
  'decline-rate',
  'region-rate',
  'merchant-ratios',
];

// What the fraud views must count for a simulation, restated from the simulator's side: every unique
// fact once, whatever the duplicates and the order. Card tokens are the vault's secret, so the per-card
// view is compared as the multiset of its rows' counters; every other view row by row.

const WINDOW_MS = { '1m': 60_000, '5m': 300_000, '1h': 3_600_000 } as const;

export interface TruthCounters {
  attempts: number;
  authorized: number;
  declined: number;
  small_attempts: number;
  small_declined: number;
  distinct_members: number;
  events: number;
  captures: number;
  refunds: number;
  chargebacks: number;
}

/** A store row as the comparison needs it (src/stores/risk.ts readWindowCounts). */
export interface CountedRow extends TruthCounters {
  view: string;
  key: string;
  size: string;
  windowStart: string;
}

export interface FraudTruth {
  /** `<view>|<size>|<windowStart ISO>|<key JSON>` → counters, for every view but velocity-card. */
  rows: Map<string, TruthCounters>;
  /** velocity-card rows without their key, sorted: `<size>|<start>|attempts|authorized|declined|distinct`. */
  cardRows: string[];
  /** Unique events the views count: attempts, other gateway events, ratio facts. */
  counted: number;
}

const zero = (): TruthCounters => ({
  attempts: 0,
  authorized: 0,
  declined: 0,
  small_attempts: 0,
  small_declined: 0,
  distinct_members: 0,
  events: 0,
  captures: 0,
  refunds: 0,
  chargebacks: 0,
});

const keyJson = (fields: Record<string, string>): string =>
  JSON.stringify(Object.fromEntries(Object.entries(fields).sort(([a], [b]) => (a < b ? -1 : 1))));

export function fraudTruth(events: readonly PaymentEvent[], smallAmountMinor: number): FraudTruth {
  const rows = new Map<string, TruthCounters>();
  const members = new Map<string, Set<string>>();
  const seen = new Set<string>();
  let counted = 0;
  const bump = (
    view: string,
    size: string,
    start: number,
    fields: Record<string, string>,
    add: Partial<TruthCounters>,
  ) => {
    const id = `${view}|${size}|${new Date(start).toISOString()}|${keyJson(fields)}`;
    const row = rows.get(id) ?? zero();
    rows.set(id, row);
    for (const [c, n] of Object.entries(add) as [keyof TruthCounters, number][]) row[c] += n;
    return id;
  };
  for (const e of events) {
    if (seen.has(e.idempotencyKey)) continue;
    seen.add(e.idempotencyKey);
    const t = Date.parse(e.occurredAt);
    if (e.type === 'captured' || e.type === 'refunded' || e.type === 'chargeback_opened') {
      const d = new Date(t);
      const month = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
      const add = e.type === 'captured' ? { captures: 1 } : e.type === 'refunded' ? { refunds: 1 } : { chargebacks: 1 };
      bump('merchant-ratios', 'mtd', month, { merchantId: e.merchantId }, add);
      counted += 1;
    }
    if (channelOf(e) !== 'gateway') continue;
    if (e.type !== 'captured') counted += 1; // a capture was counted above already (one event, two views)
    for (const [size, ms] of Object.entries(WINDOW_MS)) {
      bump('region-rate', size, Math.floor(t / ms) * ms, { region: e.region }, { events: 1 });
    }
    if (e.type !== 'authorized' && e.type !== 'failed') continue;
    const declined = e.type === 'failed' ? 1 : 0;
    // A refusal is reported with amount 0 by the gateways.
    const amount = e.type === 'authorized' ? e.amountMinor : 0;
    const small = amount <= smallAmountMinor ? 1 : 0;
    const add = {
      attempts: 1,
      authorized: 1 - declined,
      declined,
      small_attempts: small,
      small_declined: small * declined,
    };
    const pan = simulatedCardholder(e.paymentId).card.number;
    for (const [size, ms] of Object.entries(WINDOW_MS)) {
      const start = Math.floor(t / ms) * ms;
      bump('velocity-card', size, start, { cardToken: pan }, add);
      const merchantRow = bump('velocity-merchant', size, start, { merchantId: e.merchantId }, add);
      bump('velocity-bin', size, start, { bin: pan.slice(0, 6) }, add);
      bump('decline-rate', size, start, { gateway: `gw-${e.region}`, region: e.region }, add);
      const cardRow = `velocity-card|${size}|${new Date(start).toISOString()}|${keyJson({ cardToken: pan })}`;
      for (const [row, member] of [
        [merchantRow, pan],
        [cardRow, e.merchantId],
      ] as const) {
        const set = members.get(row) ?? new Set<string>();
        members.set(row, set);
        set.add(member);
      }
    }
  }
  for (const [row, set] of members) rows.get(row)!.distinct_members = set.size;
  const cardRows: string[] = [];
  for (const [id, c] of rows) {
    if (!id.startsWith('velocity-card|')) continue;
    const [, size, start] = id.split('|');
    cardRows.push(cardRowSignature(size!, start!, c));
    rows.delete(id);
  }
  return { rows, cardRows: cardRows.sort(), counted };
}

const cardRowSignature = (size: string, start: string, c: TruthCounters): string =>
  `${size}|${start}|${c.attempts}|${c.authorized}|${c.declined}|${c.distinct_members}`;

/** Differences between the store's rows and the truth (empty = the views match exactly); at most `limit`. */
export function compareWithTruth(truth: FraudTruth, stored: readonly CountedRow[], limit = 20): string[] {
  const fields = Object.keys(zero()) as (keyof TruthCounters)[];
  // Facts from Adyen-style webhooks carry the time PayLink received them as their event time (the edge's
  // mapping), which the simulator cannot know: month-to-date ratios are compared per merchant over all months.
  const merge = (into: Map<string, TruthCounters>, id: string, c: TruthCounters): void => {
    const [view, size, , ...key] = id.split('|');
    const at = view === 'merchant-ratios' ? `${view}|${size}|all months|${key.join('|')}` : id;
    const sum = into.get(at) ?? zero();
    into.set(at, sum);
    for (const f of fields) sum[f] += c[f];
  };
  const want = new Map<string, TruthCounters>();
  for (const [id, c] of truth.rows) merge(want, id, c);
  const got = new Map<string, TruthCounters>();
  const storedCards: string[] = [];
  for (const r of stored) {
    if (r.view === 'velocity-card') storedCards.push(cardRowSignature(r.size, r.windowStart, r));
    else merge(got, `${r.view}|${r.size}|${r.windowStart}|${r.key}`, r);
  }
  const problems: string[] = [];
  for (const [id, w] of want) {
    const g = got.get(id);
    if (!g) problems.push(`missing row ${id}`);
    else {
      const diff = fields.filter((f) => g[f] !== w[f]).map((f) => `${f} ${g[f]}≠${w[f]}`);
      if (diff.length > 0) problems.push(`${id}: ${diff.join(', ')}`);
    }
    got.delete(id);
  }
  for (const id of got.keys()) problems.push(`unexpected row ${id}`);
  storedCards.sort();
  if (storedCards.join('\n') !== truth.cardRows.join('\n')) {
    problems.push(`velocity-card rows differ: ${storedCards.length} stored, ${truth.cardRows.length} expected`);
  }
  return problems.slice(0, limit);
}

import type { WindowSize } from './snapshot';

// The pure core of the fraud views: event-time windows, lateness, and what one flush of events adds to
// the counters. No I/O here: the consumer parses, this module aggregates, the risk store applies.

export const WINDOW_MS = { '1m': 60_000, '5m': 300_000, '1h': 3_600_000 } as const;
export type TumblingSize = keyof typeof WINDOW_MS;
export const TUMBLING_SIZES: readonly TumblingSize[] = ['1m', '5m', '1h'];

export interface Window {
  size: WindowSize;
  start: number;
  end: number;
}

/** The tumbling window of `size` holding event time `t` (ms): [start, end). */
export function windowOf(size: TumblingSize, t: number): Window {
  const ms = WINDOW_MS[size];
  const start = Math.floor(t / ms) * ms;
  return { size, start, end: start + ms };
}

/** The calendar month (UTC) holding `t`: month-to-date ratios. */
export function monthOf(t: number): Window {
  const d = new Date(t);
  const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const end = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  return { size: 'mtd', start, end };
}

/**
 * Late = the event's smallest (1-minute) window had closed when it arrived: its end plus the grace period
 * is at or before the watermark. A late event still updates its old window; it is only counted as late.
 */
export function isLate(eventTime: number, watermark: number | undefined, graceMs: number): boolean {
  return watermark !== undefined && windowOf('1m', eventTime).end + graceMs <= watermark;
}

/** Whether a window is still open at watermark `asOf` (its end plus grace is after it). */
export function windowOpen(windowEnd: number, asOf: number | undefined, graceMs: number): boolean {
  return asOf === undefined || windowEnd + graceMs > asOf;
}

/**
 * Per-partition watermarks: the newest event time seen in each input partition. A view's as-of is the
 * minimum over its partitions (a partition that never had an event does not hold it back).
 */
export class Watermarks {
  private readonly byPartition = new Map<string, number>();

  static id(topic: string, partition: number): string {
    return `${topic}[${partition}]`;
  }

  observe(topic: string, partition: number, eventTime: number): void {
    const id = Watermarks.id(topic, partition);
    const seen = this.byPartition.get(id);
    if (seen === undefined || eventTime > seen) this.byPartition.set(id, eventTime);
  }

  /** Minimum over the partitions of `topics` (all when omitted); undefined before any event. */
  min(topics?: ReadonlySet<string>): number | undefined {
    let min: number | undefined;
    for (const [id, t] of this.byPartition) {
      if (topics && !topics.has(id.slice(0, id.lastIndexOf('[')))) continue;
      if (min === undefined || t < min) min = t;
    }
    return min;
  }

  of(topic: string, partition: number): number | undefined {
    return this.byPartition.get(Watermarks.id(topic, partition));
  }
}

// ---- What the consumer reads --------------------------------------------------------------------

interface Observed {
  /** De-duplication identity: the source's idempotency key, prefixed by the stream. */
  id: string;
  /** Event time (ms). */
  eventTime: number;
  /** When PayLink's edge received it (ms), for freshness. */
  receivedAt: number;
  topic: string;
  partition: number;
  offset: string;
  /** Decided when read: the 1-minute window had closed (watermark − grace). */
  late: boolean;
}

/** An authorization attempt as a regional gateway reported it (tokenized). */
export interface Attempt extends Observed {
  kind: 'attempt';
  merchantId: string;
  cardToken: string;
  bin: string;
  lastFour: string;
  region: string;
  gateway: string;
  amountMinor: number;
  currency: string;
  outcome: 'authorized' | 'declined';
  declineCode: string | null;
}

/** Any other gateway event (capture, cancellation): counts towards events/s per region. */
export interface GatewayActivity extends Observed {
  kind: 'gateway-event';
  region: string;
  gateway: string;
}

/** A payment fact that feeds the month-to-date ratios. */
export interface RatioFact extends Observed {
  kind: 'fact';
  merchantId: string;
  type: 'captured' | 'refunded' | 'chargeback_opened';
}

export type Observation = Attempt | GatewayActivity | RatioFact;

// ---- What one flush adds ------------------------------------------------------------------------

export const VIEW_NAMES = {
  velocityCard: 'velocity-card',
  velocityMerchant: 'velocity-merchant',
  velocityBin: 'velocity-bin',
  declineRate: 'decline-rate',
  regionRate: 'region-rate',
  merchantRatios: 'merchant-ratios',
} as const;
export type CountedView = (typeof VIEW_NAMES)[keyof typeof VIEW_NAMES];

export const COUNTERS = [
  'attempts',
  'authorized',
  'declined',
  'small_attempts',
  'small_declined',
  'distinct_members',
  'events',
  'captures',
  'refunds',
  'chargebacks',
] as const;
export type Counter = (typeof COUNTERS)[number];
export type Counters = Record<Counter, number>;

export interface CountRow {
  view: CountedView;
  /** JSON of the grouping key, keys sorted (the store's key column). */
  key: string;
  window: Window;
  counts: Counters;
  /** Newest event time that touched the row (an alert's event time). */
  lastEventTime: number;
}

/** A member of a window's distinct set (card token of a merchant, merchant of a card token). */
export interface MemberRow {
  view: CountedView;
  key: string;
  window: Window;
  member: string;
}

export interface AmountSample {
  merchantId: string;
  currency: string;
  month: number;
  amountMinor: number;
  eventTime: number;
  id: string;
}

export interface NewCard {
  merchantId: string;
  cardToken: string;
  bin: string;
  lastFour: string;
  firstSeen: number;
}

export interface FlushDelta {
  counts: CountRow[];
  members: MemberRow[];
  amounts: AmountSample[];
  cards: NewCard[];
}

/** The grouping key as the store keeps it: JSON with sorted keys. */
export function keyOf(fields: Record<string, string>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(fields).sort(([a], [b]) => (a < b ? -1 : 1))));
}

const zero = (): Counters => Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Counters;

/** Aggregates events already known to be new (de-duplicated) into counter rows, members and samples. */
export function aggregate(events: readonly Observation[], smallAmountMinor: number): FlushDelta {
  const rows = new Map<string, CountRow>();
  const members = new Map<string, MemberRow>();
  const amounts: AmountSample[] = [];
  const cards = new Map<string, NewCard>();
  // Grouping keys arrive as their JSON, made once per event (keyOf sorts and serializes: the hot path).
  const bump = (view: CountedView, key: string, window: Window, t: number, add: Partial<Counters>) => {
    const id = `${view}|${window.size}|${window.start}|${key}`;
    let row = rows.get(id);
    if (!row) rows.set(id, (row = { view, key, window, counts: zero(), lastEventTime: t }));
    for (const [c, n] of Object.entries(add) as [Counter, number][]) row.counts[c] += n;
    if (t > row.lastEventTime) row.lastEventTime = t;
  };
  const member = (view: CountedView, key: string, window: Window, m: string) => {
    members.set(`${view}|${window.size}|${window.start}|${key}|${m}`, { view, key, window, member: m });
  };
  for (const e of events) {
    const t = e.eventTime;
    if (e.kind === 'fact') {
      const add: Partial<Counters> =
        e.type === 'captured' ? { captures: 1 } : e.type === 'refunded' ? { refunds: 1 } : { chargebacks: 1 };
      bump(VIEW_NAMES.merchantRatios, keyOf({ merchantId: e.merchantId }), monthOf(t), t, add);
      continue;
    }
    const regionKey = keyOf({ region: e.region });
    for (const size of TUMBLING_SIZES) {
      bump(VIEW_NAMES.regionRate, regionKey, windowOf(size, t), t, { events: 1 });
    }
    if (e.kind !== 'attempt') continue;
    const declined = e.outcome === 'declined' ? 1 : 0;
    const small = e.amountMinor <= smallAmountMinor ? 1 : 0;
    const add: Partial<Counters> = {
      attempts: 1,
      authorized: 1 - declined,
      declined,
      small_attempts: small,
      small_declined: small * declined,
    };
    const cardKey = keyOf({ cardToken: e.cardToken });
    const merchantKey = keyOf({ merchantId: e.merchantId });
    const binKey = keyOf({ bin: e.bin });
    const gatewayKey = keyOf({ gateway: e.gateway, region: e.region });
    for (const size of TUMBLING_SIZES) {
      const w = windowOf(size, t);
      bump(VIEW_NAMES.velocityCard, cardKey, w, t, add);
      bump(VIEW_NAMES.velocityMerchant, merchantKey, w, t, add);
      bump(VIEW_NAMES.velocityBin, binKey, w, t, add);
      bump(VIEW_NAMES.declineRate, gatewayKey, w, t, add);
      member(VIEW_NAMES.velocityCard, cardKey, w, e.merchantId);
      member(VIEW_NAMES.velocityMerchant, merchantKey, w, e.cardToken);
    }
    // The amount a refusal was for is not reported by the gateways (0): only authorized amounts feed the stats.
    if (e.outcome === 'authorized') {
      amounts.push({
        merchantId: e.merchantId,
        currency: e.currency,
        month: monthOf(t).start,
        amountMinor: e.amountMinor,
        eventTime: t,
        id: e.id,
      });
    }
    const firstSeenKey = `${e.merchantId}|${e.cardToken}`;
    const seen = cards.get(firstSeenKey);
    if (!seen || t < seen.firstSeen) {
      cards.set(firstSeenKey, {
        merchantId: e.merchantId,
        cardToken: e.cardToken,
        bin: e.bin,
        lastFour: e.lastFour,
        firstSeen: t,
      });
    }
  }
  return { counts: [...rows.values()], members: [...members.values()], amounts, cards: [...cards.values()] };
}

/** Running amount statistics: count, mean and population standard deviation (minor units). */
export interface AmountStats {
  n: number;
  mean: number;
  sigma: number;
}

const round4 = (x: number): number => Math.round(x * 10_000) / 10_000;

/**
 * One more sample (Welford's update, from the stored mean and σ). Mean and σ come back rounded to four
 * decimals, as the store keeps them: no long digit runs in the store (the PII scan reads every column).
 */
export function addSample(stats: AmountStats, x: number): AmountStats {
  const n = stats.n + 1;
  const m2 = stats.sigma * stats.sigma * stats.n;
  const delta = x - stats.mean;
  const mean = stats.mean + delta / n;
  const m2After = m2 + delta * (x - mean);
  return { n, mean: round4(mean), sigma: round4(Math.sqrt(Math.max(0, m2After) / n)) };
}

/** Freshness histogram bucket: `ms` rounded up to two significant digits (at most ~10% high). */
export function freshnessBucket(ms: number): number {
  if (ms <= 0) return 0;
  const v = Math.ceil(ms);
  if (v < 100) return v;
  const scale = 10 ** (Math.floor(Math.log10(v)) - 1);
  return Math.ceil(v / scale) * scale;
}

/** The p-th percentile (0–100) of a bucket → count histogram: the bucket holding that rank. */
export function percentileOf(histogram: ReadonlyMap<number, number>, p: number): number | null {
  const buckets = [...histogram].filter(([, n]) => n > 0).sort(([a], [b]) => a - b);
  const total = buckets.reduce((s, [, n]) => s + n, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let seen = 0;
  for (const [bucket, n] of buckets) {
    seen += n;
    if (seen >= rank) return bucket;
  }
  return buckets[buckets.length - 1]![0];
}

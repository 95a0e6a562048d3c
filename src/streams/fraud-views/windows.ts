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
  /** view|size|window start|key: unique in a flush, and the order rows are written in (locks in one order). */
  id: string;
  view: CountedView;
  /** JSON of the grouping key, keys sorted (the store's key column). */
  key: string;
  window: Window;
  counts: Counters;
  /** Newest event time that touched the row (an alert's event time). */
  lastEventTime: number;
}

/**
 * A member of the distinct sets of one hour (card token of a merchant, merchant of a card token): one row
 * per member and hour, with the minutes and five-minute windows of that hour it was seen in as bit masks.
 * Three windows' sets in one row: what keeps distinct counts exact under redelivery at a third of the rows.
 */
export interface MemberRow {
  /** view|hour start|key|member: unique in a flush, and the order rows are written in. */
  id: string;
  view: CountedView;
  key: string;
  hourStart: number;
  member: string;
  /** Bit i: seen in minute i of the hour (0–29). */
  minutesLow: number;
  /** Bit i: seen in minute 30 + i of the hour (30–59). */
  minutesHigh: number;
  /** Bit i: seen in the hour's five-minute window i (0–11). */
  fives: number;
}

/** The 1-minute, 5-minute and 1-hour windows a member row says its member was seen in. */
export function memberWindows(m: MemberRow): Window[] {
  const out: Window[] = [];
  for (let i = 0; i < 60; i++) {
    if ((i < 30 ? m.minutesLow >> i : m.minutesHigh >> (i - 30)) & 1)
      out.push(windowOf('1m', m.hourStart + i * 60_000));
  }
  for (let i = 0; i < 12; i++) if ((m.fives >> i) & 1) out.push(windowOf('5m', m.hourStart + i * 300_000));
  out.push(windowOf('1h', m.hourStart));
  return out;
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

const zero = (): Counters => ({
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

/** Aggregates events already known to be new (de-duplicated) into counter rows, members and samples. */
export function aggregate(events: readonly Observation[], smallAmountMinor: number): FlushDelta {
  const rows = new Map<string, CountRow>();
  const members = new Map<string, MemberRow>();
  const amounts: AmountSample[] = [];
  const cards = new Map<string, NewCard>();
  // The hot path (every event touches about twenty rows): keys are JSON made once per event with their fields
  // written in sorted order (as keyOf would), rows are found by one string id, counters added field by field.
  const row = (view: CountedView, key: string, window: Window, t: number): Counters => {
    const id = `${view}|${window.size}|${window.start}|${key}`;
    let r = rows.get(id);
    if (!r) rows.set(id, (r = { id, view, key, window, counts: zero(), lastEventTime: t }));
    else if (t > r.lastEventTime) r.lastEventTime = t;
    return r.counts;
  };
  const member = (view: CountedView, key: string, hourStart: number, minute: number, m: string) => {
    const id = `${view}|${hourStart}|${key}|${m}`;
    let r = members.get(id);
    if (!r) members.set(id, (r = { id, view, key, hourStart, member: m, minutesLow: 0, minutesHigh: 0, fives: 0 }));
    if (minute < 30) r.minutesLow |= 1 << minute;
    else r.minutesHigh |= 1 << (minute - 30);
    r.fives |= 1 << Math.floor(minute / 5);
  };
  for (const e of events) {
    const t = e.eventTime;
    if (e.kind === 'fact') {
      const c = row(VIEW_NAMES.merchantRatios, JSON.stringify({ merchantId: e.merchantId }), monthOf(t), t);
      if (e.type === 'captured') c.captures += 1;
      else if (e.type === 'refunded') c.refunds += 1;
      else c.chargebacks += 1;
      continue;
    }
    const windows = TUMBLING_SIZES.map((size) => windowOf(size, t));
    const regionKey = JSON.stringify({ region: e.region });
    for (const w of windows) row(VIEW_NAMES.regionRate, regionKey, w, t).events += 1;
    if (e.kind !== 'attempt') continue;
    const declined = e.outcome === 'declined' ? 1 : 0;
    const small = e.amountMinor <= smallAmountMinor ? 1 : 0;
    const cardKey = JSON.stringify({ cardToken: e.cardToken });
    const merchantKey = JSON.stringify({ merchantId: e.merchantId });
    const binKey = JSON.stringify({ bin: e.bin });
    const gatewayKey = JSON.stringify({ gateway: e.gateway, region: e.region });
    for (const w of windows) {
      for (const c of [
        row(VIEW_NAMES.velocityCard, cardKey, w, t),
        row(VIEW_NAMES.velocityMerchant, merchantKey, w, t),
        row(VIEW_NAMES.velocityBin, binKey, w, t),
        row(VIEW_NAMES.declineRate, gatewayKey, w, t),
      ]) {
        c.attempts += 1;
        c.authorized += 1 - declined;
        c.declined += declined;
        c.small_attempts += small;
        c.small_declined += small * declined;
      }
    }
    const hour = windows[2]!.start;
    const minute = Math.floor((t - hour) / 60_000);
    member(VIEW_NAMES.velocityCard, cardKey, hour, minute, e.merchantId);
    member(VIEW_NAMES.velocityMerchant, merchantKey, hour, minute, e.cardToken);
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

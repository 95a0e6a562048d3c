import { Pool, type PoolClient } from 'pg';
import type { Config } from '../config';
import type { FraudAlert } from '../streams/fraud-views/snapshot';
import {
  type CountRow,
  type FlushDelta,
  type Observation,
  COUNTERS,
  VIEW_NAMES,
  aggregate,
  keyOf,
  type AmountStats,
  addSample,
  windowOf,
} from '../streams/fraud-views/windows';
import { createPool, survivingIdleErrors } from './postgres';

// Every SQL statement of the risk store (schema `risk`, src/stores/risk-migrations): the fraud-views
// consumer's flush (counters, de-duplication, alerts and consumed offsets in one transaction) and the
// reads the views are served from.

/** The risk store's pool: RISK_DATABASE_URL, or the application's DATABASE_URL when it is empty. */
export function createRiskPool(config: Config, max = 4): Pool {
  if (config.RISK_DATABASE_URL === '') return createPool(config, max);
  return survivingIdleErrors(
    new Pool({ connectionString: config.RISK_DATABASE_URL, max, connectionTimeoutMillis: 5000 }),
    'RISK_DATABASE_URL',
  );
}

/** Thresholds of the named rules (FRAUD_* in src/config.ts). */
export interface RiskRules {
  smallAmountMinor: number;
  cardTestingMinAttempts: number;
  cardTestingMinDeclineRate: number;
  cardTestingMinSmallShare: number;
  declineSpikeMinAttempts: number;
  declineSpikeMinRate: number;
  declineSpikeFactor: number;
  declineBaselineMinAttempts: number;
  declineBaselineDefault: number;
  velocityCardMaxAttempts: number;
  outlierSigmas: number;
  outlierMinSamples: number;
}

export function riskRulesOf(config: Config): RiskRules {
  return {
    smallAmountMinor: config.FRAUD_SMALL_AMOUNT_MINOR,
    cardTestingMinAttempts: config.FRAUD_CARD_TESTING_MIN_ATTEMPTS,
    cardTestingMinDeclineRate: config.FRAUD_CARD_TESTING_MIN_DECLINE_RATE,
    cardTestingMinSmallShare: config.FRAUD_CARD_TESTING_MIN_SMALL_SHARE,
    declineSpikeMinAttempts: config.FRAUD_DECLINE_SPIKE_MIN_ATTEMPTS,
    declineSpikeMinRate: config.FRAUD_DECLINE_SPIKE_MIN_RATE,
    declineSpikeFactor: config.FRAUD_DECLINE_SPIKE_FACTOR,
    declineBaselineMinAttempts: config.FRAUD_DECLINE_BASELINE_MIN_ATTEMPTS,
    declineBaselineDefault: config.FRAUD_DECLINE_BASELINE_DEFAULT,
    velocityCardMaxAttempts: config.FRAUD_VELOCITY_CARD_MAX_ATTEMPTS,
    outlierSigmas: config.FRAUD_OUTLIER_SIGMAS,
    outlierMinSamples: config.FRAUD_OUTLIER_MIN_SAMPLES,
  };
}

/** The rule names alerts carry. */
export const RULES = ['card-testing', 'decline-spike', 'velocity-card', 'amount-outlier'] as const;
export type RuleName = (typeof RULES)[number];

/** Where one input partition got to in this flush. */
export interface PartitionProgress {
  topic: string;
  partition: number;
  /** The offset after the last message read (counted or skipped). */
  nextOffset: string;
  /** Newest event time read in the partition (ms), if any. */
  watermark?: number;
}

export interface FlushInput {
  group: string;
  observations: readonly Observation[];
  partitions: readonly PartitionProgress[];
  /** Freshness samples of earlier flushes, bucket ms → count (written now: they were measured after commit). */
  freshness: ReadonlyMap<number, number>;
  rules: RiskRules;
}

export interface FlushResult {
  /** Events counted now (new offsets, never seen before). */
  counted: Observation[];
  /** Read again after a redelivery: their offsets were already counted. */
  alreadyCounted: number;
  /** Same event delivered twice by its source (same id at another offset). */
  duplicates: number;
  late: number;
  raised: FraudAlert[];
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const iso = (ms: number): string => new Date(ms).toISOString();

/** One flush: everything the events add, their alerts and the partitions' offsets, in one transaction. */
export async function flushToRiskStore(pool: Pool, input: FlushInput): Promise<FlushResult> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      await client.query('begin');
      const result = await flushInTransaction(client, input);
      await client.query('commit');
      return result;
    } catch (err) {
      await client.query('rollback').catch(() => undefined);
      // A second member flushing the same rows (a rebalance overlap): retry a deadlock or serialization loss.
      const code = (err as { code?: string }).code;
      if (attempt < 5 && (code === '40P01' || code === '40001')) continue;
      throw err;
    } finally {
      client.release();
    }
  }
}

async function flushInTransaction(client: PoolClient, input: FlushInput): Promise<FlushResult> {
  const { group, rules } = input;
  const partitions = [...input.partitions].sort((a, b) => byText(a.topic, b.topic) || a.partition - b.partition);
  // Creates each partition's row if new and locks it until commit (sorted: members lock in one order).
  const { rows: offsetRows } = await client.query<{ topic: string; partition: number; next_offset: string }>(
    `insert into risk.consumed_offsets (consumer_group, topic, partition, next_offset)
     select $1, * from unnest($2::text[], $3::int[], $4::bigint[])
     on conflict (consumer_group, topic, partition) do update set next_offset = risk.consumed_offsets.next_offset
     returning topic, partition, next_offset::text`,
    [group, partitions.map((p) => p.topic), partitions.map((p) => p.partition), partitions.map(() => '0')],
  );
  const stored = new Map(offsetRows.map((r) => [`${r.topic}[${r.partition}]`, BigInt(r.next_offset)]));

  // Messages at offsets the store already counted were redelivered: skip them (and a copy read twice).
  const byOffset = new Map<string, Observation>();
  let alreadyCounted = 0;
  for (const o of input.observations) {
    const at = `${o.topic}[${o.partition}]`;
    if (BigInt(o.offset) < (stored.get(at) ?? 0n)) alreadyCounted += 1;
    else byOffset.set(`${at}@${o.offset}`, o);
  }
  // One event delivered twice by its source: the first id wins, in the store and in this flush.
  const byId = new Map<string, Observation>();
  for (const o of byOffset.values()) if (!byId.has(o.id)) byId.set(o.id, o);
  let counted: Observation[] = [];
  if (byId.size > 0) {
    const ids = [...byId.keys()].sort(byText);
    const { rows } = await client.query<{ event_id: string }>(
      `insert into risk.seen_events (event_id, event_time)
       select * from unnest($1::text[], $2::timestamptz[]) on conflict (event_id) do nothing returning event_id`,
      [ids, ids.map((id) => iso(byId.get(id)!.eventTime))],
    );
    counted = rows.map((r) => byId.get(r.event_id)!);
  }
  const duplicates = byOffset.size - counted.length;

  const delta = aggregate(counted, rules.smallAmountMinor);
  const updated = await upsertCountsAndMembers(client, delta, rules);
  await upsertCards(client, delta);
  const alerts = [
    ...cardTestingAlerts(updated, rules),
    ...velocityAlerts(updated, rules),
    ...(await declineSpikeAlerts(client, updated, rules)),
    ...(await amountStats(client, delta, rules)),
  ];
  const raised = await insertAlerts(client, alerts);

  // Offsets, watermarks and late counts per partition: what makes the counts exact under redelivery.
  const late = new Map<string, number>();
  for (const o of counted)
    if (o.late) late.set(`${o.topic}[${o.partition}]`, (late.get(`${o.topic}[${o.partition}]`) ?? 0) + 1);
  const countedAt = new Set(counted.map((o) => `${o.topic}[${o.partition}]`));
  await client.query(
    `update risk.consumed_offsets o set
       next_offset = greatest(o.next_offset, u.next_offset),
       watermark = case when u.watermark is null then o.watermark else greatest(o.watermark, u.watermark) end,
       late_events = o.late_events + u.late,
       updated_at = case when u.counted then now() else o.updated_at end
     from unnest($2::text[], $3::int[], $4::bigint[], $5::timestamptz[], $6::bigint[], $7::boolean[])
       as u(topic, partition, next_offset, watermark, late, counted)
     where o.consumer_group = $1 and o.topic = u.topic and o.partition = u.partition`,
    [
      group,
      partitions.map((p) => p.topic),
      partitions.map((p) => p.partition),
      partitions.map((p) => p.nextOffset),
      partitions.map((p) => (p.watermark === undefined ? null : iso(p.watermark))),
      partitions.map((p) => late.get(`${p.topic}[${p.partition}]`) ?? 0),
      partitions.map((p) => countedAt.has(`${p.topic}[${p.partition}]`)),
    ],
  );
  if (input.freshness.size > 0) {
    const buckets = [...input.freshness].sort(([a], [b]) => a - b);
    await client.query(
      `insert into risk.freshness (consumer_group, bucket_ms, count)
       select $1, * from unnest($2::bigint[], $3::bigint[])
       on conflict (consumer_group, bucket_ms) do update set count = risk.freshness.count + excluded.count`,
      [group, buckets.map(([b]) => b), buckets.map(([, n]) => n)],
    );
  }
  return { counted, alreadyCounted, duplicates, late: [...late.values()].reduce((a, b) => a + b, 0), raised };
}

const rowId = (view: string, size: string, start: number, key: string): string => `${view}|${size}|${start}|${key}`;

/** A counter row after the upsert: its totals, for the rules. */
export interface UpdatedRow extends CountRow {
  totals: Record<(typeof COUNTERS)[number], number>;
}

const COUNTED = COUNTERS.filter((c) => c !== 'distinct_members');

/**
 * One statement: the hour's member sets take the flush's members (minutes and five-minute windows as bit
 * masks), the bits each one newly set become the windows' distinct-count increments, and the counter rows
 * add them with the other counters. Only rows a rule could fire on come back (the rules' first thresholds).
 */
async function upsertCountsAndMembers(client: PoolClient, delta: FlushDelta, rules: RiskRules): Promise<UpdatedRow[]> {
  if (delta.counts.length === 0) return [];
  const members = [...delta.members].sort((a, b) => byText(a.id, b.id));
  const rows = [...delta.counts].sort((a, b) => byText(a.id, b.id));
  // A flush's rows share a few window starts: format each once.
  const isoOf = new Map<number, string>();
  const at = (ms: number): string => {
    let text = isoOf.get(ms);
    if (text === undefined) isoOf.set(ms, (text = iso(ms)));
    return text;
  };
  const n = 10 + COUNTED.length;
  const { rows: totals } = await client.query<Record<string, unknown>>(
    `with m as (
       insert into risk.window_member_sets as s
         (view, hour_start, key, member, minutes_low, minutes_high, fives, added_low, added_high, added_fives, added_hour)
       select u.view, u.hour_start, u.key, u.member, u.low, u.high, u.fives, u.low, u.high, u.fives, true
         from unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::int[], $6::int[], $7::int[])
           as u(view, hour_start, key, member, low, high, fives)
       on conflict (view, hour_start, key, member) do update set
         minutes_low = s.minutes_low | excluded.minutes_low, minutes_high = s.minutes_high | excluded.minutes_high,
         fives = s.fives | excluded.fives, added_low = excluded.minutes_low & ~s.minutes_low,
         added_high = excluded.minutes_high & ~s.minutes_high, added_fives = excluded.fives & ~s.fives,
         added_hour = false, seen_at = now()
       returning s.view, s.hour_start, s.key, s.added_low, s.added_high, s.added_fives, s.added_hour
     ),
     d as (
       select view, '1h' as size, hour_start as window_start, key, count(*) as n from m where added_hour
        group by view, hour_start, key
       union all
       select view, '5m', hour_start + b * interval '5 minutes', key, count(*)
         from m cross join generate_series(0, 11) b where added_fives <> 0 and added_fives & (1 << b) <> 0
        group by 1, 2, 3, 4
       union all
       select view, '1m', hour_start + b * interval '1 minute', key, count(*)
         from m cross join generate_series(0, 29) b where added_low <> 0 and added_low & (1 << b) <> 0
        group by 1, 2, 3, 4
       union all
       select view, '1m', hour_start + (30 + b) * interval '1 minute', key, count(*)
         from m cross join generate_series(0, 29) b where added_high <> 0 and added_high & (1 << b) <> 0
        group by 1, 2, 3, 4
     ),
     c as (
       insert into risk.window_counts as w (view, key, size, window_start, window_end, ${COUNTED.join(', ')}, distinct_members)
       select u.view, u.key, u.size, u.window_start, u.window_end, ${COUNTED.map((c) => `u.${c}`).join(', ')}, coalesce(d.n, 0)
         from unnest($8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[],
                     ${COUNTED.map((_, i) => `$${i + 13}::bigint[]`).join(', ')})
           as u(view, key, size, window_start, window_end, ${COUNTED.join(', ')})
         left join d on d.view = u.view and d.size = u.size and d.window_start = u.window_start and d.key = u.key
       on conflict (view, size, window_start, key) do update set
         ${COUNTERS.map((c) => `${c} = w.${c} + excluded.${c}`).join(', ')}, updated_at = now()
       returning w.view, w.size, w.window_start, w.key, ${COUNTERS.map((c) => `w.${c}`).join(', ')}
     )
     select * from c
      where (view in ($${n + 3}, $${n + 4}) and size = '1m' and small_attempts >= $${n + 5})
         or (view = $${n + 6} and size = '1h' and attempts >= $${n + 7})
         or (view = $${n + 8} and size = '5m' and attempts >= $${n + 9})`,
    [
      members.map((m) => m.view),
      members.map((m) => at(m.hourStart)),
      members.map((m) => m.key),
      members.map((m) => m.member),
      members.map((m) => m.minutesLow),
      members.map((m) => m.minutesHigh),
      members.map((m) => m.fives),
      rows.map((r) => r.view),
      rows.map((r) => r.key),
      rows.map((r) => r.window.size),
      rows.map((r) => at(r.window.start)),
      rows.map((r) => at(r.window.end)),
      ...COUNTED.map((c) => rows.map((r) => r.counts[c])),
      VIEW_NAMES.velocityMerchant,
      VIEW_NAMES.velocityBin,
      rules.cardTestingMinAttempts,
      VIEW_NAMES.velocityCard,
      rules.velocityCardMaxAttempts,
      VIEW_NAMES.declineRate,
      rules.declineSpikeMinAttempts,
    ],
  );
  const byId = new Map(rows.map((r) => [r.id, r]));
  return totals.map((t) => {
    const row = byId.get(rowId(String(t.view), String(t.size), (t.window_start as Date).getTime(), String(t.key)))!;
    return { ...row, totals: Object.fromEntries(COUNTERS.map((c) => [c, Number(t[c])])) as UpdatedRow['totals'] };
  });
}

async function upsertCards(client: PoolClient, delta: FlushDelta): Promise<void> {
  if (delta.cards.length === 0) return;
  const cards = [...delta.cards].sort((a, b) => byText(a.merchantId, b.merchantId) || byText(a.cardToken, b.cardToken));
  await client.query(
    `insert into risk.merchant_cards (merchant_id, card_token, bin, last_four, first_seen)
     select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
     on conflict (merchant_id, card_token) do update set first_seen = least(risk.merchant_cards.first_seen, excluded.first_seen)`,
    [
      cards.map((c) => c.merchantId),
      cards.map((c) => c.cardToken),
      cards.map((c) => c.bin),
      cards.map((c) => c.lastFour),
      cards.map((c) => iso(c.firstSeen)),
    ],
  );
}

interface AlertRow extends Omit<FraudAlert, 'raisedAt'> {
  keyJson: string;
}

function alertOf(
  rule: RuleName,
  keyJson: string,
  windowStart: number,
  value: number,
  threshold: number,
  eventTime: number,
  message: string,
): AlertRow {
  return {
    id: `${rule}|${keyJson}|${iso(windowStart)}`,
    rule,
    key: JSON.parse(keyJson) as Record<string, string>,
    keyJson,
    windowStart: iso(windowStart),
    value,
    threshold,
    eventTime: iso(eventTime),
    message,
  };
}

const rate = (part: number, whole: number): number => (whole === 0 ? 0 : part / whole);

function cardTestingAlerts(rows: readonly UpdatedRow[], rules: RiskRules): AlertRow[] {
  return rows
    .filter(
      (r) =>
        (r.view === VIEW_NAMES.velocityMerchant || r.view === VIEW_NAMES.velocityBin) &&
        r.window.size === '1m' &&
        r.totals.small_attempts >= rules.cardTestingMinAttempts &&
        rate(r.totals.small_declined, r.totals.small_attempts) >= rules.cardTestingMinDeclineRate &&
        // Refusals count as small (gateways report them with amount 0): a busy BIN's ordinary declines are
        // many small attempts too, but a small share of its attempts. Card testing is almost all small.
        rate(r.totals.small_attempts, r.totals.attempts) >= rules.cardTestingMinSmallShare,
    )
    .map((r) => {
      const declineRate = rate(r.totals.small_declined, r.totals.small_attempts);
      return alertOf(
        'card-testing',
        r.key,
        r.window.start,
        r.totals.small_attempts,
        rules.cardTestingMinAttempts,
        r.lastEventTime,
        `${r.totals.small_attempts} small attempts in a minute on ${r.key}, ${Math.round(declineRate * 100)}% declined`,
      );
    });
}

function velocityAlerts(rows: readonly UpdatedRow[], rules: RiskRules): AlertRow[] {
  return rows
    .filter(
      (r) =>
        r.view === VIEW_NAMES.velocityCard &&
        r.window.size === '1h' &&
        r.totals.attempts >= rules.velocityCardMaxAttempts,
    )
    .map((r) =>
      alertOf(
        'velocity-card',
        r.key,
        r.window.start,
        r.totals.attempts,
        rules.velocityCardMaxAttempts,
        r.lastEventTime,
        `${r.totals.attempts} attempts within an hour on one card token`,
      ),
    );
}

/** The trailing hour before a window: what a gateway × region's decline rate is compared with. */
async function trailingBaseline(
  client: PoolClient,
  key: string,
  windowStart: number,
  rules: RiskRules,
): Promise<number> {
  const { rows } = await client.query<{ attempts: number | null; declined: number | null }>(
    `select sum(attempts)::bigint as attempts, sum(declined)::bigint as declined from risk.window_counts
      where view = $1 and size = '5m' and key = $2 and window_start >= $3 and window_start < $4`,
    [VIEW_NAMES.declineRate, key, iso(windowStart - 3_600_000), iso(windowStart)],
  );
  const attempts = Number(rows[0]?.attempts ?? 0);
  return attempts >= rules.declineBaselineMinAttempts
    ? rate(Number(rows[0]?.declined ?? 0), attempts)
    : rules.declineBaselineDefault;
}

async function declineSpikeAlerts(
  client: PoolClient,
  rows: readonly UpdatedRow[],
  rules: RiskRules,
): Promise<AlertRow[]> {
  const out: AlertRow[] = [];
  for (const r of rows) {
    if (r.view !== VIEW_NAMES.declineRate || r.window.size !== '5m') continue;
    if (r.totals.attempts < rules.declineSpikeMinAttempts) continue;
    const declineRate = rate(r.totals.declined, r.totals.attempts);
    if (declineRate < rules.declineSpikeMinRate) continue;
    const baseline = await trailingBaseline(client, r.key, r.window.start, rules);
    const threshold = Math.max(rules.declineSpikeMinRate, baseline * rules.declineSpikeFactor);
    if (declineRate < threshold) continue;
    out.push(
      alertOf(
        'decline-spike',
        r.key,
        r.window.start,
        declineRate,
        threshold,
        r.lastEventTime,
        `decline rate ${Math.round(declineRate * 100)}% over ${r.totals.attempts} attempts in 5 minutes at ${r.key}, trailing baseline ${Math.round(baseline * 100)}%`,
      ),
    );
  }
  return out;
}

/** Updates the amount statistics; an amount above mean + K·σ of what came before in the month is an outlier. */
async function amountStats(client: PoolClient, delta: FlushDelta, rules: RiskRules): Promise<AlertRow[]> {
  if (delta.amounts.length === 0) return [];
  const groups = new Map<string, typeof delta.amounts>();
  for (const a of delta.amounts) {
    const id = `${a.merchantId}|${a.currency}|${a.month}`;
    const list = groups.get(id) ?? [];
    groups.set(id, list);
    list.push(a);
  }
  const ids = [...groups.keys()].sort(byText);
  const first = ids.map((id) => groups.get(id)![0]!);
  // Creates the rows if new and locks them until commit.
  const { rows } = await client.query<{
    merchant_id: string;
    currency: string;
    month_start: Date;
    n: number;
    mean_minor: number;
    sigma_minor: number;
  }>(
    `insert into risk.amount_stats (merchant_id, currency, month_start)
     select * from unnest($1::text[], $2::text[], $3::timestamptz[])
     on conflict (merchant_id, currency, month_start) do update set n = risk.amount_stats.n
     returning merchant_id, currency, month_start, n, mean_minor, sigma_minor`,
    [first.map((a) => a.merchantId), first.map((a) => a.currency), first.map((a) => iso(a.month))],
  );
  const alerts: AlertRow[] = [];
  const updates: {
    merchantId: string;
    currency: string;
    month: number;
    stats: AmountStats;
    max: number;
    outliers: number;
  }[] = [];
  for (const r of rows) {
    const samples = groups.get(`${r.merchant_id}|${r.currency}|${r.month_start.getTime()}`)!;
    samples.sort((a, b) => a.eventTime - b.eventTime || byText(a.id, b.id));
    let stats: AmountStats = { n: r.n, mean: r.mean_minor, sigma: r.sigma_minor };
    let max = 0;
    let outliers = 0;
    for (const s of samples) {
      const threshold = stats.mean + rules.outlierSigmas * stats.sigma;
      if (stats.n >= rules.outlierMinSamples && s.amountMinor > threshold) {
        outliers += 1;
        alerts.push(
          alertOf(
            'amount-outlier',
            keyOf({ currency: s.currency, merchantId: s.merchantId }),
            windowOf('1m', s.eventTime).start,
            s.amountMinor,
            Math.round(threshold),
            s.eventTime,
            `${s.amountMinor} ${s.currency} minor units at ${s.merchantId}, above mean ${Math.round(stats.mean)} + ${rules.outlierSigmas}σ (${Math.round(stats.sigma)}) of ${stats.n} earlier amounts this month`,
          ),
        );
      }
      stats = addSample(stats, s.amountMinor);
      if (s.amountMinor > max) max = s.amountMinor;
    }
    updates.push({
      merchantId: r.merchant_id,
      currency: r.currency,
      month: r.month_start.getTime(),
      stats,
      max,
      outliers,
    });
  }
  await client.query(
    `update risk.amount_stats s set n = u.n, mean_minor = u.mean_minor, sigma_minor = u.sigma_minor,
       max_minor = greatest(s.max_minor, u.max_minor), outliers = s.outliers + u.outliers, updated_at = now()
     from unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::float8[], $6::float8[], $7::bigint[], $8::bigint[])
       as u(merchant_id, currency, month_start, n, mean_minor, sigma_minor, max_minor, outliers)
     where s.merchant_id = u.merchant_id and s.currency = u.currency and s.month_start = u.month_start`,
    [
      updates.map((u) => u.merchantId),
      updates.map((u) => u.currency),
      updates.map((u) => iso(u.month)),
      updates.map((u) => u.stats.n),
      updates.map((u) => u.stats.mean),
      updates.map((u) => u.stats.sigma),
      updates.map((u) => u.max),
      updates.map((u) => u.outliers),
    ],
  );
  return alerts;
}

/** Inserts alerts; answers the ones that are new (an id raised before, by this or an earlier flush, is not). */
async function insertAlerts(client: PoolClient, alerts: readonly AlertRow[]): Promise<FraudAlert[]> {
  if (alerts.length === 0) return [];
  const unique = [...new Map(alerts.map((a) => [a.id, a])).values()].sort((a, b) => byText(a.id, b.id));
  const { rows } = await client.query<{ id: string; raised_at: Date }>(
    `insert into risk.alerts (id, rule, key, window_start, value, threshold, event_time, message)
     select * from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[], $6::float8[],
                          $7::timestamptz[], $8::text[])
     on conflict (id) do nothing returning id, raised_at`,
    [
      unique.map((a) => a.id),
      unique.map((a) => a.rule),
      unique.map((a) => a.keyJson),
      unique.map((a) => a.windowStart),
      unique.map((a) => a.value),
      unique.map((a) => a.threshold),
      unique.map((a) => a.eventTime),
      unique.map((a) => a.message),
    ],
  );
  const byId = new Map(unique.map((a) => [a.id, a]));
  return rows.map((r) => {
    const { keyJson: _, ...alert } = byId.get(r.id)!;
    return { ...alert, raisedAt: r.raised_at.toISOString() };
  });
}

// ---- Alerts to publish --------------------------------------------------------------------------

interface StoredAlert {
  id: string;
  rule: string;
  key: string;
  window_start: Date;
  value: number;
  threshold: number;
  event_time: Date;
  raised_at: Date;
  message: string;
}

const alertFromRow = (r: StoredAlert): FraudAlert => ({
  id: r.id,
  rule: r.rule,
  key: JSON.parse(r.key) as Record<string, string>,
  windowStart: r.window_start.toISOString(),
  value: r.value,
  threshold: r.threshold,
  eventTime: r.event_time.toISOString(),
  raisedAt: r.raised_at.toISOString(),
  message: r.message,
});

/** Alerts not yet on the alerts topic, oldest first. */
export async function unpublishedAlerts(pool: Pool, limit = 500): Promise<FraudAlert[]> {
  const { rows } = await pool.query<StoredAlert>(
    `select id, rule, key, window_start, value, threshold, event_time, raised_at, message from risk.alerts
      where published_at is null order by raised_at, id limit $1`,
    [limit],
  );
  return rows.map(alertFromRow);
}

export async function markAlertsPublished(pool: Pool, ids: readonly string[]): Promise<void> {
  if (ids.length > 0) await pool.query('update risk.alerts set published_at = now() where id = any($1::text[])', [ids]);
}

export async function readAlerts(pool: Pool, limit = 50): Promise<FraudAlert[]> {
  const { rows } = await pool.query<StoredAlert>(
    `select id, rule, key, window_start, value, threshold, event_time, raised_at, message from risk.alerts
      order by raised_at desc, id limit $1`,
    [limit],
  );
  return rows.map(alertFromRow);
}

// ---- Reads --------------------------------------------------------------------------------------

export interface PartitionState {
  topic: string;
  partition: number;
  nextOffset: bigint;
  watermark: number | null;
  lateEvents: number;
  updatedAt: number;
}

export async function readPartitionStates(pool: Pool, group: string): Promise<PartitionState[]> {
  const { rows } = await pool.query<{
    topic: string;
    partition: number;
    next_offset: string;
    watermark: Date | null;
    late_events: number;
    updated_at: Date;
  }>(
    `select topic, partition, next_offset::text, watermark, late_events, updated_at from risk.consumed_offsets
      where consumer_group = $1 order by topic, partition`,
    [group],
  );
  return rows.map((r) => ({
    topic: r.topic,
    partition: r.partition,
    nextOffset: BigInt(r.next_offset),
    watermark: r.watermark ? r.watermark.getTime() : null,
    lateEvents: r.late_events,
    updatedAt: r.updated_at.getTime(),
  }));
}

/** Every counter row of the given views (comparisons with the simulator's truth, tests). */
export async function readWindowCounts(
  pool: Pool,
  views: readonly string[],
): Promise<
  ({ view: string; key: string; size: string; windowStart: string } & Record<(typeof COUNTERS)[number], number>)[]
> {
  const { rows } = await pool.query<Record<string, unknown>>(
    `select view, key, size, window_start, ${COUNTERS.join(', ')} from risk.window_counts where view = any($1::text[])`,
    [views],
  );
  return rows.map((r) => ({
    view: String(r.view),
    key: String(r.key),
    size: String(r.size),
    windowStart: (r.window_start as Date).toISOString(),
    ...(Object.fromEntries(COUNTERS.map((c) => [c, Number(r[c])])) as Record<(typeof COUNTERS)[number], number>),
  }));
}

/** The freshness histogram (bucket ms → events) the consumer wrote. */
export async function readFreshness(pool: Pool, group: string): Promise<Map<number, number>> {
  const { rows } = await pool.query<{ bucket_ms: number; count: number }>(
    'select bucket_ms, count from risk.freshness where consumer_group = $1',
    [group],
  );
  return new Map(rows.map((r) => [r.bucket_ms, r.count]));
}

/** Rows of one counted view's newest window of each size, most relevant first. */
export async function readNewestWindows(
  pool: Pool,
  view: string,
  sizes: readonly string[],
  orderBy: string,
  limit: number,
  where = 'true',
): Promise<({ key: string; size: string; start: Date; end: Date } & Record<(typeof COUNTERS)[number], number>)[]> {
  const { rows } = await pool.query<Record<string, unknown>>(
    `select c.key, c.size, c.window_start, c.window_end, ${COUNTERS.map((x) => `c.${x}`).join(', ')}
       from unnest($2::text[]) as s(size)
       cross join lateral (
         select max(window_start) as newest from risk.window_counts w where w.view = $1 and w.size = s.size and (${where})
       ) n
       cross join lateral (
         select * from risk.window_counts w where w.view = $1 and w.size = s.size and w.window_start = n.newest and (${where})
          order by ${orderBy} limit $3
       ) c`,
    [view, sizes, limit],
  );
  return rows.map((r) => ({
    key: String(r.key),
    size: String(r.size),
    start: r.window_start as Date,
    end: r.window_end as Date,
    ...(Object.fromEntries(COUNTERS.map((c) => [c, Number(r[c])])) as Record<(typeof COUNTERS)[number], number>),
  }));
}

/** The trailing-hour decline rate before each of `windows` (5-minute rows), per gateway × region key. */
export async function readDeclineBaselines(
  pool: Pool,
  windows: readonly { key: string; start: Date }[],
): Promise<Map<string, { attempts: number; declined: number }>> {
  if (windows.length === 0) return new Map();
  const { rows } = await pool.query<{ key: string; start: Date; attempts: number | null; declined: number | null }>(
    `select q.key, q.start, sum(w.attempts)::bigint as attempts, sum(w.declined)::bigint as declined
       from unnest($2::text[], $3::timestamptz[]) as q(key, start)
       left join risk.window_counts w on w.view = $1 and w.size = '5m' and w.key = q.key
        and w.window_start >= q.start - interval '1 hour' and w.window_start < q.start
      group by q.key, q.start`,
    [VIEW_NAMES.declineRate, windows.map((w) => w.key), windows.map((w) => w.start.toISOString())],
  );
  return new Map(
    rows.map((r) => [
      `${r.key}|${r.start.getTime()}`,
      { attempts: Number(r.attempts ?? 0), declined: Number(r.declined ?? 0) },
    ]),
  );
}

export async function readCardTesting(
  pool: Pool,
  limit: number,
): Promise<({ view: string; key: string; start: Date; end: Date } & Record<(typeof COUNTERS)[number], number>)[]> {
  const { rows } = await pool.query<Record<string, unknown>>(
    `select view, key, window_start, window_end, ${COUNTERS.join(', ')} from risk.window_counts
      where view = any($1::text[]) and size = '1m' and small_attempts > 0
      order by window_start desc, small_declined desc, key limit $2`,
    [[VIEW_NAMES.velocityMerchant, VIEW_NAMES.velocityBin], limit],
  );
  return rows.map((r) => ({
    view: String(r.view),
    key: String(r.key),
    start: r.window_start as Date,
    end: r.window_end as Date,
    ...(Object.fromEntries(COUNTERS.map((c) => [c, Number(r[c])])) as Record<(typeof COUNTERS)[number], number>),
  }));
}

export async function readAmountStats(
  pool: Pool,
  limit: number,
): Promise<
  {
    merchantId: string;
    currency: string;
    month: Date;
    n: number;
    mean: number;
    sigma: number;
    max: number;
    outliers: number;
  }[]
> {
  const { rows } = await pool.query<{
    merchant_id: string;
    currency: string;
    month_start: Date;
    n: number;
    mean_minor: number;
    sigma_minor: number;
    max_minor: number;
    outliers: number;
  }>(
    `select merchant_id, currency, month_start, n, mean_minor, sigma_minor, max_minor, outliers
       from risk.amount_stats where month_start = (select max(month_start) from risk.amount_stats)
      order by outliers desc, max_minor desc, merchant_id, currency limit $1`,
    [limit],
  );
  return rows.map((r) => ({
    merchantId: r.merchant_id,
    currency: r.currency,
    month: r.month_start,
    n: r.n,
    mean: r.mean_minor,
    sigma: r.sigma_minor,
    max: r.max_minor,
    outliers: r.outliers,
  }));
}

export async function readNewCards(
  pool: Pool,
  limit: number,
): Promise<{ merchantId: string; cardToken: string; bin: string; lastFour: string; firstSeen: Date }[]> {
  const { rows } = await pool.query<{
    merchant_id: string;
    card_token: string;
    bin: string;
    last_four: string;
    first_seen: Date;
  }>(
    `select merchant_id, card_token, bin, last_four, first_seen from risk.merchant_cards
      order by first_seen desc, merchant_id, card_token limit $1`,
    [limit],
  );
  return rows.map((r) => ({
    merchantId: r.merchant_id,
    cardToken: r.card_token,
    bin: r.bin,
    lastFour: r.last_four,
    firstSeen: r.first_seen,
  }));
}

/** Deletes what has not been touched within the retention (by wall clock: event times may be anything). */
export async function sweepRiskStore(pool: Pool, retentionDays: number, dedupRetentionHours: number): Promise<number> {
  const days = `${retentionDays} days`;
  let deleted = 0;
  for (const sql of [
    `delete from risk.window_counts where updated_at < now() - $1::interval`,
    `delete from risk.window_member_sets where seen_at < now() - $1::interval`,
    `delete from risk.merchant_cards where seen_at < now() - $1::interval`,
    `delete from risk.amount_stats where updated_at < now() - $1::interval`,
    `delete from risk.alerts where raised_at < now() - $1::interval and published_at is not null`,
  ]) {
    deleted += (await pool.query(sql, [days])).rowCount ?? 0;
  }
  deleted +=
    (
      await pool.query(`delete from risk.seen_events where seen_at < now() - $1::interval`, [
        `${dedupRetentionHours} hours`,
      ])
    ).rowCount ?? 0;
  return deleted;
}

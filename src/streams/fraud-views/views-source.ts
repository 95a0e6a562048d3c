import type { Pool } from 'pg';
import { type Config, loadConfig } from '../../config';
import { errorMessage } from '../../logger';
import {
  type PartitionState,
  createRiskPool,
  readAlerts,
  readAmountStats,
  readCardTesting,
  readDeclineBaselines,
  readNewCards,
  readNewestWindows,
  readPartitionStates,
  riskRulesOf,
} from '../../stores/risk';
import { type KafkaAdmin, type KafkaClient, type TopicSet, createKafka, topicsFor } from '../kafka';
import type { View, ViewAge, ViewRow, ViewsSnapshot, ViewsSource, WindowSize } from './snapshot';
import { type COUNTERS, VIEW_NAMES, monthOf, windowOf, windowOpen } from './windows';

// The views as served: one snapshot read from the risk store, each view with its honest age. While the
// store is cut off the last snapshot is answered again with store.reachable = false and its ages grown by
// the time since (AP: stale numbers, never an error page); Kafka being cut off only blanks the consumer lag.

export interface RiskViewsSourceOptions {
  pool: Pool;
  topics: TopicSet;
  group: string;
  graceMs: number;
  topRows: number;
  smallAmountMinor: number;
  outlierSigmas: number;
  declineBaselineMinAttempts: number;
  declineBaselineDefault: number;
  /** For the consumer lag (topic ends); without it the lag is null. */
  kafka?: KafkaClient;
  /** How long a Kafka lag lookup may take before the snapshot goes without it. */
  kafkaTimeoutMs?: number;
}

export interface RiskViewsSource extends ViewsSource {
  close(): Promise<void>;
}

/**
 * The ViewsSource the API and page serve: from the configuration (RISK_DATABASE_URL, FRAUD_VIEWS_GROUP,
 * topics, thresholds), with its own pool and Kafka admin. Close it when done.
 */
export function createRiskViewsSource(config: Config = loadConfig()): RiskViewsSource {
  const pool = createRiskPool(config, 2);
  const source = riskViewsSource({
    pool,
    topics: topicsFor(config),
    group: config.FRAUD_VIEWS_GROUP,
    graceMs: config.FRAUD_VIEWS_GRACE_MS,
    topRows: config.FRAUD_VIEWS_TOP_ROWS,
    smallAmountMinor: riskRulesOf(config).smallAmountMinor,
    outlierSigmas: config.FRAUD_OUTLIER_SIGMAS,
    declineBaselineMinAttempts: config.FRAUD_DECLINE_BASELINE_MIN_ATTEMPTS,
    declineBaselineDefault: config.FRAUD_DECLINE_BASELINE_DEFAULT,
    kafka: createKafka(config, 'paylink-fraud-views-source'),
  });
  return {
    snapshot: () => source.snapshot(),
    async close() {
      await source.close();
      await pool.end();
    },
  };
}

type Counts = Record<(typeof COUNTERS)[number], number>;

interface ViewSpec {
  name: string;
  title: string;
  description: string;
  topics: (t: TopicSet) => string[];
  rows: () => Promise<ViewRow[]>;
}

const SIZES: WindowSize[] = ['1m', '5m', '1h'];
const ratio = (part: number, whole: number): number => (whole === 0 ? 0 : Math.round((part / whole) * 10_000) / 10_000);

/** The source over a pool the caller owns (tests, the demo). */
export function riskViewsSource(options: RiskViewsSourceOptions): RiskViewsSource {
  const { pool, topics, group, graceMs, topRows } = options;
  let last: ViewsSnapshot | undefined;
  let admin: KafkaAdmin | undefined;
  let adminConnected: Promise<void> | undefined;

  const counted = async (view: string, metrics: (r: Counts) => ViewRow['metrics'], orderBy: string) =>
    (await readNewestWindows(pool, view, SIZES, orderBy, topRows)).map((r): ViewRow => ({
      key: JSON.parse(r.key) as Record<string, string>,
      window: { size: r.size as WindowSize, start: r.start.toISOString(), end: r.end.toISOString() },
      metrics: metrics(r),
    }));

  const specs: ViewSpec[] = [
    {
      name: VIEW_NAMES.velocityCard,
      title: 'Velocity per card token',
      description: 'Attempts, authorized and declined per card token, and how many merchants it was used at.',
      topics: (t) => [t.rawGateways],
      rows: () =>
        counted(
          VIEW_NAMES.velocityCard,
          (r) => ({
            attempts: r.attempts,
            authorized: r.authorized,
            declined: r.declined,
            distinctMerchants: r.distinct_members,
          }),
          'attempts desc, declined desc, key',
        ),
    },
    {
      name: VIEW_NAMES.velocityMerchant,
      title: 'Velocity per merchant',
      description: 'Attempts, authorized and declined per merchant, and how many distinct card tokens it saw.',
      topics: (t) => [t.rawGateways],
      rows: () =>
        counted(
          VIEW_NAMES.velocityMerchant,
          (r) => ({
            attempts: r.attempts,
            authorized: r.authorized,
            declined: r.declined,
            distinctCards: r.distinct_members,
          }),
          'attempts desc, key',
        ),
    },
    {
      name: VIEW_NAMES.velocityBin,
      title: 'Velocity per BIN',
      description: 'Attempts, authorized and declined per card BIN (first six digits).',
      topics: (t) => [t.rawGateways],
      rows: () =>
        counted(
          VIEW_NAMES.velocityBin,
          (r) => ({ attempts: r.attempts, authorized: r.authorized, declined: r.declined }),
          'attempts desc, key',
        ),
    },
    {
      name: VIEW_NAMES.declineRate,
      title: 'Decline rate per gateway × region',
      description: "Approval and decline rate per regional gateway against its trailing hour's decline rate.",
      topics: (t) => [t.rawGateways],
      rows: async () => {
        const rows = await readNewestWindows(pool, VIEW_NAMES.declineRate, SIZES, 'attempts desc, key', topRows);
        const baselines = await readDeclineBaselines(
          pool,
          rows.map((r) => ({ key: r.key, start: r.start })),
        );
        return rows.map((r) => {
          const b = baselines.get(`${r.key}|${r.start.getTime()}`) ?? { attempts: 0, declined: 0 };
          return {
            key: JSON.parse(r.key) as Record<string, string>,
            window: { size: r.size as WindowSize, start: r.start.toISOString(), end: r.end.toISOString() },
            metrics: {
              attempts: r.attempts,
              authorized: r.authorized,
              declined: r.declined,
              approvalRate: ratio(r.authorized, r.attempts),
              declineRate: ratio(r.declined, r.attempts),
              baseline:
                b.attempts >= options.declineBaselineMinAttempts
                  ? ratio(b.declined, b.attempts)
                  : options.declineBaselineDefault,
              baselineAttempts: b.attempts,
            },
          };
        });
      },
    },
    {
      name: VIEW_NAMES.regionRate,
      title: 'Events per second per region',
      description: 'Gateway events per region and window, and their average rate in event time.',
      topics: (t) => [t.rawGateways],
      rows: () =>
        counted(VIEW_NAMES.regionRate, (r) => ({ events: r.events }), 'events desc, key').then((rows) =>
          rows.map((row) => ({
            ...row,
            metrics: {
              ...row.metrics,
              eventsPerSecond:
                Math.round(
                  ((row.metrics.events as number) * 1000 * 1000) /
                    (Date.parse(row.window.end) - Date.parse(row.window.start)),
                ) / 1000,
            },
          })),
        ),
    },
    {
      name: 'card-testing',
      title: 'Card testing',
      description: `Small attempts (≤ ${options.smallAmountMinor} minor units, or refused) per merchant or BIN per minute, and how many were declined.`,
      topics: (t) => [t.rawGateways],
      rows: async () =>
        (await readCardTesting(pool, topRows)).map((r) => ({
          key: JSON.parse(r.key) as Record<string, string>,
          window: { size: '1m', start: r.start.toISOString(), end: r.end.toISOString() },
          metrics: {
            smallAttempts: r.small_attempts,
            smallDeclined: r.small_declined,
            smallDeclineRate: ratio(r.small_declined, r.small_attempts),
            attempts: r.attempts,
          },
        })),
    },
    {
      name: 'amount-outliers',
      title: 'Large-amount outliers',
      description: `Authorized amounts per merchant and currency this month: mean, spread, and how many exceeded mean + ${options.outlierSigmas}σ of the amounts before them.`,
      topics: (t) => [t.rawGateways],
      rows: async () =>
        (await readAmountStats(pool, topRows)).map((s) => {
          const { mean, sigma } = s;
          const month = monthOf(s.month.getTime());
          return {
            key: { merchantId: s.merchantId, currency: s.currency },
            window: { size: 'mtd', start: new Date(month.start).toISOString(), end: new Date(month.end).toISOString() },
            metrics: {
              count: s.n,
              meanMinor: Math.round(mean),
              sigmaMinor: Math.round(sigma),
              thresholdMinor: Math.round(mean + options.outlierSigmas * sigma),
              maxMinor: s.max,
              outliers: s.outliers,
              currency: s.currency,
            },
          };
        }),
    },
    {
      name: 'new-cards',
      title: 'New card on merchant',
      description: 'Card tokens seen on a merchant for the first time, newest first (event time).',
      topics: (t) => [t.rawGateways],
      rows: async () =>
        (await readNewCards(pool, topRows)).map((c) => {
          const w = windowOf('1m', c.firstSeen.getTime());
          return {
            key: { merchantId: c.merchantId, cardToken: c.cardToken },
            window: { size: '1m', start: new Date(w.start).toISOString(), end: new Date(w.end).toISOString() },
            metrics: { bin: c.bin, lastFour: c.lastFour, firstSeen: c.firstSeen.toISOString() },
          };
        }),
    },
    {
      name: VIEW_NAMES.merchantRatios,
      title: 'Refund and chargeback ratios',
      description: 'Refunds and chargebacks per capture per merchant, calendar month to date (UTC).',
      topics: (t) => [t.paymentEvents],
      rows: async () =>
        (
          await readNewestWindows(
            pool,
            VIEW_NAMES.merchantRatios,
            ['mtd'],
            'chargebacks desc, refunds desc, key',
            topRows,
          )
        ).map((r) => ({
          key: JSON.parse(r.key) as Record<string, string>,
          window: { size: 'mtd', start: r.start.toISOString(), end: r.end.toISOString() },
          metrics: {
            captures: r.captures,
            refunds: r.refunds,
            chargebacks: r.chargebacks,
            refundRatio: ratio(r.refunds, r.captures),
            chargebackRatio: ratio(r.chargebacks, r.captures),
          },
        })),
    },
  ];

  /** Topic end offsets per partition; null when Kafka does not answer in time. */
  const topicEnds = async (names: readonly string[]): Promise<Map<string, bigint> | null> => {
    if (!options.kafka) return null;
    try {
      admin ??= options.kafka.admin();
      adminConnected ??= admin.connect();
      const lookup = (async () => {
        await adminConnected;
        const ends = new Map<string, bigint>();
        for (const topic of names) {
          for (const p of await admin.fetchTopicOffsets(topic)) ends.set(`${topic}[${p.partition}]`, BigInt(p.high));
        }
        return ends;
      })();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), options.kafkaTimeoutMs ?? 2_000);
      });
      lookup.catch(() => undefined);
      try {
        return await Promise.race([lookup, timeout]);
      } finally {
        clearTimeout(timer);
      }
    } catch {
      adminConnected = undefined;
      return null;
    }
  };

  const ageOf = (
    spec: ViewSpec,
    states: readonly PartitionState[],
    ends: Map<string, bigint> | null,
    rows: readonly ViewRow[],
    now: number,
  ): { age: ViewAge; lateEvents: number } => {
    const inputs = new Set(spec.topics(topics));
    const mine = states.filter((s) => inputs.has(s.topic));
    const marks = mine.map((s) => s.watermark).filter((w): w is number => w !== null);
    const asOf = marks.length > 0 ? Math.min(...marks) : undefined;
    const flushedAt = mine.length > 0 ? Math.max(...mine.map((s) => s.updatedAt)) : undefined;
    let consumerLag: number | null = null;
    if (ends) {
      // What the group still has to count: each partition's end minus the next offset the store counted.
      const counted = new Map(mine.map((s) => [`${s.topic}[${s.partition}]`, s.nextOffset]));
      let lag = 0n;
      for (const [id, end] of ends) {
        if (!inputs.has(id.slice(0, id.lastIndexOf('[')))) continue;
        const at = counted.get(id) ?? 0n;
        if (end > at) lag += end - at;
      }
      consumerLag = Number(lag);
    }
    const newestEnd = rows.reduce((m, r) => Math.max(m, Date.parse(r.window.end)), 0);
    return {
      age: {
        asOf: asOf === undefined ? null : new Date(asOf).toISOString(),
        processingLagMs: flushedAt === undefined ? null : Math.max(0, now - flushedAt),
        consumerLag,
        windowOpen: rows.length > 0 && windowOpen(newestEnd, asOf, graceMs),
      },
      lateEvents: mine.reduce((s, p) => s + p.lateEvents, 0),
    };
  };

  const read = async (): Promise<ViewsSnapshot> => {
    const [states, alerts, ends] = await Promise.all([
      readPartitionStates(pool, group),
      readAlerts(pool, 50),
      topicEnds([topics.rawGateways, topics.paymentEvents]),
    ]);
    const views: View[] = [];
    const now = Date.now();
    for (const spec of specs) {
      const rows = await spec.rows();
      const { age, lateEvents } = ageOf(spec, states, ends, rows, now);
      views.push({ name: spec.name, title: spec.title, description: spec.description, age, rows, lateEvents });
    }
    const at = new Date(now).toISOString();
    return { generatedAt: at, store: { reachable: true, lastReadAt: at }, views, alerts };
  };

  return {
    async snapshot() {
      try {
        last = await read();
        return last;
      } catch (err) {
        if (!last) throw err;
        // The store is cut off: the last numbers, their age grown by the time since they were read.
        const now = Date.now();
        const since = now - Date.parse(last.generatedAt);
        return {
          ...last,
          generatedAt: new Date(now).toISOString(),
          store: { reachable: false, lastReadAt: last.store.lastReadAt, error: errorMessage(err) },
          views: last.views.map((v) => ({
            ...v,
            age: { ...v.age, processingLagMs: v.age.processingLagMs === null ? null : v.age.processingLagMs + since },
          })),
        };
      }
    },
    async close() {
      if (admin && adminConnected) await admin.disconnect().catch(() => undefined);
    },
  };
}

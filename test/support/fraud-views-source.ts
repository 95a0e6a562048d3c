import { seededRandom } from '../../src/simulator/random';
import type {
  FraudAlert,
  View,
  ViewRow,
  ViewsSnapshot,
  ViewsSource,
  WindowSize,
} from '../../src/streams/fraud-views/snapshot';

// A ViewsSource for tests of the serving side (the API, the events, the page) that the test drives:
// `advance` moves event time and the counts, `fail` makes every read throw until `recover`, `hold`
// makes reads hang until released. Its content is realistic (the views of issue 13, two alerts) and seeded.

export interface ScriptedViewsSource extends ViewsSource {
  /** Moves every view's as-of `ms` forward (event time) and adds events; returns the new as-of. */
  advance(ms?: number): string;
  /** Every read throws `message` from now on, until recover(). */
  fail(message: string): void;
  recover(): void;
  /** Reads from now on hang until the returned function is called (a store that stopped answering). */
  hold(): () => void;
  /** Raises one more alert (newest first). */
  raise(alert: Omit<FraudAlert, 'id' | 'raisedAt'>): FraudAlert;
  /** What the next successful read returns. */
  peek(): ViewsSnapshot;
  readonly reads: number;
  /** Most reads in flight at once: the server must never start a second while one is pending. */
  readonly maxInFlight: number;
}

const MERCHANTS = [
  'm-acme-books',
  'm-northwind',
  'm-contoso-travel',
  'm-fabrikam-games',
  'm-tailspin-air',
  'm-wingtip',
];
const REGIONS = ['eu-west', 'us-east', 'ap-south'];
const SIZE_MS: Record<Exclude<WindowSize, 'mtd'>, number> = { '1m': 60_000, '5m': 300_000, '1h': 3_600_000 };

export function createScriptedViewsSource(options: { seed?: number; now?: number } = {}): ScriptedViewsSource {
  const random = seededRandom(options.seed ?? 13);
  const rnd = (): number => random.next();
  const int = (lo: number, hi: number): number => random.int(lo, hi);
  const hex = (n: number): string => Array.from({ length: n }, () => int(0, 15).toString(16)).join('');
  const cards = Array.from({ length: 8 }, () => `tok_${hex(16)}`);
  const bins = ['424242', '555544', '411111', '520082', '379354'];

  // Event time starts just behind the wall clock, as a healthy consumer's would.
  let asOf = (options.now ?? Date.now()) - 800;
  let step = 0;
  let failure: string | undefined;
  let held: Promise<void> | undefined;
  let reads = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let lateEvents = 3;
  const alerts: FraudAlert[] = [];

  const windowOf = (size: WindowSize): ViewRow['window'] => {
    if (size === 'mtd') {
      const d = new Date(asOf);
      const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
      return { size, start: new Date(start).toISOString(), end: new Date(asOf).toISOString() };
    }
    const start = Math.floor(asOf / SIZE_MS[size]) * SIZE_MS[size];
    return { size, start: new Date(start).toISOString(), end: new Date(start + SIZE_MS[size]).toISOString() };
  };

  // Counters that only grow as events arrive, per view and key.
  const counts = new Map<string, number>();
  const bump = (id: string, by: number): number => {
    const n = (counts.get(id) ?? 0) + by;
    counts.set(id, n);
    return n;
  };

  const views = (): View[] => {
    const age = (lag: number) => ({
      asOf: new Date(asOf).toISOString(),
      processingLagMs: 250 + int(0, 400),
      consumerLag: lag,
      windowOpen: true,
    });
    const velocityCard: ViewRow[] = cards.slice(0, 6).map((cardToken, i) => {
      const attempts = bump(`vc-${i}`, int(0, 3)) + (i === 0 ? 41 : 3 + i);
      const declined = Math.round(attempts * (i === 0 ? 0.9 : 0.08));
      return {
        key: { cardToken },
        window: windowOf('5m'),
        metrics: { attempts, authorized: attempts - declined, declined, distinctMerchants: i === 0 ? 5 : 1 },
      };
    });
    const velocityMerchant: ViewRow[] = MERCHANTS.map((merchantId, i) => {
      const attempts = bump(`vm-${i}`, int(5, 40)) + 120;
      const declined = Math.round(attempts * (merchantId === 'm-fabrikam-games' ? 0.62 : 0.05));
      return {
        key: { merchantId },
        window: windowOf('1m'),
        metrics: { attempts, authorized: attempts - declined, declined, distinctCards: Math.round(attempts * 0.7) },
      };
    }).sort((a, b) => Number(b.metrics['attempts']) - Number(a.metrics['attempts']));
    const declineRate: ViewRow[] = REGIONS.map((region) => {
      const attempts = bump(`dr-${region}`, int(50, 90)) + 400;
      const spiking = region === 'ap-south' && step >= 3;
      const rate = spiking ? 0.31 + rnd() * 0.05 : 0.04 + rnd() * 0.015;
      return {
        key: { gateway: `gw-${region}`, region },
        window: windowOf('1m'),
        metrics: {
          attempts,
          declined: Math.round(attempts * rate),
          declineRate: Number(rate.toFixed(4)),
          baseline: region === 'ap-south' ? 0.045 : 0.05,
        },
      };
    }).sort((a, b) => Number(b.metrics['declineRate']) - Number(a.metrics['declineRate']));
    const throughput: ViewRow[] = REGIONS.map((region, i) => ({
      key: { region },
      window: windowOf('1m'),
      metrics: { eventsPerSecond: [410, 265, 140][i]! + int(-25, 25), attempts: bump(`tp-${region}`, int(900, 1500)) },
    }));
    const cardTesting: ViewRow[] = [
      { merchantId: 'm-fabrikam-games', bin: '424242', attempts: 87, small: 81, rate: 0.93 },
      { merchantId: 'm-wingtip', bin: '555544', attempts: 14, small: 6, rate: 0.21 },
    ].map((r) => ({
      key: { merchantId: r.merchantId, bin: r.bin },
      window: windowOf('1m'),
      metrics: { attempts: r.attempts + step, smallAmountAttempts: r.small + step, declineRate: r.rate },
    }));
    const outliers: ViewRow[] = MERCHANTS.slice(0, 3).map((merchantId, i) => ({
      key: { merchantId },
      window: windowOf('1h'),
      metrics: {
        amountMinor: [1_250_000, 480_000, 2_990_000][i]!,
        currency: ['EUR', 'USD', 'EUR'][i]!,
        meanMinor: [8_400, 12_100, 31_000][i]!,
        stddevMinor: [5_200, 9_800, 22_000][i]!,
        zScore: [238.8, 47.7, 134.5][i]!,
      },
    }));
    const newCards: ViewRow[] = cards.slice(2, 6).map((cardToken, i) => ({
      key: { merchantId: MERCHANTS[i + 1]!, cardToken },
      window: windowOf('1h'),
      metrics: {
        firstSeen: new Date(asOf - (i + 1) * 17_000).toISOString(),
        bin: bins[i]!,
        amountMinor: 1_999 + i * 2_500,
      },
    }));
    const ratios: ViewRow[] = MERCHANTS.slice(0, 5).map((merchantId, i) => {
      const payments = 10_000 + i * 3_131;
      const refunds = [210, 95, 640, 88, 31][i]!;
      const disputes = [12, 4, 101, 7, 2][i]!;
      return {
        key: { merchantId },
        window: windowOf('mtd'),
        metrics: {
          payments,
          refunds,
          disputes,
          refundRatio: Number((refunds / payments).toFixed(4)),
          disputeRatio: Number((disputes / payments).toFixed(4)),
        },
      };
    });
    const view = (name: string, title: string, description: string, rows: ViewRow[], lag = int(0, 40)): View => ({
      name,
      title,
      description,
      age: age(lag),
      rows,
      lateEvents: name === 'decline-rate' ? lateEvents : 0,
    });
    return [
      view(
        'decline-rate',
        'Decline rate by gateway × region',
        'Declined / attempts per gateway and region in 1-minute windows, against the trailing 1-hour baseline.',
        declineRate,
      ),
      view(
        'region-throughput',
        'Events per second by region',
        'Payment events per second per region (1-minute windows).',
        throughput,
      ),
      view(
        'card-testing',
        'Card testing',
        'Bursts of small-amount attempts with a high decline rate per merchant and BIN (1-minute windows).',
        cardTesting,
      ),
      view(
        'velocity-card',
        'Velocity per card token',
        'Attempts, authorized and declined per card token, and distinct merchants per card (5-minute windows).',
        velocityCard,
      ),
      view(
        'velocity-merchant',
        'Velocity per merchant',
        'Attempts, authorized and declined per merchant, and distinct card tokens (1-minute windows).',
        velocityMerchant,
      ),
      view(
        'amount-outliers',
        'Large-amount outliers',
        'Amounts above the merchant’s trailing mean + 3σ (1-hour windows), in minor units.',
        outliers,
      ),
      view(
        'new-card-on-merchant',
        'New card on merchant',
        'Card tokens seen for the first time at a merchant.',
        newCards,
      ),
      view(
        'refund-dispute-ratio',
        'Refund and dispute ratios',
        'Refunds and chargebacks over payments per merchant, month to date (Visa’s programme flags ~0.9% disputes).',
        ratios,
      ),
    ];
  };

  const raise = (a: Omit<FraudAlert, 'id' | 'raisedAt'>): FraudAlert => {
    const alert: FraudAlert = {
      ...a,
      id: `${a.rule}/${Object.values(a.key).join('/')}/${a.windowStart}`,
      raisedAt: new Date(Date.parse(a.eventTime) + 400).toISOString(),
    };
    alerts.unshift(alert);
    return alert;
  };
  raise({
    rule: 'card-testing',
    key: { merchantId: 'm-fabrikam-games', bin: '424242' },
    windowStart: windowOf('1m').start,
    value: 0.93,
    threshold: 0.6,
    eventTime: new Date(asOf - 20_000).toISOString(),
    message: '87 attempts in 1 min at m-fabrikam-games on BIN 424242, 81 under 2.00, 93% declined (threshold 60%)',
  });
  raise({
    rule: 'decline-spike',
    key: { gateway: 'gw-ap-south', region: 'ap-south' },
    windowStart: windowOf('1m').start,
    value: 0.33,
    threshold: 0.15,
    eventTime: new Date(asOf - 5_000).toISOString(),
    message: 'gw-ap-south declines 33% of attempts in ap-south against a 4.5% baseline (threshold 15%)',
  });

  const peek = (): ViewsSnapshot => ({
    generatedAt: new Date().toISOString(),
    store: { reachable: true, lastReadAt: new Date().toISOString() },
    views: views(),
    alerts: structuredClone(alerts),
  });
  let current = peek();

  return {
    async snapshot() {
      reads += 1;
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        if (held) await held;
        if (failure !== undefined) throw new Error(failure);
        return { ...structuredClone(current), generatedAt: new Date().toISOString() };
      } finally {
        inFlight -= 1;
      }
    },
    advance(ms = 1000) {
      asOf += ms;
      step += 1;
      lateEvents += int(0, 2);
      current = peek();
      return new Date(asOf).toISOString();
    },
    fail: (message) => void (failure = message),
    recover: () => void (failure = undefined),
    hold() {
      let release!: () => void;
      held = new Promise<void>((resolve) => (release = resolve));
      return () => {
        held = undefined;
        release();
      };
    },
    raise(a) {
      const alert = raise(a);
      current = { ...current, alerts: structuredClone(alerts) };
      return alert;
    },
    peek: () => structuredClone(current),
    get reads() {
      return reads;
    },
    get maxInFlight() {
      return maxInFlight;
    },
  };
}

import { type Batch, CompressionTypes, Kafka, Partitioners, logLevel } from 'kafkajs';
import { type Config, kafkaBrokers, loadConfig, secretSetting } from '../src/config';
import { HEADERS } from '../src/contracts/envelope';
import { createLogger } from '../src/logger';
import { seededRandom } from '../src/simulator/random';
import { up } from '../src/stack/cli';
import { createRiskOwnerPool, migrateRisk } from '../src/stores/migrate';
import { ensureDatabase } from '../src/stack/postgres-service';
import { createRiskPool, readFreshness, riskRulesOf } from '../src/stores/risk';
import { startConsumer } from '../src/streams/consumer-runner';
import { createFraudViews } from '../src/streams/fraud-views/fraud-views-consumer';
import { parseGatewayMessage } from '../src/streams/fraud-views/fraud-views-consumer';
import { type Observation, Watermarks, aggregate, isLate, percentileOf } from '../src/streams/fraud-views/windows';
import { createConsumer, createKafka, topicsFor } from '../src/streams/kafka';

// Fraud-views throughput: the project's consumer (consumer runner + createFraudViews, parsing, windowed
// aggregation and batched upserts into a real risk store with the offsets in the same transaction) against
// a bare kafkajs consumer doing only JSON.parse, on the same seeded raw-gateway topic from its start to its
// end, rounds alternating. The ratio is the figure (target ≥ 0.8×). Beside them, the consumer's own parsing and
// aggregation with no store at all: the ceiling of that ratio whatever the store. Then freshness at a fixed offered load:
// events produced at --rate per second for --seconds, each stamped received-at when sent; freshness =
// store-visible (flush committed) minus received-at. The risk store is a database of its own
// (paylink_bench_risk, RISK_DATABASE_URL's point), emptied before each round, so the dev views are untouched.

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const RECORDS = Number(arg('--records') ?? process.env.BENCH_FRAUD_RECORDS ?? 100_000);
const ROUNDS = Number(arg('--rounds') ?? process.env.BENCH_FRAUD_ROUNDS ?? 3);
const RATE = Number(arg('--rate') ?? process.env.BENCH_FRAUD_RATE ?? 2_000);
const SECONDS = Number(arg('--seconds') ?? process.env.BENCH_FRAUD_SECONDS ?? 15);
const JSON_OUT = process.argv.includes('--json');
const SEED = 13;
const BENCH_DB = 'paylink_bench_risk';

const base = loadConfig();
const runId = `${Date.now().toString(36)}-${process.pid}`;
const log = createLogger('bench-fraud-views');
const say = (line: string): void => void process.stderr.write(`bench: ${line}\n`);

interface BenchRecord {
  key: string;
  value: Buffer;
  headers: Record<string, string>;
}

/** Raw gateway events as the edge publishes them (tokenized card with BIN and last four), 3 regions. */
function gatewayEvent(
  random: ReturnType<typeof seededRandom>,
  i: number,
  eventTime: number,
  receivedAt: string,
): BenchRecord {
  const hex = (len: number): string => {
    let s = '';
    for (let k = 0; k < len; k++) s += ((random.next() * 256) | 0).toString(16).padStart(2, '0');
    return s;
  };
  const region = random.pick(['eu-west', 'us-east', 'ap-south'] as const);
  const refused = random.chance(0.08);
  const paymentId = `bench-${runId}-p${i}`;
  const type = refused ? 'failed' : 'authorized';
  const key = `gw-${region}:${runId}.tx${i}:${type}:1`;
  const event = {
    seq: i + 1,
    eventId: `evt_${hex(12)}`,
    txnRef: `${runId}.tx${i}`,
    paymentReference: paymentId,
    merchantId: `m-${random.int(1, 500)}`,
    factSeq: 1,
    occurredAt: new Date(eventTime).toISOString(),
    card: {
      number: `tok_pan_1_${((random.int(0, 49_999) * 2654435761) % 2 ** 32).toString(16).padStart(32, '0')}`,
      holderName: `tok_name_1_${hex(16)}`,
      expiry: '09/29',
      numberBin: random.pick(['411111', '453201', '510510', '555544', '222300', '601100']),
      numberLast4: String(random.int(0, 9999)).padStart(4, '0'),
    },
    shopper: { email: `tok_email_1_${hex(16)}` },
    eventType: refused ? 'REFUSAL' : 'AUTHORISATION',
    amount: { value: refused ? 0 : random.int(100, 900_000), currency: random.pick(['EUR', 'USD', 'GBP']) },
    ...(refused ? { refusalReason: 'do_not_honor' } : {}),
  };
  return {
    key: paymentId,
    value: Buffer.from(JSON.stringify(event)),
    headers: {
      [HEADERS.idempotencyKey]: key,
      [HEADERS.source]: 'gateway',
      [HEADERS.schema]: 'gateway-event@1',
      [HEADERS.receivedAt]: receivedAt,
      [HEADERS.region]: region,
    },
  };
}

function records(n: number): BenchRecord[] {
  const random = seededRandom(SEED);
  const start = Date.UTC(2026, 0, 1);
  // About 30 per second of event time, so windows fill as in a busy hour.
  return Array.from({ length: n }, (_, i) => gatewayEvent(random, i, start + i * 33, new Date(start).toISOString()));
}

interface Result {
  records: number;
  seconds: number;
  recordsPerSecond: number;
  /** CPU µs per record of this process (Kafka and Postgres are other processes). */
  cpuUsPerRecord: number;
}

function timed(n: number, firstAt: number, cpu: NodeJS.CpuUsage): Result {
  const seconds = (performance.now() - firstAt) / 1000;
  const used = process.cpuUsage(cpu);
  return { records: n, seconds, recordsPerSecond: n / seconds, cpuUsPerRecord: (used.user + used.system) / n };
}

type Ends = Map<number, bigint>;

/**
 * A plain kafkajs consumer (eachBatch, the project's partitionsConsumedConcurrently) from the topic's start
 * until every partition's end in `ends`, handing each batch to `work`; timed from its first batch.
 */
async function readToEnd(
  name: string,
  topic: string,
  round: number,
  ends: Ends,
  work: (batch: Batch) => void,
): Promise<Result> {
  const kafka = new Kafka({ clientId: `paylink-bench-${name}`, brokers: kafkaBrokers(base), logLevel: logLevel.WARN });
  const consumer = kafka.consumer({ groupId: `bench-fv-${name}-${runId}-${round}`, allowAutoTopicCreation: false });
  const remaining = new Map(ends);
  let read = 0;
  let firstAt = 0;
  let cpu = process.cpuUsage();
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    return await new Promise<Result>((resolve, reject) => {
      consumer
        .run({
          partitionsConsumedConcurrently: 3,
          eachBatch: async ({ batch }) => {
            if (firstAt === 0) [firstAt, cpu] = [performance.now(), process.cpuUsage()];
            work(batch);
            read += batch.messages.length;
            if (BigInt(batch.lastOffset()) + 1n >= (remaining.get(batch.partition) ?? 0n))
              remaining.delete(batch.partition);
            if (remaining.size === 0) resolve(timed(read, firstAt, cpu));
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
}

/** A kafkajs consumer that only reads and JSON.parses. */
async function bare(topic: string, round: number, ends: Ends): Promise<Result> {
  let parsed = 0;
  const result = await readToEnd('bare', topic, round, ends, (batch) => {
    for (const m of batch.messages) if (m.value && JSON.parse(m.value.toString('utf8'))) parsed += 1;
  });
  if (parsed === 0) throw new Error('the bare consumer parsed nothing');
  return result;
}

/**
 * The fraud-views consumer's own JavaScript without any store: each record parsed as the consumer parses it
 * (headers decoded, `parseGatewayMessage`, lateness), the batch aggregated into its window deltas as a flush
 * would (`aggregate`). No dedup, no rules, no offsets, no SQL: the ceiling a store of any speed leaves.
 */
async function withoutStore(topic: string, round: number, ends: Ends, smallAmountMinor: number): Promise<Result> {
  const watermarks = new Watermarks();
  let counters = 0;
  const result = await readToEnd('nostore', topic, round, ends, (batch) => {
    const watermark = watermarks.min(new Set([batch.topic]));
    const observations: Observation[] = [];
    let newest: number | undefined;
    for (const m of batch.messages) {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.headers ?? {})) if (v !== undefined) headers[k] = v.toString();
      const parsed = parseGatewayMessage({ headers, value: m.value });
      if (parsed === 'ignored' || parsed === 'unusable') continue;
      observations.push({
        ...parsed,
        topic: batch.topic,
        partition: batch.partition,
        offset: m.offset,
        receivedAt: Date.parse(headers[HEADERS.receivedAt] ?? ''),
        late: isLate(parsed.eventTime, watermark, base.FRAUD_VIEWS_GRACE_MS),
      });
      if (newest === undefined || parsed.eventTime > newest) newest = parsed.eventTime;
    }
    if (newest !== undefined) watermarks.observe(batch.topic, batch.partition, newest);
    counters += aggregate(observations, smallAmountMinor).counts.length;
  });
  if (counters === 0) throw new Error('the aggregation without a store produced no counter row');
  return result;
}

/** The project's fraud-views consumer in this process, its own group, the bench's risk database emptied first. */
async function fraudViews(
  config: Config,
  round: string,
  ends: Ends | undefined,
  /** Without ends: the load to run once the member joined; the round ends when it does. */
  whileRunning?: () => Promise<void>,
): Promise<Result & { counted: number }> {
  await emptyBenchStore(config);
  const kafka = createKafka(config, 'paylink-bench-fraud-views');
  const group = `bench-fv-${runId}-${round}`;
  const consumer = createConsumer(kafka, group);
  const pool = createRiskPool(config, 4);
  const topics = topicsFor(config);
  const remaining = new Map(ends ?? []);
  let firstAt = 0;
  let cpu = process.cpuUsage();
  let done!: () => void;
  const reached = new Promise<void>((resolve) => (done = resolve));
  const views = createFraudViews({
    pool,
    topics,
    group,
    log,
    settings: {
      flushMs: config.FRAUD_VIEWS_FLUSH_MS,
      graceMs: config.FRAUD_VIEWS_GRACE_MS,
      maxPending: config.FRAUD_VIEWS_MAX_PENDING,
      rules: riskRulesOf(config),
    },
    commitOffset: (t, p, o) => consumer.commitOffset(t, p, o),
    // The clock stops when the store holds the topic's end of every partition.
    onFlushed: (partitions) => {
      for (const p of partitions)
        if (BigInt(p.nextOffset) >= (remaining.get(p.partition) ?? 0n)) remaining.delete(p.partition);
      if (ends && remaining.size === 0) done();
    },
  });
  await views.start();
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const running = await startConsumer({
    consumer,
    topics: [topics.rawGateways],
    log,
    stop: stopped,
    handle: async (batch, control) => {
      if (firstAt === 0) [firstAt, cpu] = [performance.now(), process.cpuUsage()];
      return views.handle(batch, control);
    },
  });
  running.done.catch(() => undefined);
  try {
    await (whileRunning ? whileRunning() : reached);
    const result = timed(views.counters.read, firstAt, cpu);
    return { ...result, counted: views.counters.counted };
  } finally {
    await views.stop();
    stop();
    await running.done.catch(() => undefined);
    await consumer.disconnect();
    await pool.end();
  }
}

/** The bench's own risk database (created once), migrated and emptied. */
async function benchStoreConfig(): Promise<Config> {
  const url = new URL(secretSetting(base, 'MIGRATION_DATABASE_URL'));
  // A database of its own on the local stack (created by the stack's superuser, owned by the schemas' owner).
  await ensureDatabase(BENCH_DB, decodeURIComponent(url.username));
  url.pathname = `/${BENCH_DB}`;
  const config: Config = {
    ...base,
    KAFKA_TOPIC_NAMESPACE: `bench-fv-${runId}`,
    RISK_DATABASE_URL: url.toString(),
    RISK_MIGRATION_DATABASE_URL: url.toString(),
  };
  await migrateRisk(config);
  return config;
}

async function emptyBenchStore(config: Config): Promise<void> {
  const owner = createRiskOwnerPool(config);
  try {
    await owner.query(
      `truncate risk.window_counts, risk.window_member_sets, risk.merchant_cards, risk.amount_stats, risk.seen_events,
                risk.alerts, risk.consumed_offsets, risk.freshness`,
    );
  } finally {
    await owner.end();
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const range = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;

async function main(): Promise<void> {
  await up(['kafka', 'postgres']);
  const config = await benchStoreConfig();
  const topics = topicsFor(config);
  const topic = topics.rawGateways;
  const liveConfig: Config = { ...config, KAFKA_TOPIC_NAMESPACE: `bench-fv-live-${runId}` };
  const liveTopic = topicsFor(liveConfig).rawGateways;
  const batch = records(RECORDS);
  const kafka = new Kafka({
    clientId: 'paylink-bench-fraud-views',
    brokers: kafkaBrokers(base),
    logLevel: logLevel.WARN,
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: [topic, liveTopic].map((t) => ({
        topic: t,
        numPartitions: base.KAFKA_TOPIC_PARTITIONS,
        replicationFactor: base.KAFKA_REPLICATION_FACTOR,
      })),
      waitForLeaders: true,
    });
    const producer = kafka.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const t1 = performance.now();
    for (let i = 0; i < batch.length; i += 2_000) {
      await producer.send({ topic, acks: -1, compression: CompressionTypes.None, messages: batch.slice(i, i + 2_000) });
    }
    say(`${RECORDS} records produced to ${topic} in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
    const ends: Ends = new Map(
      (await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)] as const),
    );

    const rounds: {
      bare: Result;
      withoutStore: Result;
      fraudViews: Result;
      ratio: number;
      withoutStoreRatio: number;
    }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      let b: Result;
      let f: Result & { counted: number };
      const small = riskRulesOf(config).smallAmountMinor;
      let n: Result;
      if (round % 2 === 0) {
        b = await bare(topic, round, ends);
        n = await withoutStore(topic, round, ends, small);
        f = await fraudViews(config, String(round), ends);
      } else {
        f = await fraudViews(config, String(round), ends);
        n = await withoutStore(topic, round, ends, small);
        b = await bare(topic, round, ends);
      }
      if (f.counted !== RECORDS) throw new Error(`round ${round + 1}: counted ${f.counted} of ${RECORDS} records`);
      const ratio = f.recordsPerSecond / b.recordsPerSecond;
      const withoutStoreRatio = n.recordsPerSecond / b.recordsPerSecond;
      rounds.push({ bare: b, withoutStore: n, fraudViews: f, ratio, withoutStoreRatio });
      say(`round ${round + 1}: ratio ${ratio.toFixed(2)}, without a store ${withoutStoreRatio.toFixed(2)}`);
    }

    // Freshness at a fixed offered load: RATE events/s for SECONDS, each stamped received-at when sent.
    const random = seededRandom(SEED + 1);
    let sent = 0;
    const offered = async (): Promise<void> => {
      const began = performance.now();
      const tick = 50; // ms: RATE/20 events every 50 ms
      for (let k = 0; (performance.now() - began) / 1000 < SECONDS; k++) {
        const due = began + k * tick;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const now = Date.now();
        const messages = Array.from({ length: Math.round((RATE * tick) / 1000) }, () =>
          gatewayEvent(random, RECORDS + sent++, now, new Date(now).toISOString()),
        );
        await producer.send({ topic: liveTopic, acks: -1, compression: CompressionTypes.None, messages });
      }
      // The last events' flush: a few flush intervals.
      await new Promise((r) => setTimeout(r, 2_000));
    };
    const live = await fraudViews(liveConfig, 'live', undefined, offered);
    const riskPool = createRiskPool(config, 1);
    const freshness = await readFreshness(riskPool, `bench-fv-${runId}-live`);
    await riskPool.end();
    await producer.disconnect();
    const fresh = {
      offeredPerSecond: RATE,
      seconds: SECONDS,
      sent,
      counted: live.counted,
      p50Ms: percentileOf(freshness, 50),
      p99Ms: percentileOf(freshness, 99),
      flushMs: config.FRAUD_VIEWS_FLUSH_MS,
    };
    const ratios = rounds.map((r) => r.ratio);
    if (JSON_OUT) {
      process.stdout.write(
        `${JSON.stringify({ bench: 'fraud-views', records: RECORDS, partitions: base.KAFKA_TOPIC_PARTITIONS, rounds, medianRatio: median(ratios), medianWithoutStoreRatio: median(rounds.map((r) => r.withoutStoreRatio)), freshness: fresh })}\n`,
      );
    } else {
      const row = (name: string, r: Result): string =>
        `  ${name.padEnd(44)} ${r.recordsPerSecond.toFixed(0).padStart(7)} records/s  ${r.seconds.toFixed(2).padStart(6)} s  ${r.cpuUsPerRecord.toFixed(1).padStart(5)} CPU µs/record (this process)`;
      process.stdout.write(
        `Fraud views vs bare kafkajs consumer + JSON.parse (${ROUNDS} rounds, ${RECORDS} raw gateway events, ${base.KAFKA_TOPIC_PARTITIONS} partitions, flush every ${config.FRAUD_VIEWS_FLUSH_MS} ms; target ratio ≥ 0.8)\n`,
      );
      for (const [i, r] of rounds.entries()) {
        process.stdout.write(
          `round ${i + 1}\n${row('bare kafkajs consumer (JSON.parse only)', r.bare)}\n${row('fraud-views JavaScript, no store (ceiling)', r.withoutStore)}\n${row('fraud views (windows + risk store + offsets)', r.fraudViews)}\n  ratio fraud-views/bare: ${r.ratio.toFixed(2)}; without a store: ${r.withoutStoreRatio.toFixed(2)}\n`,
        );
      }
      process.stdout.write(
        `ratio fraud-views/bare over ${ROUNDS} rounds: median ${median(ratios).toFixed(2)}, range ${range(ratios)}; without a store: median ${median(rounds.map((r) => r.withoutStoreRatio)).toFixed(2)}\n`,
      );
      process.stdout.write(
        `freshness (store-visible − received-at) at ${RATE} events/s offered for ${SECONDS} s: p50 ${fresh.p50Ms} ms, p99 ${fresh.p99Ms} ms (${fresh.counted} of ${sent} counted)\n`,
      );
    }
  } finally {
    await admin.deleteTopics({ topics: [topic, liveTopic] }).catch(() => undefined);
    await admin.disconnect();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);

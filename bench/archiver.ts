import { hostname } from 'node:os';
import { gzipSync } from 'node:zlib';
import type { S3Client } from '@aws-sdk/client-s3';
import { CompressionTypes, Kafka, Partitioners, logLevel } from 'kafkajs';
import { kafkaBrokers, loadConfig } from '../src/config';
import { HEADERS } from '../src/contracts/envelope';
import { createLogger } from '../src/logger';
import { seededRandom } from '../src/simulator/random';
import { up } from '../src/stack/cli';
import { ensureArchiveBucket } from '../src/stores/archive';
import { createS3Client } from '../src/stores/s3';
import { archiveLine } from '../src/streams/archiver/layout';
import { createArchiver } from '../src/streams/archiver/archiver';
import { startConsumer } from '../src/streams/consumer-runner';
import { createConsumer, createKafka } from '../src/streams/kafka';

// Archiver throughput: the project's archiver (consumer runner + createArchiver, real S3 PUTs and
// manifest commits) against a bare kafkajs consumer, reading the same seeded topic from its start to
// its end, round after round in one run. The ratio is the figure (target ≥ 0.8×); absolute numbers move
// with the machine's load. Also bytes stored per event and S3 PUT-class requests per million events.

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const RECORDS = Number(arg('--records') ?? process.env.BENCH_ARCHIVER_RECORDS ?? 100_000);
// Bare and archiver alternate, round after round, so a neighbour's load burst hits both sides alike.
const ROUNDS = Number(arg('--rounds') ?? process.env.BENCH_ARCHIVER_ROUNDS ?? 3);
const JSON_OUT = process.argv.includes('--json');
const SEED = 12;
const MIN_BYTES = 1024;
const MAX_BYTES = 4096;

const config = loadConfig();
const PARTITIONS = config.KAFKA_TOPIC_PARTITIONS;
const runId = `${Date.now().toString(36)}-${process.pid}`;
const TOPIC = `paylink.bench-archiver-${runId}.raw.webhooks.v1`;
const log = createLogger('bench-archiver');
const say = (line: string): void => void process.stderr.write(`bench: ${line}\n`);

interface BenchRecord {
  key: string;
  value: Buffer;
  headers: Record<string, string>;
}

/** Webhook-shaped events as the edge publishes them to raw.webhooks: tokenized PII, ids, free text, 1–4 KB. */
function records(n: number): { records: BenchRecord[]; valueBytes: number; ndjsonBytes: number } {
  const random = seededRandom(SEED);
  const hex = (len: number): string => {
    let s = '';
    for (let i = 0; i < len; i++) s += ((random.next() * 256) | 0).toString(16).padStart(2, '0');
    return s;
  };
  const out: BenchRecord[] = [];
  let valueBytes = 0;
  let ndjsonBytes = 0;
  for (let i = 0; i < n; i++) {
    const at = new Date(1767225600000 + i * 9).toISOString();
    const target = random.int(MIN_BYTES, MAX_BYTES);
    const paymentId = `pay_${hex(12)}`;
    const event: Record<string, unknown> = {
      id: `evt_${hex(12)}`,
      type: random.pick(['payment.captured', 'payment.authorized', 'refund.created', 'payment.failed']),
      created: at,
      payment: {
        id: paymentId,
        amount: { minor: random.int(100, 900_000), currency: random.pick(['EUR', 'USD', 'GBP']) },
        merchant: `m_${random.int(1, 500)}`,
        card: `tok_pan_1_${hex(16)}`,
        email: `tok_email_1_${hex(16)}`,
        phone: `tok_phone_1_${hex(16)}`,
        region: random.pick(['eu-west', 'us-east', 'ap-south']),
      },
      partner: { id: 'acme-pay', scheme: 'stripe', attempt: random.int(1, 3), signature: hex(32) },
    };
    const metadata: Record<string, string> = {};
    let size = JSON.stringify(event).length + 14;
    for (let k = 0; size < target; k++) {
      const value = `${random.pick(['settled', 'pending', 'order', 'customer note'])} ${hex(6)} ${random.int(0, 1e6)}`;
      metadata[`field_${k}`] = value;
      size += `"field_${k}":"${value}",`.length;
    }
    event.metadata = metadata;
    const value = Buffer.from(JSON.stringify(event));
    const headers = {
      [HEADERS.idempotencyKey]: `webhook:acme-pay:${String(event.id)}`,
      [HEADERS.traceId]: hex(16),
      [HEADERS.source]: 'webhook',
      [HEADERS.schema]: 'webhook.stripe@1',
      [HEADERS.receivedAt]: at,
    };
    valueBytes += value.length;
    ndjsonBytes +=
      archiveLine({
        offset: String(i),
        timestamp: String(Date.parse(at)),
        key: Buffer.from(paymentId),
        value,
        rawHeaders: Object.entries(headers).map(([k, v]) => [k, Buffer.from(v)] as const),
      }).length + 1;
    out.push({ key: paymentId, value, headers });
  }
  return { records: out, valueBytes, ndjsonBytes };
}

/**
 * CPU µs per record of the archiver's own steps, in this process without I/O, on up to 20,000 of the
 * records: what the archiver must do beyond a bare read (the ratio's explanation).
 */
function stageCosts(batch: readonly BenchRecord[]) {
  const sample = batch.slice(0, 20_000).map((r, i) => ({
    offset: String(i),
    timestamp: '1767225600000',
    key: Buffer.from(r.key),
    value: r.value,
    rawHeaders: Object.entries(r.headers).map(([k, v]) => [k, Buffer.from(v)] as const),
  }));
  const usPerRecord = (work: () => unknown): number => {
    const t = performance.now();
    work();
    return Math.round(((performance.now() - t) * 1000) / sample.length);
  };
  let lines: string[] = [];
  const archiveLineUs = usPerRecord(() => (lines = sample.map(archiveLine)));
  const ndjson = Buffer.from(`${lines.join('\n')}\n`);
  let fast = 0;
  return {
    archiveLine: archiveLineUs,
    gzip: usPerRecord(() => gzipSync(ndjson)),
    // The archiver's level is zlib's default (6); level 1 for the trade-off in docs/archive.md.
    gzipLevel1: usPerRecord(() => (fast = gzipSync(ndjson, { level: 1 }).length)),
    gzipLevel1BytesPerRecord: Math.round(fast / sample.length),
    gzipBytesPerRecord: Math.round(gzipSync(ndjson).length / sample.length),
  };
}

/** Kafka's end offset of each partition of the bench topic (what "to its end" means). */
type Ends = Map<number, bigint>;

interface Result {
  records: number;
  seconds: number;
  recordsPerSecond: number;
  /** CPU µs per record of this process (the consumer side; Kafka and the S3 server are other processes). */
  cpuUsPerRecord: number;
}

interface ArchiverResult extends Result {
  objects: number;
  gzipBytes: number;
  /** S3 requests during the run by command (PUT-class: Put*, List*; the rest are GET-class). */
  s3Requests: Record<string, number>;
}

/** From the first batch to the last record read; group join is left out (the same for both). */
function timed(records: number, firstAt: number, cpu: NodeJS.CpuUsage): Result {
  const seconds = (performance.now() - firstAt) / 1000;
  const used = process.cpuUsage(cpu);
  return {
    records,
    seconds,
    recordsPerSecond: records / seconds,
    cpuUsPerRecord: (used.user + used.system) / records,
  };
}

/** A kafkajs consumer that only reads: eachBatch, the same partitionsConsumedConcurrently as the project's. */
async function bare(round: number, ends: Ends): Promise<Result> {
  const kafka = new Kafka({ clientId: 'paylink-bench-bare', brokers: kafkaBrokers(config), logLevel: logLevel.WARN });
  const consumer = kafka.consumer({ groupId: `bench-bare-${runId}-${round}`, allowAutoTopicCreation: false });
  const remaining = new Map(ends);
  let read = 0;
  let bytes = 0;
  let firstAt = 0;
  let cpu = process.cpuUsage();
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [TOPIC], fromBeginning: true });
    return await new Promise<Result>((resolve, reject) => {
      consumer
        .run({
          partitionsConsumedConcurrently: 3,
          eachBatch: async ({ batch }) => {
            if (firstAt === 0) [firstAt, cpu] = [performance.now(), process.cpuUsage()];
            for (const m of batch.messages) bytes += m.value?.length ?? 0;
            read += batch.messages.length;
            if (BigInt(batch.lastOffset()) + 1n >= (remaining.get(batch.partition) ?? 0n))
              remaining.delete(batch.partition);
            if (remaining.size === 0 && bytes > 0) resolve(timed(read, firstAt, cpu));
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
}

/** Counts the S3 requests the archiver's client sends, by command. */
function countRequests(s3: S3Client): Record<string, number> {
  const counts: Record<string, number> = {};
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      counts[context.commandName ?? 'unknown'] = (counts[context.commandName ?? 'unknown'] ?? 0) + 1;
      return next(args);
    },
    { step: 'initialize', name: 'benchRequestCounter' },
  );
  return counts;
}

/** The project's archiver as archiver-main runs it, in this process: own group, own bucket, 1 s tick. */
async function archiver(round: number, ends: Ends): Promise<ArchiverResult> {
  const kafka = createKafka(config, 'paylink-bench-archiver');
  const admin = kafka.admin();
  const consumer = createConsumer(kafka, `bench-archiver-${runId}-${round}`);
  const s3 = createS3Client(config);
  const bucket = `paylink-bench-archiver-${runId}-${round}`;
  await admin.connect();
  await ensureArchiveBucket(s3, bucket, config.ARCHIVE_RETENTION_DAYS);
  const requests = countRequests(s3);
  const archive = createArchiver({
    s3,
    bucket,
    consumer,
    logStart: async (topic, partition) =>
      (await admin.fetchTopicOffsets(topic)).find((p) => p.partition === partition)?.low ?? '0',
    log,
    maxObjectBytes: config.ARCHIVE_OBJECT_MAX_BYTES,
    maxObjectAgeMs: config.ARCHIVE_OBJECT_MAX_AGE_MS,
    maxBufferBytes: config.ARCHIVE_BUFFER_MAX_BYTES,
    retentionDays: config.ARCHIVE_RETENTION_DAYS,
    orphanGraceMs: config.ARCHIVE_ORPHAN_GRACE_MS,
    writer: `${hostname()}/${process.pid}/bench`,
  });
  consumer.onJoin(() => archive.reset());
  const remaining = new Map(ends);
  let firstAt = 0;
  let cpu = process.cpuUsage();
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const archived = new Promise<Result>((resolve, reject) => {
    const tick = setInterval(
      () => void archive.tick().catch(reject),
      Math.min(1_000, config.ARCHIVE_OBJECT_MAX_AGE_MS),
    );
    void startConsumer({
      consumer,
      topics: [TOPIC],
      log,
      dependency: 's3',
      stop: stopped,
      handle: async (batch, control) => {
        if (firstAt === 0) [firstAt, cpu] = [performance.now(), process.cpuUsage()];
        const outcome = await archive.handle(batch, control);
        if (BigInt(batch.nextOffset) >= (remaining.get(batch.partition) ?? 0n)) remaining.delete(batch.partition);
        if (remaining.size === 0) {
          remaining.set(-1, 0n); // flush once
          // Read to the end: what is still open closes now, as on SIGTERM; the end is the last manifest commit.
          void archive
            .flushAll()
            .then(() => {
              clearInterval(tick);
              resolve(timed(archive.counters.records, firstAt, cpu));
            })
            .catch(reject);
        }
        return outcome;
      },
    }).then((running) => running.done.catch(reject), reject);
  });
  try {
    const result = await archived;
    return {
      ...result,
      objects: archive.counters.objects,
      gzipBytes: archive.counters.bytes,
      s3Requests: { ...requests },
    };
  } finally {
    stop();
    await consumer.disconnect();
    await admin.disconnect();
    s3.destroy();
  }
}

const isPutClass = (command: string): boolean => /^(Put|List|Copy|Create|Post)/.test(command.replace(/Command$/, ''));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const range = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;

async function main(): Promise<void> {
  await up(['kafka', 's3']);
  const t0 = performance.now();
  const { records: batch, valueBytes, ndjsonBytes } = records(RECORDS);
  say(`${RECORDS} records prepared in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const stages = stageCosts(batch);
  const kafka = new Kafka({
    clientId: 'paylink-bench-archiver',
    brokers: kafkaBrokers(config),
    logLevel: logLevel.WARN,
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: [{ topic: TOPIC, numPartitions: PARTITIONS, replicationFactor: config.KAFKA_REPLICATION_FACTOR }],
      waitForLeaders: true,
    });
    const producer = kafka.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const t1 = performance.now();
    for (let i = 0; i < batch.length; i += 2_000) {
      await producer.send({
        topic: TOPIC,
        acks: -1,
        compression: CompressionTypes.None,
        messages: batch.slice(i, i + 2_000),
      });
    }
    await producer.disconnect();
    say(`produced to ${TOPIC} in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
    const ends: Ends = new Map(
      (await admin.fetchTopicOffsets(TOPIC)).map((p) => [p.partition, BigInt(p.high)] as const),
    );

    const rounds: { bare: Result; archiver: ArchiverResult; ratio: number }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // They take turns going first, so neither always follows the other.
      let b: Result;
      let a: ArchiverResult;
      if (round % 2 === 0) {
        b = await bare(round, ends);
        a = await archiver(round, ends);
      } else {
        a = await archiver(round, ends);
        b = await bare(round, ends);
      }
      if (a.records !== RECORDS) throw new Error(`round ${round + 1}: archived ${a.records} of ${RECORDS} records`);
      rounds.push({ bare: b, archiver: a, ratio: a.recordsPerSecond / b.recordsPerSecond });
      say(`round ${round + 1}: ratio ${(a.recordsPerSecond / b.recordsPerSecond).toFixed(2)}`);
    }

    const last = rounds[rounds.length - 1]!.archiver;
    const putClass = Object.entries(last.s3Requests)
      .filter(([c]) => isPutClass(c))
      .reduce((s, [, n]) => s + n, 0);
    const ndjsonPerEvent = ndjsonBytes / RECORDS;
    // Objects that close by size; this run's last object per partition closes early, at the end of the topic.
    const eventsPerFullObject = config.ARCHIVE_OBJECT_MAX_BYTES / ndjsonPerEvent;
    const figures = {
      valueBytesPerEvent: Math.round(valueBytes / RECORDS),
      ndjsonBytesPerEvent: Math.round(ndjsonPerEvent),
      gzipBytesPerEvent: Math.round(last.gzipBytes / last.records),
      objects: last.objects,
      s3Requests: last.s3Requests,
      putsPerMillionEvents: Math.round((putClass / last.records) * 1e6),
      putsPerMillionEventsFullObjects: Math.round((4 / eventsPerFullObject) * 1e6),
    };
    const ratios = rounds.map((r) => r.ratio);
    if (JSON_OUT) {
      process.stdout.write(
        `${JSON.stringify({ bench: 'archiver', records: RECORDS, partitions: PARTITIONS, objectMaxBytes: config.ARCHIVE_OBJECT_MAX_BYTES, rounds, medianRatio: median(ratios), stageCpuUs: { archiveLine: stages.archiveLine, gzip: stages.gzip, gzipLevel1: stages.gzipLevel1 }, sampleGzipBytesPerRecord: { level6: stages.gzipBytesPerRecord, level1: stages.gzipLevel1BytesPerRecord }, ...figures })}\n`,
      );
    } else {
      const row = (name: string, r: Result): string =>
        `  ${name.padEnd(40)} ${r.recordsPerSecond.toFixed(0).padStart(7)} records/s  ${r.seconds.toFixed(2).padStart(6)} s  ${r.cpuUsPerRecord.toFixed(1).padStart(5)} CPU µs/record (this process)`;
      process.stdout.write(
        `Archiver vs bare kafkajs consumer (${ROUNDS} rounds, ${RECORDS} records of ${MIN_BYTES}–${MAX_BYTES} B, ${PARTITIONS} partitions, ${config.ARCHIVE_OBJECT_MAX_BYTES / 2 ** 20} MiB objects; target ratio ≥ 0.8)\n`,
      );
      for (const [i, r] of rounds.entries()) {
        process.stdout.write(
          `round ${i + 1}\n${row('bare kafkajs consumer', r.bare)}\n${row('archiver (S3 objects + manifest commits)', r.archiver)}\n  ratio archiver/bare: ${r.ratio.toFixed(2)}\n`,
        );
      }
      process.stdout.write(
        `stored: ${figures.valueBytesPerEvent} value bytes → ${figures.ndjsonBytesPerEvent} NDJSON bytes → ${figures.gzipBytesPerEvent} gzip bytes per event (${figures.objects} objects)\n`,
      );
      process.stdout.write(
        `S3 PUT-class requests per million events: ${figures.putsPerMillionEvents} in this run (${Object.entries(
          figures.s3Requests,
        )
          .map(([c, n]) => `${c.replace(/Command$/, '')} ${n}`)
          .join(', ')}), ${figures.putsPerMillionEventsFullObjects} with full objects\n`,
      );
      process.stdout.write(
        `archiver stages, CPU µs per record in one process (no I/O): archiveLine ${stages.archiveLine}; gzip ${stages.gzip} (level 6, the archiver's); gzip level 1 ${stages.gzipLevel1}\n`,
      );
      process.stdout.write(
        `gzip bytes per record of the same NDJSON: level 6 ${stages.gzipBytesPerRecord}, level 1 ${stages.gzipLevel1BytesPerRecord}\n`,
      );
      process.stdout.write(
        `ratio archiver/bare over ${ROUNDS} rounds: median ${median(ratios).toFixed(2)}, range ${range(ratios)}\n`,
      );
    }
  } finally {
    // The objects stay: they are under COMPLIANCE retention (moto keeps them in memory until `stack down`).
    await admin.deleteTopics({ topics: [TOPIC] }).catch(() => undefined);
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

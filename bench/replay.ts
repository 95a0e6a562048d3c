import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../src/config';
import { edgeEnvelope } from '../src/contracts/envelope';
import { gatewayEventToFact } from '../src/contracts/gateway-event';
import { tokenizerFromConfig } from '../src/ingest/tokenize';
import { CURRENT_SCHEMAS } from '../src/quality/schema-registry';
import { splitByChannel } from '../src/simulator/channels';
import { encodeGatewayEvent } from '../src/simulator/gateway-feed';
import { simulatePayments } from '../src/simulator/payments';
import { startBackfill, waitForBackfill } from '../src/starters/replay';
import { ensureArchiveBucket, getArchiveObject, putArchiveObject, putManifestEntry } from '../src/stores/archive';
import { createPool } from '../src/stores/postgres';
import { createS3Client } from '../src/stores/s3';
import { type ManifestEntry, archiveLine, objectKey, parseArchiveLines } from '../src/streams/archiver/layout';
import { edgeTopicsOf, topicsFor } from '../src/streams/kafka';
import { createPaymentWorker } from '../src/workers/payment-worker';

// bench:replay — issue 12's second ratio. The same archive objects, read two ways in one run, rounds
// alternating: a plain read (GET, gunzip, parse the lines) and a backfill (the Backfill workflow on a real
// worker: survey the manifests, then GET, gunzip, parse, the live edge's mapping, the inbox lookup). The
// backfill is a dry run, so the bench writes nothing to the inbox or the ledger: it measures the replay path
// minus the inbox writes of facts that are new (a replay of a routed window has none). Records are the
// gateway connector's raw records, built by its own envelope and tokenizer, in objects the archiver's
// store functions write with their manifest entries.

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
};
const RECORDS = Number(arg('--records') ?? process.env.BENCH_REPLAY_RECORDS ?? 40_000);
const ROUNDS = Number(arg('--rounds') ?? process.env.BENCH_REPLAY_ROUNDS ?? 3);
const OBJECT_RECORDS = 5_000;
const JSON_OUT = process.argv.includes('--json');
const SEED = 14;

const config = loadConfig();
const runId = `${Date.now().toString(36)}-${process.pid}`;
const namespace = `bench-replay-${runId}`;
const topics = topicsFor({ KAFKA_TOPIC_NAMESPACE: namespace });
const bucket = `paylink-bench-replay-${runId}`;
const say = (line: string): void => void process.stderr.write(`bench: ${line}\n`);

if (!Number.isInteger(RECORDS) || RECORDS < OBJECT_RECORDS)
  throw new Error(`--records must be a whole number of at least ${OBJECT_RECORDS}`);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error('--rounds must be a whole number above 0');

/** The gateway connector's raw records for RECORDS facts, as archive lines with their Kafka timestamps. */
function archiveLines(): { lines: string[]; timestamps: number[] } {
  const tokenizer = tokenizerFromConfig(config);
  const envelope = edgeEnvelope('gateway', edgeTopicsOf(topics, 'rawGateways'), {
    raw: CURRENT_SCHEMAS['gateway-event'],
    fact: CURRENT_SCHEMAS['payment-fact'],
  });
  const lines: string[] = [];
  const timestamps: number[] = [];
  const start = Date.now() - 60_000;
  for (let batch = 0; lines.length < RECORDS; batch++) {
    const facts = splitByChannel(
      simulatePayments({ payments: 2_000, seed: SEED + batch, duplicateRate: 0, runId: `${namespace}-${batch}` })
        .deliveries,
    ).gateway;
    for (const [i, fact] of facts.entries()) {
      if (lines.length >= RECORDS) break;
      const gw = { gateway: `gw-${fact.region}`, region: fact.region };
      const event = tokenizer.tokenize({ seq: i + 1, ...encodeGatewayEvent(fact, gw.gateway) }).payload;
      const live = gatewayEventToFact(gw, event);
      const receivedAt = new Date(start + lines.length).toISOString();
      const [raw] = envelope(receivedAt, event, live, { key: null, idempotencyKey: 'unused' });
      lines.push(
        archiveLine({
          offset: String(lines.length),
          timestamp: String(Date.parse(receivedAt)),
          key: raw.key === null ? null : Buffer.from(raw.key),
          value: raw.value,
          rawHeaders: Object.entries(raw.headers).map(([n, v]) => [n, Buffer.from(v)]),
        }),
      );
      timestamps.push(Date.parse(receivedAt));
    }
  }
  return { lines, timestamps };
}

/** Objects of OBJECT_RECORDS lines on one partition, each committed by its manifest entry. */
async function writeArchive(s3: ReturnType<typeof createS3Client>): Promise<{ keys: ManifestEntry[]; bytes: number }> {
  const { lines, timestamps } = archiveLines();
  const topic = topics.rawGateways;
  const entries: ManifestEntry[] = [];
  let bytes = 0;
  for (let first = 0, seq = 0; first < lines.length; first += OBJECT_RECORDS, seq++) {
    const last = Math.min(lines.length, first + OBJECT_RECORDS) - 1;
    const body = gzipSync(`${lines.slice(first, last + 1).join('\n')}\n`);
    bytes += body.length;
    const key = objectKey(topic, 0, String(first), String(last), timestamps[first]!);
    const { versionId } = await putArchiveObject(s3, bucket, key, body);
    const entry: ManifestEntry = {
      version: 1,
      topic,
      partition: 0,
      seq,
      from: String(first),
      to: String(last + 1),
      firstOffset: String(first),
      lastOffset: String(last),
      records: last - first + 1,
      key,
      versionId,
      bytes: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
      minTimestamp: String(timestamps[first]),
      maxTimestamp: String(timestamps[last]),
      writtenAt: new Date().toISOString(),
      writer: `${hostname()}/${process.pid}/bench-replay`,
    };
    if ((await putManifestEntry(s3, bucket, entry)) !== 'written') throw new Error(`manifest seq ${seq} was taken`);
    entries.push(entry);
  }
  return { keys: entries, bytes };
}

interface Round {
  plainPerSecond: number;
  replayPerSecond: number;
  /** The workflow's own figure: records over its active time (survey and scheduling included). */
  workflowPerSecond: number;
  /** Records per second inside the replay activities only. */
  activityPerSecond: number;
}

async function main(): Promise<void> {
  const s3 = createS3Client(config);
  const pool = createPool(config);
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  const workerConnection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const taskQueue = `bench-replay-${runId}`;
  try {
    await ensureArchiveBucket(s3, bucket, config.ARCHIVE_RETENTION_DAYS);
    say(`writing ${RECORDS} gateway raw records as archive objects of ${OBJECT_RECORDS} to ${bucket}`);
    const { keys: entries, bytes } = await writeArchive(s3);
    say(`bundling the workflows for an in-process payment worker on ${taskQueue}`);
    const worker = await createPaymentWorker({
      connection: workerConnection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      taskQueue,
      backfill: { s3, client },
    });
    const running = worker.run();
    const rounds: Round[] = [];
    try {
      const from = new Date(Number(entries[0]!.minTimestamp)).toISOString();
      const to = new Date(Number(entries.at(-1)!.maxTimestamp) + 1).toISOString();
      for (let round = 1; round <= ROUNDS; round++) {
        let began = performance.now();
        let read = 0;
        for (const e of entries) {
          const body = await getArchiveObject(s3, bucket, e.key, e.versionId);
          read += parseArchiveLines(gunzipSync(body).toString('utf8')).length;
        }
        const plainMs = performance.now() - began;
        if (read !== RECORDS) throw new Error(`the plain read found ${read} records, not ${RECORDS}`);

        began = performance.now();
        const id = `bench-${runId}-${round}`;
        await startBackfill(
          client,
          { KAFKA_TOPIC_NAMESPACE: namespace, S3_BUCKET: bucket },
          { id, from, to, sources: ['gateways'], dryRun: true, ratePerSecond: 0 },
          { taskQueue, sliceMs: 60_000 },
        );
        const state = await waitForBackfill(client, id);
        const replayMs = performance.now() - began;
        if (state.records !== RECORDS || state.facts !== RECORDS || state.quarantined !== 0)
          throw new Error(
            `the backfill read ${state.records} records, ${state.facts} facts, ${state.quarantined} quarantined; expected ${RECORDS} facts`,
          );
        const r: Round = {
          plainPerSecond: Math.round((RECORDS / plainMs) * 1000),
          replayPerSecond: Math.round((RECORDS / replayMs) * 1000),
          workflowPerSecond: Math.round(state.recordsPerSecond),
          activityPerSecond: state.busyMs > 0 ? Math.round((RECORDS / state.busyMs) * 1000) : 0,
        };
        rounds.push(r);
        say(
          `round ${round}: plain read ${r.plainPerSecond} records/s, backfill ${r.replayPerSecond} records/s ` +
            `(×${(r.replayPerSecond / r.plainPerSecond).toFixed(2)}; inside its activities ${r.activityPerSecond})`,
        );
      }
    } finally {
      worker.shutdown();
      await running;
    }
    const ratios = rounds.map((r) => r.replayPerSecond / r.plainPerSecond);
    const median = [...ratios].sort((a, b) => a - b)[Math.floor(ratios.length / 2)]!;
    const result = {
      records: RECORDS,
      objects: entries.length,
      gzipBytesPerRecord: Math.round(bytes / RECORDS),
      rounds,
      ratio: {
        median: Number(median.toFixed(2)),
        min: Number(Math.min(...ratios).toFixed(2)),
        max: Number(Math.max(...ratios).toFixed(2)),
      },
      target: 0.5,
    };
    if (JSON_OUT) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else {
      console.log('\nreplay (dry-run backfill) vs plain read of the same archive objects');
      console.log('round  plain records/s  backfill records/s  inside activities  backfill/plain');
      for (const [i, r] of rounds.entries())
        console.log(
          `${String(i + 1).padStart(5)}  ${String(r.plainPerSecond).padStart(15)}  ${String(r.replayPerSecond).padStart(18)}  ${String(r.activityPerSecond).padStart(17)}  ${ratios[i]!.toFixed(2).padStart(14)}`,
        );
      console.log(`median ratio ${result.ratio.median} (${result.ratio.min}–${result.ratio.max}), target ≥ 0.5`);
    }
  } finally {
    s3.destroy();
    await pool.end();
    await connection.close();
    await workerConnection.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

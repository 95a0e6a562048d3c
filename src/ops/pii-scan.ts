import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import type { Pool } from 'pg';
import { type Config, loadConfig } from '../config';
import { type PiiFinding, scanForPii } from '../quality/pii-scanner';
import { createLogger, errorMessage } from '../logger';
import { dataDir } from '../stack/service';
import { createPool } from '../stores/postgres';
import { createS3Client } from '../stores/s3';
import { connectSnowflake } from '../stores/snowflake';
import { parseArchiveLines, parseObjectKey } from '../streams/archiver/layout';
import { type KafkaClient, createKafka, readTopics } from '../streams/kafka';

// `npm run pii-scan`: proves no raw PAN/PII sits outside the edge and the vault — in any Kafka
// topic (key, headers, value), S3 object, non-vault table, warehouse table, log line or Temporal
// workflow payload. Exit 1 on any finding; each finding names its exact place.

export interface PiiLeak {
  store: 'kafka' | 's3' | 'postgres' | 'snowflake' | 'logs' | 'temporal';
  /** The exact place: topic/partition@offset and part, schema.table.column, object key, file:line, workflow event. */
  where: string;
  kind: PiiFinding['kind'];
  sample: string;
}

export interface PiiScanReport {
  /** Items read per store: messages, rows, objects, log lines, workflow histories. */
  scanned: Record<PiiLeak['store'], number>;
  /** Wall time per store; the stores are read at the same time, so these overlap. */
  elapsedMs: Record<PiiLeak['store'], number>;
  leaks: PiiLeak[];
}

const MAX_ITEMS_PER_SOURCE = 200_000;
const MAX_WORKFLOWS = 20_000;
// Histories in flight at once: one RPC each, and the server is shared with the pipeline.
const TEMPORAL_CONCURRENCY = 16;

const STORES = ['kafka', 's3', 'postgres', 'snowflake', 'temporal', 'logs'] as const;

export async function scanStores(config: Config): Promise<PiiScanReport> {
  const scanned = { kafka: 0, s3: 0, postgres: 0, snowflake: 0, logs: 0, temporal: 0 };
  const elapsedMs = { ...scanned };
  const leaks = new Map<PiiLeak['store'], PiiLeak[]>(STORES.map((s) => [s, []]));
  const scan: Scan = {
    item: (store) => {
      scanned[store] += 1;
    },
    text: (store, where, text) => {
      for (const f of scanForPii(text)) leaks.get(store)!.push({ store, where, kind: f.kind, sample: f.sample });
    },
  };
  const readers: Record<PiiLeak['store'], () => Promise<void>> = {
    kafka: () => scanKafka(createKafka(config, 'paylink-pii-scan'), scan),
    s3: () => scanS3(config, scan),
    postgres: async () => {
      // As the owner, which can read every table; the vault holds originals by design and is skipped by name.
      const pool = createPool(config, 2, 'MIGRATION_DATABASE_URL');
      try {
        await scanPostgres(pool, scan);
      } finally {
        await pool.end();
      }
    },
    snowflake: () => scanSnowflake(config, scan),
    temporal: () => scanTemporal(config, scan),
    logs: () => scanLogs(scan),
  };
  // The stores are read side by side: one waiting on its server (Temporal, mostly) leaves the CPU to
  // the scanning of another. Every reader closes its own clients before the scan returns or throws.
  const started = performance.now();
  const results = await Promise.allSettled(
    STORES.map(async (store) => {
      await readers[store]();
      elapsedMs[store] = Math.round(performance.now() - started);
    }),
  );
  const failed = STORES.flatMap((store, i) => {
    const r = results[i]!;
    return r.status === 'rejected' ? [{ store, reason: r.reason as unknown }] : [];
  });
  if (failed.length > 0) {
    throw new AggregateError(
      failed.map((f) => f.reason),
      `pii scan failed in ${failed.map((f) => `${f.store}: ${errorMessage(f.reason)}`).join('; ')}`,
    );
  }
  // Leaks in a fixed store order, whichever store finished first.
  return { scanned, elapsedMs, leaks: STORES.flatMap((s) => leaks.get(s)!) };
}

interface Scan {
  /** Counts one item read from `store`. */
  item(store: PiiLeak['store']): void;
  /** Scans one part of an item; a finding is reported at `where`. */
  text(store: PiiLeak['store'], where: string, text: string): void;
}

/** Every message of every project topic, from the start to the current end: key, each header, value. */
async function scanKafka(kafka: KafkaClient, scan: Scan): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const topics = (await admin.listTopics()).filter((t) => t.startsWith('paylink.'));
  const ends = new Map<string, Map<number, bigint>>();
  for (const t of topics)
    ends.set(t, new Map((await admin.fetchTopicOffsets(t)).map((o) => [o.partition, BigInt(o.high)])));
  await admin.disconnect();
  let remaining = [...ends.values()].reduce((s, m) => s + [...m.values()].filter((h) => h > 0n).length, 0);
  if (remaining === 0) return;
  let seen = 0;
  const done = await readTopics(
    kafka,
    new Map(topics.map((t) => [t, 'beginning'] as const)),
    (topic, partition, message) => {
      const at = `${topic}/${partition}@${message.offset}`;
      scan.item('kafka');
      if (message.key) scan.text('kafka', `${at} key`, message.key.toString());
      for (const [name, v] of Object.entries(message.headers)) {
        scan.text('kafka', `${at} header ${name}`, name);
        scan.text('kafka', `${at} header ${name}`, v);
      }
      if (message.value) scan.text('kafka', `${at} value`, message.value.toString());
      return ++seen >= MAX_ITEMS_PER_SOURCE;
    },
    120_000,
    // The end is where the reader's position passes the high watermark, transaction markers included.
    (topic, partition, next) => {
      const partitions = ends.get(topic)!;
      const high = partitions.get(partition) ?? 0n;
      if (high > 0n && next >= high) {
        partitions.set(partition, 0n);
        remaining -= 1;
      }
      return remaining === 0;
    },
  );
  if (!done) throw new Error('kafka scan did not reach the end of the topics within 120 s');
}

async function scanS3(config: Config, scan: Scan): Promise<void> {
  const s3 = createS3Client(config);
  try {
    let token: string | undefined;
    let n = 0;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: config.S3_BUCKET, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        const where = `s3://${config.S3_BUCKET}/${o.Key!}`;
        const got = await s3.send(new GetObjectCommand({ Bucket: config.S3_BUCKET, Key: o.Key! }));
        const bytes = Buffer.from(await got.Body!.transformToByteArray());
        scan.item('s3');
        scan.text('s3', `${where} key`, o.Key!);
        // The archive writes gzip'd NDJSON: read what a reader of the object would read.
        const text =
          bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes).toString('utf8') : bytes.toString('utf8');
        if (parseObjectKey(o.Key!)) scanArchiveRecords(scan, where, text);
        else scan.text('s3', where, text);
        if (++n >= MAX_ITEMS_PER_SOURCE) return;
      }
      token = page.NextContinuationToken;
    } while (token);
  } finally {
    s3.destroy();
  }
}

/**
 * An archive object's records hold their bytes as base64, which hides a card number from a text scan:
 * each record's key, header names and values, and value are scanned decoded, at `<object>@<offset>`.
 */
function scanArchiveRecords(scan: Scan, where: string, text: string): void {
  let records;
  try {
    records = parseArchiveLines(text);
  } catch {
    scan.text('s3', where, text); // not the archive's format: scan it as it is
    return;
  }
  for (const r of records) {
    const at = `${where}@${r.offset}`;
    if (r.key) scan.text('s3', `${at} key`, r.key.toString('utf8'));
    for (const [name, v] of r.headers) {
      scan.text('s3', `${at} header ${name}`, name);
      scan.text('s3', `${at} header ${name}`, v.toString('utf8'));
    }
    if (r.value) scan.text('s3', `${at} value`, r.value.toString('utf8'));
  }
}

/** Only the S3 part of scanStores: every object of config.S3_BUCKET, archive records decoded. */
export async function scanS3Leaks(config: Config): Promise<{ scanned: number; leaks: PiiLeak[] }> {
  const leaks: PiiLeak[] = [];
  let scanned = 0;
  await scanS3(config, {
    item: () => void (scanned += 1),
    text: (store, where, text) => {
      for (const f of scanForPii(text)) leaks.push({ store, where, kind: f.kind, sample: f.sample });
    },
  });
  return { scanned, leaks };
}

/** Every non-vault table of the ledger database, column by column. */
async function scanPostgres(pool: Pool, scan: Scan): Promise<void> {
  const tables = await pool.query<{ schema: string; name: string }>(
    `select table_schema as schema, table_name as name from information_schema.tables
      where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema', 'vault')
        and has_table_privilege(quote_ident(table_schema) || '.' || quote_ident(table_name), 'select')`,
  );
  for (const t of tables.rows) {
    const rows = await pool.query<{ row: Record<string, unknown> }>(
      `select row_to_json(x) as row from "${t.schema}"."${t.name}" x limit ${MAX_ITEMS_PER_SOURCE}`,
    );
    rows.rows.forEach((r, i) => {
      scan.item('postgres');
      for (const [column, v] of Object.entries(r.row)) {
        if (v !== null) scan.text('postgres', `${t.schema}.${t.name}.${column} (row ${i + 1})`, JSON.stringify(v));
      }
    });
  }
}

async function scanSnowflake(config: Config, scan: Scan): Promise<void> {
  const session = await connectSnowflake(config);
  try {
    const tables = await session.query<{ TABLE_SCHEMA: string; TABLE_NAME: string }>(
      `select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' and table_schema <> 'INFORMATION_SCHEMA'`,
    );
    for (const t of tables) {
      const rows = await session.query<Record<string, unknown>>(
        `select * from ${t.TABLE_SCHEMA}.${t.TABLE_NAME} limit ${MAX_ITEMS_PER_SOURCE}`,
      );
      rows.forEach((r, i) => {
        scan.item('snowflake');
        for (const [column, v] of Object.entries(r)) {
          if (v !== null && v !== undefined) {
            scan.text('snowflake', `${t.TABLE_SCHEMA}.${t.TABLE_NAME}.${column} (row ${i + 1})`, JSON.stringify(v));
          }
        }
      });
    }
  } finally {
    await session.close();
  }
}

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];
type Payloads = { data?: Uint8Array | null }[] | null | undefined;

const payloadText = (payloads: Payloads): string =>
  (payloads ?? []).map((p) => (p.data ? Buffer.from(p.data).toString('utf8') : '')).join('\n');

/**
 * What Temporal keeps of one run that could hold PII, each with its place: the workflow id, the start
 * input and memo, every signal's and activity's input, and local-activity markers.
 */
export function workflowTexts(workflowId: string, runId: string, events: HistoryEvent[]): [string, string][] {
  const at = `workflow ${workflowId} run ${runId}`;
  const texts: [string, string][] = [[`${at} id`, workflowId]];
  for (const e of events) {
    const where = `${at} event ${String(e.eventId)}`;
    const started = e.workflowExecutionStartedEventAttributes;
    if (started) {
      texts.push([`${where} start input`, payloadText(started.input?.payloads)]);
      texts.push([`${where} memo`, payloadText(Object.values(started.memo?.fields ?? {}))]);
    }
    const signal = e.workflowExecutionSignaledEventAttributes;
    if (signal) texts.push([`${where} signal ${signal.signalName ?? ''}`, payloadText(signal.input?.payloads)]);
    const activity = e.activityTaskScheduledEventAttributes;
    if (activity) texts.push([`${where} activity input`, payloadText(activity.input?.payloads)]);
    for (const [name, p] of Object.entries(e.markerRecordedEventAttributes?.details ?? {})) {
      texts.push([`${where} marker ${name}`, payloadText(p.payloads)]);
    }
  }
  return texts;
}

/** Every workflow run the namespace lists (up to MAX_WORKFLOWS), through workflowTexts. */
async function scanTemporal(config: Config, scan: Scan): Promise<void> {
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    // One listing shared by a bounded pool: histories are fetched while the next page is listed, and a
    // slow history holds up one fetcher, not a batch. An async generator hands each run out once.
    const executions = client.workflow.list()[Symbol.asyncIterator]();
    let listed = 0;
    const fetcher = async (): Promise<void> => {
      for (let next = await executions.next(); !next.done; next = await executions.next()) {
        if (++listed > MAX_WORKFLOWS) return;
        const { workflowId, runId } = next.value;
        scan.item('temporal');
        const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
        for (const [where, text] of workflowTexts(workflowId, runId, history.events ?? [])) {
          scan.text('temporal', where, text);
        }
      }
    };
    await Promise.all(Array.from({ length: TEMPORAL_CONCURRENCY }, fetcher));
  } finally {
    await connection.close();
  }
}

/** The pipeline's own process logs and the services' logs under the data dir. */
async function scanLogs(scan: Scan): Promise<void> {
  const walk = (dir: string): string[] =>
    existsSync(dir)
      ? readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
          e.isDirectory() && e.name !== 'data'
            ? walk(join(dir, e.name))
            : e.name.endsWith('.log')
              ? [join(dir, e.name)]
              : [],
        )
      : [];
  for (const file of walk(dataDir)) {
    const lines = (await readFile(file, 'utf8')).split('\n');
    lines.forEach((line, i) => {
      if (!line) return;
      scan.item('logs');
      scan.text('logs', `${file}:${i + 1}`, line);
    });
  }
}

async function main(): Promise<void> {
  const report = await scanStores(loadConfig());
  process.stdout.write(
    `${JSON.stringify(
      {
        scanned: report.scanned,
        elapsedMs: report.elapsedMs,
        piiLeaks: report.leaks.length,
        leaks: report.leaks.slice(0, 50),
      },
      null,
      2,
    )}\n`,
  );
  if (report.leaks.length > 0) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    createLogger('pii-scan').error('pii scan failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

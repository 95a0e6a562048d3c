import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Admin, Kafka } from 'kafkajs';
import type { Pool } from 'pg';
import { type Config, loadConfig } from '../config';
import { type PiiFinding, scanForPii } from '../ingest/pii-scanner';
import { createLogger, errorMessage } from '../logger';
import { dataDir } from '../stack/service';
import { createPool } from '../stores/postgres';
import { createS3Client } from '../stores/s3';
import { connectSnowflake } from '../stores/snowflake';
import { createKafka } from '../streams/kafka';

// `npm run pii-scan`: proves no raw PAN/PII sits outside the edge and the vault — in any Kafka
// topic, S3 object, non-vault table, warehouse table or log line. Exit 1 on any finding.

export interface PiiLeak {
  store: 'kafka' | 's3' | 'postgres' | 'snowflake' | 'logs';
  where: string;
  kind: PiiFinding['kind'];
  sample: string;
}

export interface PiiScanReport {
  scanned: Record<PiiLeak['store'], number>;
  leaks: PiiLeak[];
}

const MAX_ITEMS_PER_SOURCE = 200_000;

export async function scanStores(config: Config): Promise<PiiScanReport> {
  const report: PiiScanReport = { scanned: { kafka: 0, s3: 0, postgres: 0, snowflake: 0, logs: 0 }, leaks: [] };
  const record = (store: PiiLeak['store'], where: string, text: string): void => {
    report.scanned[store] += 1;
    for (const f of scanForPii(text)) report.leaks.push({ store, where, kind: f.kind, sample: f.sample });
  };
  await scanKafka(createKafka(config, 'paylink-pii-scan'), record);
  await scanS3(config, record);
  const pool = createPool(config, 2);
  try {
    await scanPostgres(pool, record);
  } finally {
    await pool.end();
  }
  await scanSnowflake(config, record);
  scanLogs(record);
  return report;
}

type Record_ = (store: PiiLeak['store'], where: string, text: string) => void;

/** Every message of every project topic, from the start to the current end. */
async function scanKafka(kafka: Kafka, record: Record_): Promise<void> {
  const admin: Admin = kafka.admin();
  await admin.connect();
  const topics = (await admin.listTopics()).filter((t) => t.startsWith('paylink.'));
  const ends = new Map<string, Map<number, bigint>>();
  for (const t of topics)
    ends.set(t, new Map((await admin.fetchTopicOffsets(t)).map((o) => [o.partition, BigInt(o.high)])));
  await admin.disconnect();
  const remaining = (): number =>
    [...ends.values()].reduce((s, m) => s + [...m.values()].filter((h) => h > 0n).length, 0);
  if (remaining() === 0) return;
  const consumer = kafka.consumer({ groupId: `pii-scan-${Date.now()}` });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics, fromBeginning: true });
    let seen = 0;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('kafka scan did not reach the end of the topics within 120 s')),
        120_000,
      );
      void consumer.run({
        eachMessage: async ({ topic, partition, message }) => {
          const headers = Object.entries(message.headers ?? {})
            .map(([k, v]) => `${k}=${String(v)}`)
            .join(' ');
          record(
            'kafka',
            `${topic}/${partition}@${message.offset}`,
            `${message.key?.toString() ?? ''} ${headers} ${message.value?.toString() ?? ''}`,
          );
          const partitions = ends.get(topic)!;
          if (BigInt(message.offset) + 1n >= (partitions.get(partition) ?? 0n)) partitions.set(partition, 0n);
          if (remaining() === 0 || ++seen >= MAX_ITEMS_PER_SOURCE) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
}

async function scanS3(config: Config, record: Record_): Promise<void> {
  const s3 = createS3Client(config);
  try {
    let token: string | undefined;
    let n = 0;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: config.S3_BUCKET, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        const got = await s3.send(new GetObjectCommand({ Bucket: config.S3_BUCKET, Key: o.Key! }));
        record('s3', `s3://${config.S3_BUCKET}/${o.Key!}`, await got.Body!.transformToString());
        if (++n >= MAX_ITEMS_PER_SOURCE) return;
      }
      token = page.NextContinuationToken;
    } while (token);
  } finally {
    s3.destroy();
  }
}

/** Every table the application role can read (the vault schema is exactly what it cannot). */
async function scanPostgres(pool: Pool, record: Record_): Promise<void> {
  const tables = await pool.query<{ schema: string; name: string }>(
    `select table_schema as schema, table_name as name from information_schema.tables
      where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema', 'vault')
        and has_table_privilege(quote_ident(table_schema) || '.' || quote_ident(table_name), 'select')`,
  );
  for (const t of tables.rows) {
    const rows = await pool.query<{ row: string }>(
      `select row_to_json(x)::text as row from "${t.schema}"."${t.name}" x limit ${MAX_ITEMS_PER_SOURCE}`,
    );
    for (const r of rows.rows) record('postgres', `${t.schema}.${t.name}`, r.row);
  }
}

async function scanSnowflake(config: Config, record: Record_): Promise<void> {
  const session = await connectSnowflake(config);
  try {
    const tables = await session.query<{ TABLE_SCHEMA: string; TABLE_NAME: string }>(
      `select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' and table_schema <> 'INFORMATION_SCHEMA'`,
    );
    for (const t of tables) {
      const rows = await session.query(`select * from ${t.TABLE_SCHEMA}.${t.TABLE_NAME} limit ${MAX_ITEMS_PER_SOURCE}`);
      for (const r of rows) record('snowflake', `${t.TABLE_SCHEMA}.${t.TABLE_NAME}`, JSON.stringify(r));
    }
  } finally {
    await session.close();
  }
}

/** The pipeline's own process logs and the services' logs under the data dir. */
function scanLogs(record: Record_): void {
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
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => line && record('logs', `${file}:${i + 1}`, line));
  }
}

async function main(): Promise<void> {
  const report = await scanStores(loadConfig());
  process.stdout.write(
    `${JSON.stringify({ scanned: report.scanned, piiLeaks: report.leaks.length, leaks: report.leaks.slice(0, 50) }, null, 2)}\n`,
  );
  if (report.leaks.length > 0) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    createLogger('pii-scan').error('pii scan failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

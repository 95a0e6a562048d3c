import type { Pool } from 'pg';
import { loadConfig } from '../config';
import { createLogger, errorMessage } from '../logger';
import { createPool } from '../stores/postgres';
import { createConsumer, createKafka, ensureTopics } from '../streams/kafka';
import { type DriftReportFilter, readDriftReport, runQualityConsumer } from './quality-consumer';
import { createSchemaRegistry } from './schema-registry';

// `npm run quality`: the drift consumer (group QUALITY_CONSUMER_GROUP) until SIGTERM.
// `npm run quality -- report [--source s] [--schema name@v] [--path prefix] [--limit n]`: the drift table as JSON.

const log = createLogger('quality');

/** The consumer runs as the application role and does not migrate: say so if the owner has not yet. */
async function requireQualityTables(pool: Pool): Promise<void> {
  try {
    await pool.query('select 1 from quality.schema_drift, quality.consumed_offsets limit 0');
  } catch (err) {
    throw new Error(`quality tables are not usable (${errorMessage(err)}); run \`npm run migrate\` first`);
  }
}

async function report(args: string[]): Promise<void> {
  const filter: DriftReportFilter = {};
  for (let i = 0; i < args.length; i += 2) {
    const [flag, value] = [args[i], args[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--source') filter.source = value;
    else if (flag === '--schema') filter.schema = value;
    else if (flag === '--path') filter.fieldPathPrefix = value;
    else if (flag === '--limit') filter.limit = Number(value);
    else throw new Error(`unknown option "${flag}"; report [--source s] [--schema name@v] [--path p] [--limit n]`);
  }
  const pool = createPool(loadConfig(), 1);
  try {
    await requireQualityTables(pool);
    process.stdout.write(`${JSON.stringify(await readDriftReport(pool, filter), null, 2)}\n`);
  } finally {
    await pool.end();
  }
}

async function consume(): Promise<void> {
  const config = loadConfig();
  const kafka = createKafka(config, 'paylink-quality');
  const admin = kafka.admin();
  const consumer = createConsumer(kafka, config.QUALITY_CONSUMER_GROUP);
  const pool = createPool(config, 4);
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  try {
    await requireQualityTables(pool);
    await admin.connect();
    await ensureTopics(admin, config);
    await admin.disconnect();
    await consumer.connect();
    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
    const crashed = new Promise<never>((_, reject) =>
      consumer.on(consumer.events.CRASH, (e) => {
        if (!e.payload.restart) reject(e.payload.error);
      }),
    );
    const counters = await runQualityConsumer({
      consumer,
      pool,
      registry: createSchemaRegistry(),
      group: config.QUALITY_CONSUMER_GROUP,
      log,
      maxUnknownPaths: config.QUALITY_MAX_UNKNOWN_PATHS,
    });
    await Promise.race([joined, crashed]);
    log.info('ready', { group: config.QUALITY_CONSUMER_GROUP });
    await Promise.race([stopped, crashed]);
    log.info('stopping', { ...counters });
  } finally {
    await consumer.disconnect();
    await pool.end();
  }
}

const [command, ...rest] = process.argv.slice(2);
(command === 'report'
  ? report(rest)
  : command === undefined
    ? consume()
    : Promise.reject(new Error(`unknown command "${command}"; run without arguments or with "report"`))
).catch((err: unknown) => {
  log.error('quality failed', { error: errorMessage(err) });
  process.exit(1);
});

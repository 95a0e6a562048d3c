import type { Pool } from 'pg';
import { loadConfig } from '../config';
import { createLogger, errorMessage } from '../logger';
import { retryTransient } from '../resilience';
import { createDataQualityActivities, runDataQualityHere } from '../activities/data-quality';
import { dayWindowOf } from '../contracts/data-quality';
import { latestDqResults } from '../stores/data-quality';
import { createOltpPool } from '../stores/oltp';
import { createPool } from '../stores/postgres';
import { connectSnowflake } from '../stores/snowflake';
import { runConsumer, runMain } from '../streams/consumer-runner';
import { createConsumer, createKafka, ensureTopics, rawTopicsOf, topicsFor } from '../streams/kafka';
import { type DriftReportFilter, qualityBatches, readDriftReport } from './quality-consumer';
import { createSchemaRegistry } from './schema-registry';

// `npm run quality`: the drift consumer (group QUALITY_CONSUMER_GROUP) until SIGTERM.
// `npm run quality -- report [--source s] [--schema name@v] [--path prefix] [--limit n]`: the drift table as JSON.
// `npm run quality -- dq --window <day|hour> [--scope prefix] [--json]`: the data-quality checks now, with progress.
// `npm run quality -- dq --latest [--window w] [--scope prefix] [--json]`: the latest result per check (monitoring).

const log = createLogger('quality');

/** The consumer runs as the application role and does not migrate: say so if the owner has not yet. */
async function requireQualityTables(pool: Pool): Promise<void> {
  try {
    // Postgres restarting is waited out (the consumer starts when it is back); missing tables are not.
    await retryTransient(
      'postgres',
      'checking the quality tables',
      () => pool.query('select 1 from quality.schema_drift, quality.consumed_offsets limit 0'),
      { log },
    );
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

/** `dq`: runs the DataQuality checks of a window in this process (or reads the latest results with --latest). */
async function dataQuality(args: string[]): Promise<void> {
  let window: string | undefined;
  let scope = '';
  let json = false;
  let latest = false;
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === '--json') json = true;
    else if (flag === '--latest') latest = true;
    else if (flag === '--window' || flag === '--scope') {
      const value = args[++i];
      if (value === undefined) throw new Error(`${flag} needs a value`);
      if (flag === '--window') window = value;
      else scope = value;
    } else throw new Error(`unknown option "${flag}"; dq --window <day|hour> [--scope prefix] [--latest] [--json]`);
  }
  const config = loadConfig();
  const pool = createPool(config, 2);
  try {
    if (latest) {
      const results = await latestDqResults(pool, scope, window ? [window] : undefined);
      if (json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
      else
        for (const r of results)
          process.stdout.write(`${r.window.id} ${r.passed ? 'pass' : 'FAIL'} ${r.severity} ${r.check}: ${r.summary}\n`);
      return;
    }
    const snowflake = await connectSnowflake(config);
    const oltp = createOltpPool(config, 1);
    try {
      const activities = createDataQualityActivities({ pool, oltp, oltpSchema: config.CDC_SCHEMA, snowflake, log });
      const { summary } = await runDataQualityHere(
        activities,
        { window: window ?? dayWindowOf(Date.now()), scope },
        (check, r) =>
          process.stderr.write(`${r.passed ? 'pass' : 'FAIL'} ${r.severity.padEnd(8)} ${check}: ${r.summary}\n`),
      );
      if (json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
      else
        process.stdout.write(
          `window ${summary.window}: ${summary.checks} checks, ${summary.failed.length} failed` +
            `${summary.blocking.length ? `; blocks finance publication: ${summary.blocking.join(', ')}` : ''}\n`,
        );
      if (summary.failed.length > 0) process.exitCode = 1;
    } finally {
      await snowflake.close().catch(() => undefined);
      await oltp.end();
    }
  } finally {
    await pool.end();
  }
}

async function consume(): Promise<void> {
  const config = loadConfig();
  const topics = topicsFor(config);
  const kafka = createKafka(config, 'paylink-quality');
  const admin = kafka.admin();
  const consumer = createConsumer(kafka, config.QUALITY_CONSUMER_GROUP, config.KAFKA_SESSION_TIMEOUT_MS);
  const pool = createPool(config, 4);
  try {
    await requireQualityTables(pool);
    await admin.connect();
    await ensureTopics(admin, config);
    await admin.disconnect();
    const quality = qualityBatches({
      pool,
      registry: createSchemaRegistry(),
      topics,
      group: config.QUALITY_CONSUMER_GROUP,
      log,
      maxUnknownPaths: config.QUALITY_MAX_UNKNOWN_PATHS,
    });
    await runConsumer({ consumer, topics: rawTopicsOf(topics), handle: quality.handle, log });
    log.info('counted since start', { ...quality.counters });
  } finally {
    await consumer.disconnect();
    await pool.end();
  }
}

const [command, ...rest] = process.argv.slice(2);
runMain(log, () =>
  command === 'report'
    ? report(rest)
    : command === 'dq'
      ? dataQuality(rest)
      : command === undefined
        ? consume()
        : Promise.reject(new Error(`unknown command "${command}"; run without arguments or with "report" or "dq"`)),
);

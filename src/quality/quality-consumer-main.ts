import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { Client, Connection } from '@temporalio/client';
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
import { runConsumer, runMain, untilSignal } from '../streams/consumer-runner';
import { createConsumer, createKafka, ensureTopics, rawTopicsOf, topicsFor } from '../streams/kafka';
import { type DriftReportFilter, qualityBatches, readDriftReport } from './quality-consumer';
import { createSchemaRegistry } from './schema-registry';
import { readClaimedRaw } from '../stores/claim-checks';
import { type QuarantinedRecord, listQuarantined } from '../stores/quarantine';
import { createS3Client } from '../stores/s3';
import { routingPolicy } from '../streams/payment-router';
import { quarantineBatches } from './quarantine-consumer';
import { QuarantineReleaseError, QuarantineStillFailing, releaseQuarantined } from './quarantine-release';

// `npm run quality`: the drift consumer (group QUALITY_CONSUMER_GROUP) until SIGTERM.
// `npm run quality -- report [--source s] [--schema name@v] [--path prefix] [--limit n]`: the drift table as JSON.
// `npm run quality -- dq --window <day|hour> [--scope prefix] [--json]`: the data-quality checks now, with progress.
// `npm run quality -- dq --latest [--window w] [--scope prefix] [--json]`: the latest result per check (monitoring).
// `npm run quality -- quarantined [--open] [--payment prefix] [--json]`: quarantined items, their money and suspense.
// `npm run quality -- release <id> [--with-file corrected.json] [--actor name] [--wait-s n] [--json]`: reprocess one.

const log = createLogger('quality');

/** The consumer runs as the application role and does not migrate: say so if the owner has not yet. */
async function requireQualityTables(pool: Pool): Promise<void> {
  try {
    // Postgres restarting is waited out (the consumer starts when it is back); missing tables are not.
    await retryTransient(
      'postgres',
      'checking the quality tables',
      () =>
        pool.query(
          'select 1 from quality.schema_drift, quality.consumed_offsets, quality.quarantine, quality.quarantine_releases limit 0',
        ),
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
  const quarantineConsumer = createConsumer(
    kafka,
    `${config.QUALITY_CONSUMER_GROUP}.quarantine`,
    config.KAFKA_SESSION_TIMEOUT_MS,
  );
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
    // Quarantined items in a group of their own: recorded, and their money held in suspense.
    const s3 = createS3Client(config);
    const quarantine = quarantineBatches({
      pool,
      readClaimedRaw: (uri) => readClaimedRaw(s3, uri),
      log,
    });
    const stop = untilSignal();
    await Promise.all([
      runConsumer({ consumer, topics: rawTopicsOf(topics), handle: quality.handle, log, stop }),
      runConsumer({ consumer: quarantineConsumer, topics: [topics.quarantine], handle: quarantine.handle, log, stop }),
    ]);
    log.info('counted since start', { ...quality.counters, ...quarantine.counters });
  } finally {
    await consumer.disconnect();
    await quarantineConsumer.disconnect();
    await pool.end();
  }
}

const centsOf = (a: QuarantinedRecord['amount']): string =>
  a.status === 'parsed'
    ? `${a.amountMinor} ${a.currency}`
    : a.status === 'unparseable'
      ? `unparseable ${a.raw}`
      : 'no amount';

/** `quarantined`: the items, newest first; --open keeps those not released. */
async function quarantined(args: string[]): Promise<void> {
  let json = false;
  let open = false;
  let prefix: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === '--json') json = true;
    else if (flag === '--open') open = true;
    else if (flag === '--payment') {
      prefix = args[++i];
      if (prefix === undefined) throw new Error('--payment needs a payment-id prefix');
    } else throw new Error(`unknown option "${flag}"; quarantined [--open] [--payment prefix] [--json]`);
  }
  const pool = createPool(loadConfig(), 1);
  try {
    await requireQualityTables(pool);
    const items = await listQuarantined(pool, { open, ...(prefix !== undefined && { paymentIdPrefix: prefix }) });
    if (json) {
      const out = items.map(({ headers: _h, value: _v, ...rest }) => rest);
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return;
    }
    for (const q of items)
      process.stdout.write(
        `${q.quarantineId} ${q.state.padEnd(8)} ${q.source} ${q.paymentId ?? '(no payment)'} ${centsOf(q.amount)}` +
          ` suspense ${q.suspensePostingKey ?? 'none'}: ${q.reason}\n`,
      );
  } finally {
    await pool.end();
  }
}

/** `release <id>`: the item through the normal path again, then its suspense closed. */
async function release(args: string[]): Promise<void> {
  const [id, ...rest] = args;
  if (id === undefined || id.startsWith('--')) {
    throw new Error('release needs a quarantine id: release <id> [--with-file f] [--actor a] [--wait-s n] [--json]');
  }
  let json = false;
  let correction: string | undefined;
  let actor = process.env['USER'] ?? userInfo().username;
  let waitMs = 60_000;
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    if (flag === '--json') json = true;
    else if (flag === '--with-file' || flag === '--actor' || flag === '--wait-s') {
      const value = rest[++i];
      if (value === undefined) throw new Error(`${flag} needs a value`);
      if (flag === '--with-file') {
        try {
          correction = readFileSync(value, 'utf8');
        } catch (err) {
          throw new Error(`--with-file ${value}: ${errorMessage(err)}`);
        }
      } else if (flag === '--actor') actor = value;
      else {
        const s = Number(value);
        if (!Number.isFinite(s) || s < 0) throw new Error(`--wait-s must be a number of seconds, got "${value}"`);
        waitMs = s * 1000;
      }
    } else throw new Error(`unknown option "${flag}"; release <id> [--with-file f] [--actor a] [--wait-s n] [--json]`);
  }
  const config = loadConfig();
  const pool = createPool(config, 2);
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  let failed = false;
  try {
    await requireQualityTables(pool);
    const s3 = createS3Client(config);
    const result = await releaseQuarantined(
      {
        pool,
        client: new Client({ connection, namespace: config.TEMPORAL_NAMESPACE }),
        policy: routingPolicy(config),
        factsTopic: topicsFor(config).paymentEvents,
        readClaimedRaw: (uri) => readClaimedRaw(s3, uri),
        log,
      },
      { quarantineId: id, actor, waitMs, ...(correction !== undefined && { correction }) },
    );
    if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else
      process.stdout.write(
        `${result.quarantineId} ${result.outcome}: fact ${result.factIdempotencyKey}` +
          `${result.factPostingKey ? ` (${result.factPostingKey})` : ''}, suspense ${result.suspense}\n`,
      );
    failed = result.outcome === 'routed';
  } catch (err) {
    if (err instanceof QuarantineReleaseError || err instanceof QuarantineStillFailing) {
      if (json)
        process.stdout.write(`${JSON.stringify({ quarantineId: id, error: err.name, message: err.message })}\n`);
      process.stderr.write(`${err.message}\n`);
      failed = true;
      return;
    }
    throw err;
  } finally {
    await connection.close();
    await pool.end();
    // runMain exits 0 when main returns: a refused or unfinished release must not look like success.
    if (failed) process.exit(1);
  }
}

const [command, ...rest] = process.argv.slice(2);
runMain(log, () =>
  command === 'report'
    ? report(rest)
    : command === 'dq'
      ? dataQuality(rest)
      : command === 'quarantined'
        ? quarantined(rest)
        : command === 'release'
          ? release(rest)
          : command === undefined
            ? consume()
            : Promise.reject(
                new Error(
                  `unknown command "${command}"; run without arguments or with "report", "dq", "quarantined" or "release"`,
                ),
              ),
);

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { parseSlas } from '../activities/sla';
import { loadConfig, secretSetting } from '../config';
import { compareLedger } from '../ledger/checks';
import { createLogger, errorMessage } from '../logger';
import { countActionsForWorkflows } from '../ops/billable-actions';
import { scanStores } from '../ops/pii-scan';
import { startExternalParties } from '../simulator/external-parties';
import { type GroundTruth, REGIONS, simulatePayments } from '../simulator/payments';
import { up } from '../stack/cli';
import { dataDir } from '../stack/service';
import { readDriftReport } from '../quality/quality-consumer';
import { parsePartnerApis } from '../contracts/partner-api';
import { partnerPollWorkflowId } from '../workflows/partner-poll';
import type { Config } from '../config';
import { migrateAsOwner } from '../stores/migrate';
import { migrateSnowflake } from '../stores/snowflake-migrate';
import { connectSnowflake } from '../stores/snowflake';
import { financeSummary, runPublished } from '../ops/finance-summary';
import { createDataQualityActivities, runDataQualityHere } from '../activities/data-quality';
import { type DqResult, dayWindowOf } from '../contracts/data-quality';
import { createOltpPool } from '../stores/oltp';
import { measureMissingPostings } from '../stores/data-quality';
import { countAnomalies, summarizeLedger } from '../stores/ledger';
import { factsByPath, gatewayFactsByRegion } from '../stores/payment-inbox';
import { createPool } from '../stores/postgres';
import {
  type KafkaAdmin,
  type KafkaClient,
  type TopicOffsets,
  type TopicSet,
  consumerGroupLag,
  createKafka,
  readTopics,
  topicEnds,
  topicsFor,
} from '../streams/kafka';
import { PAYMENT_ROUTER_GROUP } from '../streams/payment-router';
import type { Pool } from 'pg';
import { retryTransient } from '../resilience';
import { bringBack, takeDown } from '../stack/faults';
import { PAYMENT_TASK_QUEUE, paymentWorkflowId } from '../workflows/payment';
import { slaSweepWorkflow } from '../workflows/sla-sweep';
import { createS3Client, ensureBucket } from '../stores/s3';
import { REPLAY_SOURCES } from '../workflows/backfill';
import { startBackfill, waitForBackfill } from './replay';
import { type ArchiveSummary, archiveSummary, archivedTopicsOf } from '../streams/archiver/completeness';
import { CrashLoop, Supervisor } from './supervisor';
import { expectedLedger } from './expected-ledger';
import { ensurePartnerPoll, partnerPollSettings } from './partner-poll';
import { injectFraud } from '../simulator/fraud-injection';
import { breakPlanFor, simulateSettlementFiles } from '../simulator/settlement-files';
import { asNotified, datedOnReceipt } from '../simulator/partner-webhooks';
import type { PaymentEvent } from '../contracts/payment-event';
import { publishSettlementFiles } from '../stores/settlement-files';
import { listBreaks } from '../stores/reconciliation';
import {
  RECONCILIATION_TASK_QUEUE,
  reconciliationWorkflow,
  reconciliationWorkflowId,
} from '../workflows/reconciliation';
import { createRiskPool } from '../stores/risk';
import { fraudSummary, fraudViewsBehind, startFraudViewsAfresh } from './fraud-summary';

// `npm run demo`: the main job. Stack up, migrate, worker + router, simulate, wait, check, summarize.

const log = createLogger('demo');

function options() {
  const { values } = parseArgs({
    options: {
      payments: { type: 'string', default: '200' },
      seed: { type: 'string', default: '42' },
      'duplicate-rate': { type: 'string', default: '0' },
      shuffle: { type: 'boolean', default: false },
      stuck: { type: 'string', default: '0' },
      // Authentic but contract-breaking events per source (gateway, partner API, webhook): quarantined.
      invalid: { type: 'string', default: '2' },
      'captured-sla-s': { type: 'string', default: '5' },
      'run-id': { type: 'string' },
      'timeout-s': { type: 'string', default: '600' },
      // Take one region's gateway down for this long while the others deliver (0 = no outage).
      'region-outage-s': { type: 'string', default: '0' },
      'outage-region': { type: 'string', default: 'eu-west' },
      // Outage drills once every event was handed over, in order: postgres-fast:<s>, postgres-kill:<s>,
      // temporal-kill:<s>, kafka-kill:<s> (down for <s> seconds), or processes (kill -9 each pipeline
      // process once; the supervisor restarts it). `@<share>` delays a drill until that share of the run's
      // postings landed, so workflows are mid-posting when it hits (postgres-kill:15@0.3). See docs/operations.md.
      fault: { type: 'string', multiple: true, default: [] },
      // After the run: backfill its whole window from the raw archive; it must post nothing new.
      replay: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const num = (name: string, raw: string | undefined): number => {
    const n = Number(raw);
    if (raw === undefined || raw.trim() === '' || !Number.isFinite(n))
      throw new Error(`--${name} must be a number, got "${raw}"`);
    return n;
  };
  const seed = num('seed', values.seed);
  return {
    payments: num('payments', values.payments),
    seed,
    duplicateRate: num('duplicate-rate', values['duplicate-rate']),
    shuffle: values.shuffle ?? false,
    stuck: num('stuck', values.stuck),
    invalid: num('invalid', values.invalid),
    capturedSlaMs: num('captured-sla-s', values['captured-sla-s']) * 1000,
    // Unique per run by default so runs on a shared stack never collide; fixed with --run-id.
    runId: values['run-id'] ?? `demo${seed}-${Date.now().toString(36)}`,
    timeoutMs: num('timeout-s', values['timeout-s']) * 1000,
    regionOutageMs: num('region-outage-s', values['region-outage-s']) * 1000,
    outageRegion: values['outage-region'] ?? 'eu-west',
    faults: (values.fault ?? []).map(parseFault),
    replay: values.replay ?? false,
    json: values.json ?? false,
  };
}

/**
 * Polls `check` once a second until it holds. A check that throws (Postgres or Temporal restarting
 * under a drill or a real outage) is logged once as degraded and polled again: the demo's own waits
 * ride out what the pipeline rides out. A supervised process that keeps dying ends the wait at once.
 */
async function waitFor(
  what: string,
  deadline: number,
  check: () => Promise<boolean>,
  failed: Promise<never> = new Promise(() => undefined),
): Promise<void> {
  let degraded = false;
  while (Date.now() < deadline) {
    try {
      if (await Promise.race([check(), failed])) return;
      if (degraded) log.info('demo: checks answer again', { waitingFor: what });
      degraded = false;
    } catch (err) {
      if (err instanceof CrashLoop || err instanceof PostingsLost) throw err;
      if (!degraded) log.warn('demo: a check failed; retrying', { waitingFor: what, error: errorMessage(err) });
      degraded = true;
    }
    await Promise.race([new Promise((r) => setTimeout(r, 1000)), failed]);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Postings are short and nothing is left that could post them: waiting longer cannot help. */
class PostingsLost extends Error {
  override name = 'PostingsLost';
}

/** How long postings may stand still, with no run open and the router caught up, before they count as lost. */
const POSTING_STALL_MS = 60_000;

/**
 * Tells a slow run from a lost posting: once no payment run is open, the router has nothing left to
 * read and the ledger has not moved for POSTING_STALL_MS, the missing postings will never come. Then
 * the demo stops at once and names them (the `ledger.missing_postings` check's words) instead of
 * waiting out its timeout.
 */
function postingStall(ctx: {
  pool: Pool;
  admin: KafkaAdmin;
  topics: TopicSet;
  count: (query: string) => Promise<number>;
  runId: string;
  since: number;
}): { check(entries: number): Promise<void> } {
  let last = { entries: -1, at: Date.now() };
  return {
    async check(entries) {
      const now = Date.now();
      if (entries !== last.entries) {
        last = { entries, at: now };
        return;
      }
      if (now - last.at < POSTING_STALL_MS) return;
      const [open, lag] = await Promise.all([
        ctx.count('ExecutionStatus = "Running"'),
        consumerGroupLag(ctx.admin, PAYMENT_ROUTER_GROUP, ctx.topics.paymentEvents),
      ]);
      if (open > 0 || lag > 0) return;
      const missing = await measureMissingPostings(
        ctx.pool,
        {
          window: {
            id: ctx.runId,
            start: new Date(ctx.since - 86_400_000).toISOString(),
            end: new Date(now).toISOString(),
          },
          scope: `${ctx.runId}-`,
        },
        0,
      );
      throw new PostingsLost(
        `postings stood at ${entries} for ${Math.round((now - last.at) / 1000)} s with no payment run open and the router caught up: ${missing.summary}`,
      );
    },
  };
}

async function main(): Promise<void> {
  const opts = options();
  const started = Date.now();
  const config = loadConfig();
  await up();
  await migrateAsOwner(config);
  await migrateSnowflake(config);
  const pool = createPool(config);

  const supervisor = new Supervisor(log);
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const kafka = createKafka(config, 'paylink-demo');
  const admin = kafka.admin();
  const topics = topicsFor(config);
  // The simulator plays every party outside PayLink: gateways, partners, PayLink's own OLTP database.
  const parties = await startExternalParties(config, opts.seed);
  let failed = true;
  const riskPool = createRiskPool(config, 2);
  try {
    await admin.connect();
    // The fraud views count this run only, so they can be compared with its truth.
    await startFraudViewsAfresh(config, admin, topics);
    supervisor.start([
      { name: 'payment-worker', script: 'src/workers/payment-worker-main.ts' },
      { name: 'payment-router', script: 'src/streams/payment-router-main.ts' },
      { name: 'webhook-receiver', script: 'src/ingest/webhook-receiver-main.ts' },
      // The simulated gateways' feeds start empty every run, so their cursors must too.
      {
        name: 'gateway-connector',
        script: 'src/ingest/gateways/gateway-connector-main.ts',
        env: { GATEWAY_STATE_DIR: join(dataDir, 'ingest', 'gateways', opts.runId) },
      },
      { name: 'cdc-reader', script: 'src/ingest/cdc/cdc-reader-main.ts' },
      { name: 'cdc-normalizer', script: 'src/ingest/cdc/cdc-normalizer-main.ts' },
      { name: 'ingest-worker', script: 'src/workers/ingest-worker-main.ts' },
      { name: 'quality', script: 'src/quality/quality-consumer-main.ts' },
      // Objects close after 2 s here so the archive catches up within the run (production: 5 min, docs/archive.md).
      { name: 'archiver', script: 'src/streams/archiver/archiver-main.ts', env: { ARCHIVE_OBJECT_MAX_AGE_MS: '2000' } },
      // Creates (or updates) the finance load Schedule: a load every FINANCE_LOAD_INTERVAL_S (docs/finance.md).
      { name: 'finance-worker', script: 'src/workers/finance-worker-main.ts' },
      { name: 'fraud-views', script: 'src/streams/fraud-views/fraud-views-main.ts' },
      // The live page over the risk store (docs/fraud-views-page.md).
      { name: 'fraud-page', script: 'src/streams/fraud-views/fraud-page-main.ts' },
    ]);
    await supervisor.ready();
    const fraudPageUrl = `http://${config.FRAUD_PAGE_HOST}:${config.FRAUD_PAGE_PORT}/`;
    log.info('pipeline ready', { runId: opts.runId, processes: supervisor.names(), fraudPage: fraudPageUrl });

    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    await startPartnerPolls(client, config);

    // A day of payments plus the fraud the views must catch: a card-testing burst and a decline spike.
    const sim = injectFraud(simulatePayments(opts), {
      seed: opts.seed,
      runId: opts.runId,
      duplicateRate: opts.duplicateRate,
    });
    const quarantineFrom = await topicEnds(admin, topics.quarantine);
    const webhookUrl = `http://127.0.0.1:${config.WEBHOOK_PORT}`;
    const downGateway =
      opts.regionOutageMs > 0 ? parties.gateways.find((g) => g.region === opts.outageRegion) : undefined;
    if (opts.regionOutageMs > 0 && !downGateway)
      throw new Error(`--outage-region: no gateway in region "${opts.outageRegion}"`);
    await downGateway?.stop();
    const [delivery, invalidSent] = await Promise.all([
      parties.deliver(sim, webhookUrl),
      parties.deliverInvalid(opts.runId, opts.invalid, webhookUrl),
    ]);
    log.info('simulator handed every event to its party', { ...delivery.handedOver, invalid: invalidSent });
    let regionOutage: { region: string; seconds: number; gatewayFactsDuringOutage: Record<string, number> } | undefined;
    if (downGateway) {
      // AP for ingest: the other regions keep flowing; the down region's events wait at its gateway.
      await new Promise((r) => setTimeout(r, opts.regionOutageMs));
      const during = await gatewayFactsByRegion(pool, `${opts.runId}-`);
      await downGateway.start();
      regionOutage = {
        region: downGateway.region,
        seconds: opts.regionOutageMs / 1000,
        gatewayFactsDuringOutage: during,
      };
      log.info('region back after its outage', regionOutage);
    }

    const ofRun = `WorkflowType = "paymentWorkflow" AND WorkflowId STARTS_WITH "payment/${opts.runId}-"`;
    const count = async (q: string): Promise<number> => (await client.workflow.count(`${ofRun} AND ${q}`)).count;
    const deadline = started + opts.timeoutMs;
    const progress = startProgress(
      { pool, client, admin, topics, runId: opts.runId, ofRun, truth: sim.truth, payments: opts.payments },
      opts.json,
    );
    // The drills run while the pipeline works through what was handed over; the waits below ride them out.
    const faults = runFaults(opts.faults, { supervisor, pool, runId: opts.runId, truth: sim.truth });
    faults.catch(() => undefined); // awaited below, after the waits
    const gaveUp = Promise.race([supervisor.failed, faults.then(() => new Promise<never>(() => undefined))]);
    try {
      await waitFor(
        'every fact to reach the router, by all four paths',
        deadline,
        async () => (await factsByPath(pool, `${opts.runId}-`)).total >= sim.truth.uniqueEvents,
        gaveUp,
      );
      const stall = postingStall({ pool, admin, topics, count, runId: opts.runId, since: started });
      await waitFor(
        'every money-moving fact to be posted',
        deadline,
        async () => {
          const entries = (await summarizeLedger(pool, `${opts.runId}-`)).entries;
          if (entries >= sim.truth.moneyMovingFacts) return true;
          await stall.check(entries);
          return false;
        },
        gaveUp,
      );
      // Visibility counts runs, and a payment reopened by a late fact has several: count open ones instead.
      await waitFor(
        'every payment without a withheld settlement to close',
        deadline,
        async () => (await count('ExecutionStatus = "Running"')) <= opts.stuck,
        gaveUp,
      );
      // Every drill ends with its service back before anything is counted.
      await Promise.race([faults, supervisor.failed]);
    } finally {
      progress.stop();
    }
    const faultReport = await faults;

    let stuckFound: string[] = [];
    if (opts.stuck > 0) stuckFound = await flagStuck(client, opts, ofRun, deadline);

    let ledger = await summarizeLedger(pool, `${opts.runId}-`);
    let comparison = compareLedger(ledger, expectedLedger(sim.truth));
    const anomalies = await countAnomalies(pool, `${opts.runId}-`);
    const completed = opts.payments - (await count('ExecutionStatus = "Running"'));
    const actions = await countActionsForWorkflows(
      client,
      [...new Set(sim.events.map((e) => e.paymentId))].map(paymentWorkflowId),
    );
    const ingest = await factsByPath(pool, `${opts.runId}-`);
    const quarantined = await countQuarantined(
      kafka,
      topics.quarantine,
      quarantineFrom,
      `${opts.runId}-invalid-`,
      invalidSent,
      deadline,
    );
    const edge = await edgeStatus(webhookUrl);
    // The raw archive: every archived topic-partition manifested up to Kafka's end, without gap or overlap.
    const s3 = createS3Client(config);
    const archiveDeps = {
      s3,
      bucket: config.S3_BUCKET,
      kafka,
      group: config.ARCHIVER_GROUP,
      topics: archivedTopicsOf(topics),
    };
    let archive = await archiveSummary(archiveDeps);
    await waitFor('the archive to catch up with Kafka', deadline, async () => {
      archive = await archiveSummary(archiveDeps);
      return archive.lagSeconds === 0;
    });
    s3.destroy();
    await waitFor(
      'the fraud views to count every event',
      deadline,
      async () => (await fraudViewsBehind(riskPool, admin, config.FRAUD_VIEWS_GROUP, topics)) === 0,
    );
    const fraud = await fraudSummary(riskPool, config, sim.events);
    const replay = opts.replay
      ? await replayWindow(client, config, pool, {
          runId: opts.runId,
          from: new Date(started).toISOString(),
          deadline,
          settled: async () => (await count('ExecutionStatus = "Running"')) <= opts.stuck,
        })
      : undefined;
    if (replay) {
      // The ledger is checked against the simulator's truth again, after the backfill (and before
      // reconciliation, whose suspense entries for the injected breaks are not the simulator's payments).
      ledger = await summarizeLedger(pool, `${opts.runId}-`);
      comparison = compareLedger(ledger, expectedLedger(sim.truth));
    }
    // Drift rows this run touched (the table keeps every source's history).
    const drift = (await readDriftReport(pool, { limit: 1000 })).filter((d) => Date.parse(d.lastSeen) >= started);
    // Reconciliation of the run's days against the partners' settlement files, before the PII scan reads its rows.
    const reconciliation = await reconcileRun(client, config, pool, sim, delivery.webhooks.acknowledgedAt, opts);
    // No raw PAN/PII anywhere outside the edge and the vault: Kafka, S3, tables, warehouse, logs.
    const pii = await scanStores(config);
    // Finance: every entry of the run loaded, verified and sealed in Snowflake by the scheduled loads.
    const snowflake = await connectSnowflake(config);
    const finance = await waitFor('every journal entry of the run to be published in Snowflake', deadline, () =>
      runPublished(pool, snowflake, `${opts.runId}-`),
    )
      .then(() => financeSummary(pool, snowflake, `${opts.runId}-`))
      .finally(() => snowflake.close());
    const dq = await dataQualityOfRun(config, pool, `${opts.runId}-`, started);
    const summary = {
      runId: opts.runId,
      seed: opts.seed,
      payments: opts.payments,
      eventsProduced: sim.deliveries.length,
      ingest: { ...ingest.bySource, handedOver: delivery.handedOver },
      quarantined,
      spooled: edge.spooled,
      archive,
      fraud: {
        freshnessP50Ms: fraud.freshnessP50Ms,
        freshnessP99Ms: fraud.freshnessP99Ms,
        lateEvents: fraud.lateEvents,
        alerts: fraud.alerts,
        viewsMatchTruth: fraud.viewsMatchTruth,
        ...(fraud.viewsMatchTruth ? {} : { mismatches: fraud.mismatches }),
        pageUrl: fraudPageUrl,
      },
      ...(replay ? { replay } : {}),
      ...(regionOutage ? { regionOutage } : {}),
      ...(faultReport.length > 0 ? { faults: faultReport } : {}),
      processes: supervisor.report(),
      restarts: supervisor.report().reduce((n, p) => n + p.restarts, 0),
      webhookRetries: delivery.webhooks.retried,
      schemaDrift: {
        unknownFieldPaths: drift.filter((d) => d.kind === 'unknown field').length,
        top: drift.slice(0, 5).map((d) => `${d.schema} ${d.fieldPath} ×${d.count}`),
      },
      uniqueEvents: sim.truth.uniqueEvents,
      duplicateRate: opts.duplicateRate,
      shuffle: opts.shuffle,
      paymentsClosed: completed,
      stuck: { expected: sim.truth.stuckPaymentIds.length, found: stuckFound.length, paymentIds: stuckFound },
      anomalies,
      piiLeaks: pii.leaks.length,
      finance: {
        loads: finance.loads,
        rowsLoaded: finance.rowsLoaded,
        freshnessP50S: finance.freshnessP50S,
        freshnessP99S: finance.freshnessP99S,
        snowflakeMatchesLedger: finance.snowflakeMatchesLedger,
        sealsVerified: finance.sealsVerified,
        ...(finance.problems.length > 0 ? { problems: finance.problems.slice(0, 10) } : {}),
      },
      dq,
      reconciliation,
      actionsPerPayment: Math.round((actions.total / Math.max(1, actions.workflows)) * 100) / 100,
      actionsByKind: actions.byKind,
      ledger: {
        entries: ledger.entries,
        unbalanced: ledger.unbalanced,
        duplicatePostings: ledger.duplicatePostings,
        matchesSimulator: comparison.matches,
        mismatches: comparison.mismatches,
      },
      temporal: {
        uiUrl: config.TEMPORAL_UI_URL,
        workflowsUrl: `${config.TEMPORAL_UI_URL}/namespaces/${config.TEMPORAL_NAMESPACE}/workflows?query=${encodeURIComponent(ofRun)}`,
        stuckUrl: `${config.TEMPORAL_UI_URL}/namespaces/${config.TEMPORAL_NAMESPACE}/workflows?query=${encodeURIComponent('PaymentStatus="STUCK"')}`,
      },
      wallTimeMs: Date.now() - started,
    };
    failed = !(
      ledger.unbalanced === 0 &&
      ledger.duplicatePostings === 0 &&
      comparison.matches &&
      anomalies === 0 &&
      pii.leaks.length === 0 &&
      quarantined === invalidSent &&
      archive.gaps === 0 &&
      archive.overlaps === 0 &&
      finance.snowflakeMatchesLedger &&
      finance.sealsVerified &&
      fraud.viewsMatchTruth &&
      (fraud.alerts['card-testing'] ?? 0) > 0 &&
      (fraud.alerts['decline-spike'] ?? 0) > 0 &&
      dq.unexpected.length === 0 &&
      reconciliation.breaksMatchInjected &&
      (!replay || replay.newPostings === 0) &&
      (!regionOutage || outageHeld(regionOutage)) &&
      stuckFound.length === sim.truth.stuckPaymentIds.length &&
      completed === opts.payments - opts.stuck
    );
    if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else printSummary(summary, failed);
  } finally {
    await supervisor.stop();
    await parties.close();
    await admin.disconnect().catch(() => undefined);
    await connection.close();
    await pool.end();
    await riskPool.end();
  }
  if (failed) process.exitCode = 1;
}

/**
 * Backfills the run's window [from, now) of every source from the raw archive through the router's path,
 * waits until the payments it may have woken are quiet again, and counts the journal entries it added.
 */
async function replayWindow(
  client: Client,
  config: Config,
  pool: Pool,
  run: { runId: string; from: string; deadline: number; settled: () => Promise<boolean> },
) {
  const before = (await summarizeLedger(pool, `${run.runId}-`)).entries;
  const request = {
    id: `${run.runId}-replay`,
    from: run.from,
    to: new Date().toISOString(),
    sources: [...REPLAY_SOURCES],
    dryRun: false,
    ratePerSecond: 0,
  };
  const startedAt = Date.now();
  await startBackfill(client, config, request);
  const state = await waitForBackfill(client, request.id);
  const wallMs = Date.now() - startedAt;
  await waitFor('the payments a replay could wake to settle', run.deadline, run.settled);
  const after = (await summarizeLedger(pool, `${run.runId}-`)).entries;
  log.info('replay of the run window done', { id: request.id, records: state.records, newFacts: state.newFacts });
  return {
    id: request.id,
    from: request.from,
    to: request.to,
    objects: state.objectsDone,
    records: state.records,
    facts: state.facts,
    newFacts: state.newFacts,
    quarantined: state.quarantined,
    skipped: state.skipped,
    newPostings: after - before,
    recordsPerSecond: state.recordsPerSecond,
    wallMs,
  };
}

type Fault = (
  | {
      spec: string;
      kind: 'service';
      service: 'postgres' | 'temporal' | 'kafka';
      how: 'fast' | 'kill9';
      seconds: number;
    }
  | { spec: string; kind: 'processes' }
) & {
  /** Begin once this share (0–1) of the run's postings has landed: workflows are mid-posting then. */
  afterPostedShare: number;
};

/**
 * `postgres-fast:<s>`, `postgres-kill:<s>`, `temporal-kill:<s>`, `kafka-kill:<s>` or `processes`, each optionally
 * `@<share>`: begin once that share of the run's postings has landed (postgres-kill:15@0.3), not at once.
 */
function parseFault(spec: string): Fault {
  const at = /^(.*)@(0(?:\.\d+)?|1)$/.exec(spec);
  const afterPostedShare = at ? Number(at[2]) : 0;
  const what = at ? at[1]! : spec;
  if (what === 'processes') return { spec, kind: 'processes', afterPostedShare };
  const m = /^(postgres|temporal|kafka)-(fast|kill):(\d+(?:\.\d+)?)$/.exec(what);
  if (!m || (m[2] === 'fast' && m[1] !== 'postgres'))
    throw new Error(
      `--fault "${spec}": use postgres-fast:<seconds>, postgres-kill:<seconds>, temporal-kill:<seconds>, kafka-kill:<seconds> or processes, optionally followed by @<share of postings landed first, 0–1>`,
    );
  return {
    spec,
    kind: 'service',
    service: m[1] as 'postgres' | 'temporal' | 'kafka',
    how: m[2] === 'fast' ? 'fast' : 'kill9',
    seconds: Number(m[3]),
    afterPostedShare,
  };
}

interface FaultReport {
  fault: string;
  /** Ledger entries of this run when the drill began, of `expectedEntries`: below it means mid-run. */
  postedAtStart: number;
  expectedEntries: number;
  downMs: number;
}

/** Runs the drills one after the other; each ends with its service (or every process) back. */
async function runFaults(
  faults: Fault[],
  ctx: { supervisor: Supervisor; pool: Pool; runId: string; truth: GroundTruth },
): Promise<FaultReport[]> {
  const reports: FaultReport[] = [];
  const posted = (): Promise<number> =>
    retryTransient(
      'postgres',
      'counting postings before a drill',
      async () => (await summarizeLedger(ctx.pool, `${ctx.runId}-`)).entries,
      { log },
    );
  for (const fault of faults) {
    const wanted = Math.ceil(fault.afterPostedShare * ctx.truth.moneyMovingFacts);
    if (wanted > 0) {
      log.info('drill: waiting for postings to land first', { fault: fault.spec, postings: wanted });
      await waitFor('postings before the drill', Date.now() + 600_000, async () => (await posted()) >= wanted);
    }
    const postedAtStart = await posted();
    const began = Date.now();
    if (fault.kind === 'service') {
      log.warn('drill: taking a service down', { fault: fault.spec, postedAtStart });
      await takeDown(fault.service, fault.how);
      await new Promise((r) => setTimeout(r, fault.seconds * 1000));
      await bringBack(fault.service);
    } else {
      for (const name of ctx.supervisor.names()) {
        const restarts = ctx.supervisor.report().find((p) => p.name === name)!.restarts;
        log.warn('drill: kill -9 of a pipeline process', { process: name });
        await ctx.supervisor.process(name).kill9();
        await ctx.supervisor.restarted(name, restarts + 1);
      }
    }
    const downMs = Date.now() - began;
    log.info('drill over', { fault: fault.spec, downMs });
    reports.push({ fault: fault.spec, postedAtStart, expectedEntries: ctx.truth.moneyMovingFacts, downMs });
  }
  return reports;
}

/**
 * What the demo waits for, once a second: facts in, postings (and their rate), open payments and the
 * router's Kafka lag. On a terminal, one line rewritten in place; otherwise (CI, pipes) a log line
 * every 15 s. Never on stdout, which `--json` keeps for its one object.
 */
function startProgress(
  ctx: {
    pool: Pool;
    client: Client;
    admin: KafkaAdmin;
    topics: TopicSet;
    runId: string;
    ofRun: string;
    truth: GroundTruth;
    payments: number;
  },
  json: boolean,
): { stop(): void } {
  const tty = process.stderr.isTTY === true && !json;
  let last: { at: number; entries: number } | undefined;
  let lastLogged = 0;
  let busy = false;
  const tick = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      const [facts, ledger, open, lag] = await Promise.all([
        factsByPath(ctx.pool, `${ctx.runId}-`).then((f) => f.total),
        summarizeLedger(ctx.pool, `${ctx.runId}-`).then((l) => l.entries),
        ctx.client.workflow.count(`${ctx.ofRun} AND ExecutionStatus = "Running"`).then((c) => c.count),
        consumerGroupLag(ctx.admin, PAYMENT_ROUTER_GROUP, ctx.topics.paymentEvents),
      ]);
      const now = Date.now();
      const rate = last ? ((ledger - last.entries) * 1000) / Math.max(1, now - last.at) : 0;
      last = { at: now, entries: ledger };
      const status = {
        facts: `${facts}/${ctx.truth.uniqueEvents}`,
        postings: `${ledger}/${ctx.truth.moneyMovingFacts}`,
        postingsPerSecond: Math.round(rate),
        openPayments: open,
        routerLag: lag,
      };
      if (tty) {
        process.stderr.write(
          `\r\x1b[Kfacts ${status.facts} · postings ${status.postings} (${status.postingsPerSecond}/s) · open payments ${open} of ${ctx.payments} · router lag ${lag}`,
        );
      } else if (now - lastLogged >= 15_000) {
        lastLogged = now;
        log.info('progress', status);
      }
    } catch (err) {
      if (tty) process.stderr.write(`\r\x1b[Kwaiting: a dependency does not answer (${errorMessage(err)})`);
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), 1000);
  return {
    stop() {
      clearInterval(timer);
      if (tty) process.stderr.write('\r\x1b[K');
    },
  };
}

/** Waits out the CAPTURED SLA, runs one SLA sweep, and waits until the withheld payments show STUCK. */
async function flagStuck(
  client: Client,
  opts: ReturnType<typeof options>,
  ofRun: string,
  deadline: number,
): Promise<string[]> {
  const config = loadConfig();
  const slas = { ...parseSlas(config.PAYMENT_SLAS), CAPTURED: opts.capturedSlaMs };
  await new Promise((r) => setTimeout(r, opts.capturedSlaMs + 500));
  await client.workflow.execute(slaSweepWorkflow, {
    workflowId: `sla-sweep/${opts.runId}`,
    taskQueue: PAYMENT_TASK_QUEUE,
    // Only this run's payments: a shared dev database holds other runs' (production sweeps cover all).
    args: [
      {
        slas,
        limit: 10_000,
        preconditionTimeoutMs: config.PAYMENT_PRECONDITION_TIMEOUT_MS,
        paymentIdPrefix: `${opts.runId}-`,
      },
    ],
  });
  const query = `${ofRun} AND PaymentStatus = "STUCK"`;
  await waitFor(
    'the withheld payments to show STUCK',
    deadline,
    async () => (await client.workflow.count(query)).count >= opts.stuck,
  );
  const ids: string[] = [];
  for await (const w of client.workflow.list({ query })) ids.push(w.workflowId.replace(/^payment\//, ''));
  return ids.sort();
}

/** During the outage the down region delivered nothing and every other region delivered. */
function outageHeld(o: { region: string; gatewayFactsDuringOutage: Record<string, number> }): boolean {
  const others = REGIONS.filter((r) => r !== o.region);
  return (
    (o.gatewayFactsDuringOutage[o.region] ?? 0) === 0 && others.every((r) => (o.gatewayFactsDuringOutage[r] ?? 0) > 0)
  );
}

/** Quarantined messages keyed `<prefix>…` after `from`: read until `expected` arrived or the deadline. */
async function countQuarantined(
  kafka: KafkaClient,
  quarantineTopic: string,
  from: TopicOffsets,
  prefix: string,
  expected: number,
  deadline: number,
): Promise<number> {
  if (expected === 0) return 0;
  let seen = 0;
  const count = (message: { key: Buffer | null }): boolean => {
    if (message.key?.toString().startsWith(prefix)) seen += 1;
    return seen >= expected;
  };
  await readTopics(
    kafka,
    new Map([[quarantineTopic, from]]),
    (_t, _p, m) => count(m),
    Math.max(0, deadline - Date.now()),
  );
  return seen;
}

/** The webhook edge's own account: events it is holding in its spool (Kafka was unreachable). */
async function edgeStatus(baseUrl: string): Promise<{ spooled: number }> {
  const res = await fetch(`${baseUrl}/readyz`);
  const body = (await res.json()) as { spooled?: number };
  return { spooled: body.spooled ?? 0 };
}

/**
 * One PartnerPoll per configured partner, started fresh: the simulated partner API starts empty at
 * every run, so a poll left by an earlier run would hold a cursor past its records.
 */
async function startPartnerPolls(client: Client, config: Config): Promise<void> {
  const settings = { ...partnerPollSettings(config), idleMs: 1000 };
  for (const partner of parsePartnerApis(secretSetting(config, 'PARTNER_APIS'))) {
    const handle = client.workflow.getHandle(partnerPollWorkflowId(partner.id));
    await handle.terminate('demo: the simulated partner API restarted empty').catch(() => undefined);
    await ensurePartnerPoll(client, partner.id, settings);
  }
}

function printSummary(
  s: {
    payments: number;
    eventsProduced: number;
    paymentsClosed: number;
    anomalies: number;
    actionsPerPayment: number;
    stuck: { found: number; paymentIds: string[] };
    ledger: Record<string, unknown>;
    archive: ArchiveSummary;
    fraud: Record<string, unknown>;
    replay?: { records: number; facts: number; newPostings: number; recordsPerSecond: number };
    finance: Record<string, unknown>;
    dq: { checks: number; failed: string[]; unexpected: string[] };
    reconciliation: Record<string, unknown>;
    temporal: { uiUrl: string; workflowsUrl: string; stuckUrl: string };
    wallTimeMs: number;
  },
  failed: boolean,
): void {
  const lines = [
    `PayLink demo ${failed ? 'FAILED' : 'OK'} in ${(s.wallTimeMs / 1000).toFixed(1)} s`,
    `  payments ${s.payments}, events produced ${s.eventsProduced}, closed ${s.paymentsClosed}, anomalies ${s.anomalies}`,
    `  Temporal actions per payment (from histories): ${s.actionsPerPayment}`,
    `  ledger ${JSON.stringify(s.ledger)}`,
    `  raw archive (S3) ${JSON.stringify(s.archive)}`,
    `  fraud views ${JSON.stringify(s.fraud)}`,
    ...(s.replay ? [`  replay of the run's window from the archive ${JSON.stringify(s.replay)}`] : []),
    `  finance (Snowflake) ${JSON.stringify(s.finance)}`,
    `  data quality ${JSON.stringify({ checks: s.dq.checks, failed: s.dq.failed, unexpected: s.dq.unexpected })}`,
    `  reconciliation ${JSON.stringify(s.reconciliation)}`,
    `  Temporal Web UI: ${s.temporal.uiUrl}`,
    `  this run's payments: ${s.temporal.workflowsUrl}`,
  ];
  if (s.stuck.found > 0) {
    lines.push(`  stuck payments (${s.stuck.found}): ${s.temporal.stuckUrl}`);
    lines.push(
      `  resolve one (with \`npm run worker\` running): npm run payment -- resolve ${s.stuck.paymentIds[0]} --reason "written off"`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

/**
 * The data-quality checks over the run's payments, for the day window(s) it ran in (docs/data-quality.md).
 * The demo injects duplicates, shuffles and drift, so warnings are expected; a failing critical check is not.
 */
/**
 * The partners publish their settlement files for the run's payments (with the simulator's injected breaks)
 * in a bucket of the run's own (a partner's file for a day has one name), and finance reconciles each day the
 * run touched, on the finance worker, as `npm run finance -- reconcile` does: the breaks found must be exactly
 * the injected ones (by type, payment, amount and currency).
 */
async function reconcileRun(
  client: Client,
  config: Config,
  pool: Pool,
  simulated: Parameters<typeof simulateSettlementFiles>[0],
  notifiedAt: Record<string, string>,
  opts: { runId: string; seed: number },
): Promise<{
  windows: number;
  matched: number;
  breaks: Record<string, number>;
  breaksMatchInjected: boolean;
  openBreaks: number;
}> {
  // The Adyen-style partner's report names a modification by the PSP reference it notified, and books it the
  // day it notified it (PayLink dates it on receipt, since the notification signs no date); the simulated day
  // would put it months away from PayLink's books.
  const booked = (e: PaymentEvent): PaymentEvent => {
    const at = datedOnReceipt(e) ? notifiedAt[e.idempotencyKey] : undefined;
    return asNotified(at ? { ...e, occurredAt: at } : e);
  };
  const sim = { ...simulated, events: simulated.events.map(booked), deliveries: simulated.deliveries.map(booked) };
  const truth = simulateSettlementFiles(sim, { seed: opts.seed, breaks: breakPlanFor(sim) });
  const bucket = `settlements-${opts.runId}`.toLowerCase();
  const s3 = createS3Client(config);
  try {
    await ensureBucket(s3, bucket);
    await publishSettlementFiles(s3, bucket, truth.files);
  } finally {
    s3.destroy();
  }
  const scope = `${opts.runId}-`;
  const days = [
    ...new Set([...sim.events.map((e) => e.occurredAt.slice(0, 10)), ...truth.files.map((f) => f.date)]),
  ].sort();
  let matched = 0;
  for (const window of days) {
    const r = await client.workflow.execute(reconciliationWorkflow, {
      taskQueue: RECONCILIATION_TASK_QUEUE,
      workflowId: reconciliationWorkflowId(window, scope),
      args: [{ window, scope, oltpSchema: config.CDC_SCHEMA, bucket }],
      workflowExecutionTimeout: '5 minutes',
    });
    matched += r.items.matched;
  }
  const found = await listBreaks(pool, { scope });
  const key = (b: { type: string; paymentId: string; amountMinor: number; currency: string }): string =>
    `${b.type}|${b.paymentId}|${b.amountMinor}|${b.currency}`;
  const foundKeys = found.map(key).sort();
  const injectedKeys = truth.breaks.map(key).sort();
  const breaks: Record<string, number> = {};
  for (const b of found) breaks[b.type] = (breaks[b.type] ?? 0) + 1;
  const breaksMatchInjected = JSON.stringify(foundKeys) === JSON.stringify(injectedKeys);
  if (!breaksMatchInjected)
    log.warn('reconciliation breaks differ from the injected ones', {
      unexpected: foundKeys.filter((k) => !injectedKeys.includes(k)),
      notFound: injectedKeys.filter((k) => !foundKeys.includes(k)),
    });
  return {
    windows: days.length,
    matched,
    breaks,
    breaksMatchInjected,
    openBreaks: (await listBreaks(pool, { scope, open: true })).length,
  };
}

async function dataQualityOfRun(
  config: Config,
  pool: Pool,
  scope: string,
  started: number,
): Promise<{ checks: number; failed: string[]; unexpected: string[]; byCheck: Record<string, unknown> }> {
  const snowflake = await connectSnowflake(config);
  const oltp = createOltpPool(config, 1);
  try {
    const activities = createDataQualityActivities({ pool, oltp, oltpSchema: config.CDC_SCHEMA, snowflake, log });
    const windows = [...new Set([dayWindowOf(started), dayWindowOf(Date.now())])];
    const runs = [];
    for (const window of windows) runs.push((await runDataQualityHere(activities, { window, scope })).results);
    const results = runs.flat();
    const name = (r: DqResult): string => (windows.length > 1 ? `${r.check}@${r.window.id}` : r.check);
    return {
      checks: results.length,
      failed: results.filter((r) => !r.passed).map(name),
      unexpected: results.filter((r) => !r.passed && r.severity === 'critical').map(name),
      byCheck: Object.fromEntries(
        results.map((r) => [name(r), { passed: r.passed, measured: r.measured, summary: r.summary }]),
      ),
    };
  } finally {
    await snowflake.close().catch(() => undefined);
    await oltp.end();
  }
}

main().catch((err: unknown) => {
  log.error('demo failed', { error: errorMessage(err) });
  process.exit(1);
});

import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import type { Pool } from 'pg';
import { parseSlas } from '../activities/sla';
import { loadConfig } from '../config';
import { compareWithTruth, summarizeLedger } from '../ledger/checks';
import { createLogger, errorMessage } from '../logger';
import { countActionsForWorkflows } from '../ops/billable-actions';
import { scanStores } from '../ops/pii-scan';
import { simulatePayments } from '../simulator/payments';
import { publishPaymentEvents } from '../simulator/publish';
import { up } from '../stack/cli';
import { migrate } from '../stores/migrate';
import { createPool } from '../stores/postgres';
import { TOPICS, consumerGroupLag, createKafka, createProducer } from '../streams/kafka';
import { PAYMENT_ROUTER_GROUP } from '../streams/payment-router';
import { PAYMENT_TASK_QUEUE, paymentWorkflowId } from '../workflows/payment';
import { slaSweepWorkflow } from '../workflows/sla-sweep';
import { type PipelineProcess, startPipelineProcess } from './processes';

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
      'captured-sla-s': { type: 'string', default: '5' },
      'run-id': { type: 'string' },
      'timeout-s': { type: 'string', default: '600' },
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
    capturedSlaMs: num('captured-sla-s', values['captured-sla-s']) * 1000,
    // Unique per run by default so runs on a shared stack never collide; fixed with --run-id.
    runId: values['run-id'] ?? `demo${seed}-${Date.now().toString(36)}`,
    timeoutMs: num('timeout-s', values['timeout-s']) * 1000,
    json: values.json ?? false,
  };
}

async function waitFor(what: string, deadline: number, check: () => Promise<boolean>): Promise<void> {
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function main(): Promise<void> {
  const opts = options();
  const started = Date.now();
  const config = loadConfig();
  await up();
  const pool = createPool(config);
  await migrate(pool);

  const processes: PipelineProcess[] = [];
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const kafka = createKafka(config, 'paylink-demo');
  const producer = createProducer(kafka);
  const admin = kafka.admin();
  let failed = true;
  try {
    processes.push(startPipelineProcess('payment-worker', 'src/workers/payment-worker.ts'));
    processes.push(startPipelineProcess('payment-router', 'src/streams/payment-router-main.ts'));
    await Promise.all(processes.map((p) => p.ready));
    log.info('worker and router ready', { runId: opts.runId });

    const sim = simulatePayments(opts);
    await Promise.all([producer.connect(), admin.connect()]);
    await publishPaymentEvents(producer, sim.deliveries);
    log.info('simulator published', { events: sim.deliveries.length, unique: sim.truth.uniqueEvents });

    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    const ofRun = `WorkflowType = "paymentWorkflow" AND WorkflowId STARTS_WITH "payment/${opts.runId}-"`;
    const count = async (q: string): Promise<number> => (await client.workflow.count(`${ofRun} AND ${q}`)).count;
    const deadline = started + opts.timeoutMs;
    await waitFor(
      'the router to consume every event',
      deadline,
      async () => (await consumerGroupLag(admin, PAYMENT_ROUTER_GROUP, TOPICS.paymentEvents)) === 0,
    );
    await waitFor('every money-moving fact to be posted', deadline, async () => {
      return (await summarizeLedger(pool, `${opts.runId}-`)).entries >= sim.truth.moneyMovingFacts;
    });
    // Visibility counts runs, and a payment reopened by a late fact has several: count open ones instead.
    await waitFor('every payment without a withheld settlement to close', deadline, async () => {
      return (await count('ExecutionStatus = "Running"')) <= opts.stuck;
    });

    let stuckFound: string[] = [];
    if (opts.stuck > 0) stuckFound = await flagStuck(client, opts, ofRun, deadline);

    const ledger = await summarizeLedger(pool, `${opts.runId}-`);
    const comparison = compareWithTruth(ledger, sim.truth);
    const anomalies = await countAnomalies(pool, `${opts.runId}-`);
    const completed = opts.payments - (await count('ExecutionStatus = "Running"'));
    const actions = await countActionsForWorkflows(
      client,
      [...new Set(sim.events.map((e) => e.paymentId))].map(paymentWorkflowId),
    );
    // No raw PAN/PII anywhere outside the edge and the vault: Kafka, S3, tables, warehouse, logs.
    const pii = await scanStores(config);
    const summary = {
      runId: opts.runId,
      seed: opts.seed,
      payments: opts.payments,
      eventsProduced: sim.deliveries.length,
      uniqueEvents: sim.truth.uniqueEvents,
      duplicateRate: opts.duplicateRate,
      shuffle: opts.shuffle,
      paymentsClosed: completed,
      stuck: { expected: sim.truth.stuckPaymentIds.length, found: stuckFound.length, paymentIds: stuckFound },
      anomalies,
      piiLeaks: pii.leaks.length,
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
      stuckFound.length === sim.truth.stuckPaymentIds.length &&
      completed === opts.payments - opts.stuck
    );
    if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else printSummary(summary, failed);
  } finally {
    await Promise.all(processes.map((p) => p.stop()));
    await producer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    await connection.close();
    await pool.end();
  }
  if (failed) process.exitCode = 1;
}

/** Waits out the CAPTURED SLA, runs one SLA sweep, and waits until the withheld payments show STUCK. */
async function flagStuck(
  client: Client,
  opts: ReturnType<typeof options>,
  ofRun: string,
  deadline: number,
): Promise<string[]> {
  const slas = { ...parseSlas(loadConfig().PAYMENT_SLAS), CAPTURED: opts.capturedSlaMs };
  await new Promise((r) => setTimeout(r, opts.capturedSlaMs + 500));
  await client.workflow.execute(slaSweepWorkflow, {
    workflowId: `sla-sweep/${opts.runId}`,
    taskQueue: PAYMENT_TASK_QUEUE,
    args: [{ slas, limit: 10_000 }],
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

async function countAnomalies(pool: Pool, prefix: string): Promise<number> {
  const r = await pool.query<{ n: number }>(
    `select count(*)::int8 as n from ledger.payment_flags where kind = 'anomaly' and payment_id like $1`,
    [`${prefix}%`],
  );
  return r.rows[0]?.n ?? 0;
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

main().catch((err: unknown) => {
  log.error('demo failed', { error: errorMessage(err) });
  process.exit(1);
});

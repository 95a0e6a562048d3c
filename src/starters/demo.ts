import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../config';
import { compareWithTruth, summarizeLedger } from '../ledger/checks';
import { createLogger, errorMessage } from '../logger';
import { simulatePayments } from '../simulator/payments';
import { up } from '../stack/cli';
import { migrate } from '../stores/migrate';
import { createPool } from '../stores/postgres';
import { TOPICS, createKafka, createProducer } from '../streams/kafka';
import { PAYMENT_ROUTER_GROUP } from '../streams/payment-router';
import { publishPaymentEvents } from '../simulator/publish';
import { type PipelineProcess, startPipelineProcess } from './processes';

// `npm run demo`: the main job. Stack up, migrate, worker + router, simulate, wait, check, summarize.

const log = createLogger('demo');

function options() {
  const { values } = parseArgs({
    options: {
      payments: { type: 'string', default: '200' },
      seed: { type: 'string', default: '42' },
      'duplicate-rate': { type: 'string', default: '0' },
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
    const settledQuery = `WorkflowType = "paymentWorkflow" AND WorkflowId STARTS_WITH "payment/${opts.runId}-" AND PaymentStatus = "SETTLED"`;
    const deadline = started + opts.timeoutMs;
    await waitFor('router to consume every event', deadline, () => routerCaughtUp(admin));
    await waitFor('every payment to reach SETTLED', deadline, async () => {
      const { count } = await client.workflow.count(settledQuery);
      return count >= opts.payments;
    });
    await waitFor('every money-moving fact to be posted', deadline, async () => {
      const s = await summarizeLedger(pool, `${opts.runId}-`);
      return s.entries >= sim.truth.moneyMovingFacts;
    });

    const ledger = await summarizeLedger(pool, `${opts.runId}-`);
    const comparison = compareWithTruth(ledger, sim.truth);
    const settled = (await client.workflow.count(settledQuery)).count;
    const summary = {
      runId: opts.runId,
      seed: opts.seed,
      payments: opts.payments,
      eventsProduced: sim.deliveries.length,
      uniqueEvents: sim.truth.uniqueEvents,
      duplicateRate: opts.duplicateRate,
      paymentsSettled: settled,
      ledger: {
        entries: ledger.entries,
        unbalanced: ledger.unbalanced,
        duplicatePostings: ledger.duplicatePostings,
        matchesSimulator: comparison.matches,
        mismatches: comparison.mismatches,
      },
      temporal: {
        uiUrl: config.TEMPORAL_UI_URL,
        workflowsUrl: `${config.TEMPORAL_UI_URL}/namespaces/${config.TEMPORAL_NAMESPACE}/workflows?query=${encodeURIComponent(settledQuery)}`,
      },
      wallTimeMs: Date.now() - started,
    };
    failed = !(
      ledger.unbalanced === 0 &&
      ledger.duplicatePostings === 0 &&
      comparison.matches &&
      settled === opts.payments
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

/** True when the router group's committed offsets reached every partition's end. */
async function routerCaughtUp(admin: ReturnType<ReturnType<typeof createKafka>['admin']>): Promise<boolean> {
  const [ends, committed] = await Promise.all([
    admin.fetchTopicOffsets(TOPICS.paymentEvents),
    admin.fetchOffsets({ groupId: PAYMENT_ROUTER_GROUP, topics: [TOPICS.paymentEvents] }),
  ]);
  const done = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
  return ends.every((e) => BigInt(e.high) === 0n || (done.get(e.partition) ?? -1n) >= BigInt(e.high));
}

function printSummary(
  s: {
    payments: number;
    eventsProduced: number;
    paymentsSettled: number;
    ledger: Record<string, unknown>;
    temporal: { uiUrl: string; workflowsUrl: string };
    wallTimeMs: number;
  },
  failed: boolean,
): void {
  const lines = [
    `PayLink demo ${failed ? 'FAILED' : 'OK'} in ${(s.wallTimeMs / 1000).toFixed(1)} s`,
    `  payments ${s.payments}, events produced ${s.eventsProduced}, settled ${s.paymentsSettled}`,
    `  ledger ${JSON.stringify(s.ledger)}`,
    `  Temporal Web UI: ${s.temporal.uiUrl}`,
    `  this run's payments: ${s.temporal.workflowsUrl}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  log.error('demo failed', { error: errorMessage(err) });
  process.exit(1);
});

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { History } from '@temporalio/common/lib/proto-utils';
import { NativeConnection, Worker, type WorkflowBundle, bundleWorkflowCode } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { loadConfig } from '../config';
import type { PaymentEvent } from '../contracts/payment-event';
import { createLogger, errorMessage } from '../logger';
import { type Simulation, simulatePayments } from '../simulator/payments';
import { services } from '../stack/cli';
import { migrate } from '../stores/migrate';
import { createPool } from '../stores/postgres';
import { type RoutingPolicy, routeFact } from '../streams/payment-router';
import { createPaymentWorker } from '../workers/payment-worker';
import { paymentWorkflowId } from '../workflows/payment';
import { historyFromJSON, historyToJSON } from './history-json';

// `npm run histories:record`: runs named scenarios through the real worker + routeFact on the running
// stack and writes each workflow history as a replay fixture for test/unit/replay.test.ts.

const log = createLogger('record-histories');

const repoRoot = resolve(__dirname, '..', '..');
const HISTORIES_DIR = join(repoRoot, 'test', 'fixtures', 'histories');
const ALTERED_DIR = join(HISTORIES_DIR, 'altered');
const ALTERED_FILE = join(ALTERED_DIR, 'happy-path-altered.json');

/** A scenario's workflow that has not completed by then is stuck: terminate it and fail the recording. */
const SCENARIO_TIMEOUT_MS = 60_000;

export interface Scenario {
  /** File name stem: test/fixtures/histories/<name>.json. */
  name: string;
  seed: number;
  duplicateRate: number;
  /** 'live': signalled while the worker runs; 'queued': all signalled before it polls (one workflow task). */
  delivery: 'live' | 'queued';
  /** Router policy overrides (e.g. lifecycleSearchAttribute to cover search-attribute upserts). */
  policy?: Partial<Omit<RoutingPolicy, 'taskQueue'>>;
  /** The deliveries of the one simulated payment, in the order routeFact sends them. */
  deliveries(sim: Simulation): PaymentEvent[];
}

// Scenarios only choose which facts reach routeFact and in what order, so they survive workflow rewrites.
export const SCENARIOS: Scenario[] = [
  { name: 'happy-path', seed: 101, duplicateRate: 0, delivery: 'live', deliveries: (sim) => sim.events },
  // A duplicate of the closing fact sent live would reopen the payment as a new run, hence 'queued'.
  { name: 'duplicates', seed: 102, duplicateRate: 1, delivery: 'queued', deliveries: (sim) => sim.deliveries },
  {
    name: 'out-of-order',
    seed: 103,
    duplicateRate: 0,
    delivery: 'live',
    policy: { lifecycleSearchAttribute: true },
    deliveries: (sim) => [...sim.events].reverse(),
  },
];

const DEFAULT_POLICY: Omit<RoutingPolicy, 'taskQueue'> = {
  preconditionTimeoutMs: 60_000,
  lifecycleSearchAttribute: false,
};

interface Recorded {
  scenario: string;
  workflowId: string;
  history: History;
  facts: number;
  ms: number;
}

interface RecordContext {
  client: Client;
  nativeConnection: NativeConnection;
  namespace: string;
  pool: ReturnType<typeof createPool>;
  workflowBundle: WorkflowBundle;
  runTag: string;
}

async function requireStack(...names: string[]): Promise<void> {
  const down: string[] = [];
  for (const s of services.filter((x) => names.includes(x.name))) {
    if (!(await s.answers())) down.push(`${s.name} at ${s.address()}`);
  }
  if (down.length > 0) {
    throw new Error(`required services are not answering: ${down.join(', ')}. Run \`npm run stack -- up\`.`);
  }
}

async function recordScenario(ctx: RecordContext, s: Scenario): Promise<Recorded> {
  const started = Date.now();
  const { client } = ctx;
  const sim = simulatePayments({
    payments: 1,
    seed: s.seed,
    duplicateRate: s.duplicateRate,
    runId: `${ctx.runTag}-${s.name}`,
    happyPathOnly: true,
  });
  const facts = s.deliveries(sim);
  const [first, ...rest] = facts;
  if (!first) throw new Error(`scenario ${s.name} delivers no facts`);
  const workflowId = paymentWorkflowId(first.paymentId);
  // One task queue per scenario, so a 'queued' scenario's facts wait for this scenario's worker only.
  const policy: RoutingPolicy = { ...DEFAULT_POLICY, ...s.policy, taskQueue: `${ctx.runTag}-${s.name}` };
  let runId = '';

  const send = async (): Promise<void> => {
    await routeFact(client, first, false, policy);
    // Pin the run the first fact started, so a fact arriving after close (a second run) is detected.
    runId = (await client.workflow.getHandle(workflowId).describe()).runId;
    for (const fact of rest) await routeFact(client, fact, false, policy);
  };
  const complete = async (): Promise<void> => {
    const handle = client.workflow.getHandle(workflowId, runId);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`did not complete within ${SCENARIO_TIMEOUT_MS} ms`)),
        SCENARIO_TIMEOUT_MS,
      );
    });
    try {
      await Promise.race([handle.result(), timeout]);
    } catch (err) {
      await handle.terminate('record-histories: scenario failed').catch(() => undefined);
      throw new Error(`scenario ${s.name} (${workflowId}): ${errorMessage(err)}`);
    } finally {
      clearTimeout(timer);
    }
  };

  const worker = await createPaymentWorker({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    pool: ctx.pool,
    taskQueue: policy.taskQueue,
    workflowBundle: ctx.workflowBundle,
  });
  if (s.delivery === 'queued') {
    await send();
    await worker.runUntil(complete);
  } else {
    await worker.runUntil(async () => {
      await send();
      await complete();
    });
  }

  const latest = await client.workflow.getHandle(workflowId).describe();
  if (latest.runId !== runId) {
    throw new Error(`scenario ${s.name}: a fact started a second run ${latest.runId}; the history would be partial`);
  }
  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  return { scenario: s.name, workflowId, history, facts: facts.length, ms: Date.now() - started };
}

/** A deep copy via the canonical JSON form, so an alteration never touches the recorded history. */
function cloneHistory(history: History): History {
  return historyFromJSON(JSON.parse(historyToJSON(history)));
}

/** Renames activity_type inside a local-activity marker's JSON payload; undefined if it has none. */
function renameLocalActivityType(data: Uint8Array): { data: Uint8Array; from: string; to: string } | undefined {
  const parsed: unknown = JSON.parse(Buffer.from(data).toString('utf8'));
  if (typeof parsed !== 'object' || parsed === null || !('activity_type' in parsed)) return undefined;
  if (typeof parsed.activity_type !== 'string') return undefined;
  const to = `${parsed.activity_type}__altered`;
  return { data: Buffer.from(JSON.stringify({ ...parsed, activity_type: to })), from: parsed.activity_type, to };
}

// The history says the first activity was `<type>__altered` while the code calls `<type>`: Core's nondeterminism error.
export function alterHistory(recorded: History): { history: History; alteration: string } {
  const history = cloneHistory(recorded);
  const events = history.events ?? [];
  // 1. A (remote) activity: its ActivityTaskScheduled event's activityType.
  for (const e of events) {
    const activityType = e.activityTaskScheduledEventAttributes?.activityType;
    if (activityType?.name) {
      const from = activityType.name;
      activityType.name = `${from}__altered`;
      return {
        history,
        alteration: `event ${String(e.eventId)} ActivityTaskScheduled activityType ${from} -> ${activityType.name}`,
      };
    }
  }
  // 2. A local activity (the current workflow's postings): activity_type in its "core_local_activity" marker.
  for (const e of events) {
    const marker = e.markerRecordedEventAttributes;
    const payload = marker?.markerName === 'core_local_activity' ? marker.details?.data?.payloads?.[0] : undefined;
    const renamed = payload?.data ? renameLocalActivityType(payload.data) : undefined;
    if (payload && renamed) {
      payload.data = renamed.data;
      return {
        history,
        alteration: `event ${String(e.eventId)} local-activity marker activity_type ${renamed.from} -> ${renamed.to}`,
      };
    }
  }
  // A changed TimerStarted timerId still replays (Core matches timers by sequence), so no timer fallback.
  throw new Error('happy-path history has no activity or local-activity marker to alter: add an alteration');
}

/** Replays before writing, so a recording the replay test cannot use is never left behind. */
async function verifyReplay(
  workflowBundle: WorkflowBundle,
  recorded: Recorded[],
  altered: { history: History; workflowId: string },
): Promise<void> {
  const inputs = [...recorded.map((r) => ({ history: r.history, workflowId: r.workflowId })), altered];
  const results = [];
  for await (const result of Worker.runReplayHistories({ workflowBundle }, inputs)) results.push(result);
  if (results.length !== inputs.length) throw new Error(`replayed ${results.length} of ${inputs.length} histories`);
  for (const [i, r] of recorded.entries()) {
    const error = results[i]?.error;
    if (error) throw new Error(`recorded ${r.scenario} does not replay: ${error.message}`);
  }
  const alteredError = results[recorded.length]?.error;
  if (!(alteredError instanceof DeterminismViolationError)) {
    throw new Error(
      `altered history did not fail with DeterminismViolationError: ${alteredError?.message ?? 'no error'}`,
    );
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const config = loadConfig();
  await requireStack('temporal', 'postgres');

  const pool = createPool(config, 4);
  const nativeConnection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    await migrate(pool);
    const workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows') });
    const ctx: RecordContext = {
      client: new Client({ connection, namespace: config.TEMPORAL_NAMESPACE }),
      nativeConnection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      workflowBundle,
      runTag: `hist-${Date.now().toString(36)}`,
    };

    const recorded: Recorded[] = [];
    for (const s of SCENARIOS) {
      const r = await recordScenario(ctx, s);
      log.info('recorded', {
        scenario: r.scenario,
        workflowId: r.workflowId,
        facts: r.facts,
        events: r.history.events?.length,
        ms: r.ms,
      });
      recorded.push(r);
    }

    const happy = recorded.find((r) => r.scenario === 'happy-path');
    if (!happy) throw new Error('the happy-path scenario is required: the altered history is derived from it');
    const { history: altered, alteration } = alterHistory(happy.history);
    await verifyReplay(workflowBundle, recorded, { history: altered, workflowId: happy.workflowId });

    mkdirSync(ALTERED_DIR, { recursive: true });
    for (const r of recorded) {
      const file = join(HISTORIES_DIR, `${r.scenario}.json`);
      writeFileSync(file, `${historyToJSON(r.history)}\n`);
      log.info('wrote', { file: relative(repoRoot, file) });
    }
    writeFileSync(ALTERED_FILE, `${historyToJSON(altered)}\n`);
    log.info('wrote', { file: relative(repoRoot, ALTERED_FILE), alteration });
    log.info('done', { histories: recorded.length, ms: Date.now() - started });
  } finally {
    await connection.close();
    await nativeConnection.close();
    await pool.end();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    log.error('recording failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

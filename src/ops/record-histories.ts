import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { History } from '@temporalio/common/lib/proto-utils';
import { temporal } from '@temporalio/proto';
import { NativeConnection, Worker, type WorkflowBundle, bundleWorkflowCode } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { type Config, loadConfig } from '../config';
import type { PaymentEvent } from '../contracts/payment-event';
import { tokenizerFromConfig } from '../ingest/tokenize';
import { createLogger, errorMessage } from '../logger';
import { splitByChannel } from '../simulator/channels';
import { createPartnerApiSimulator } from '../simulator/partner-api';
import { type Simulation, simulatePayments } from '../simulator/payments';
import { services } from '../stack/cli';
import { migrateAsOwner } from '../stores/migrate';
import { createPool } from '../stores/postgres';
import { openVault } from '../stores/vault';
import { createEdgePublisher } from '../ingest/edge-publisher';
import { createKafka, ensureTopics, topicsFor } from '../streams/kafka';
import { type RoutingPolicy, routeFact } from '../streams/payment-router';
import { createIngestWorker } from '../workers/ingest-worker';
import { createPaymentWorker } from '../workers/payment-worker';
import { paymentWorkflowId } from '../workflows/payment';
import { type PartnerPollInput, partnerPollWorkflow, partnerPollWorkflowId } from '../workflows/partner-poll';
import { historyFromJSON, historyToJSON } from './history-json';

// `npm run histories:record [-- --only <name>[,<name>]]`: runs named scenarios through the real workers
// on the running stack and writes each workflow history as a replay fixture for test/unit/replay.test.ts.

const log = createLogger('record-histories');

const repoRoot = resolve(__dirname, '..', '..');
const HISTORIES_DIR = join(repoRoot, 'test', 'fixtures', 'histories');
const ALTERED_DIR = join(HISTORIES_DIR, 'altered');
/** Scenarios whose history is also written altered (altered/<name>-altered.json): one per workflow type. */
const ALTERED_SCENARIOS = ['happy-path', 'partner-poll'];
const EventType = temporal.api.enums.v1.EventType;

/** A scenario's workflow that has not completed by then is stuck: terminate it and fail the recording. */
const SCENARIO_TIMEOUT_MS = 60_000;

interface Scenario {
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
// out-of-order-before-waits-patch.json is frozen (not re-recordable): a run from before the
// waits-expire-by-sweep patch, with its precondition timers, that the patched code must still replay.
const SCENARIOS: Scenario[] = [
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
  config: Config;
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

const PARTNER_POLL_SCENARIO = 'partner-poll';

// Small enough that one run holds every command shape: page 1 fails once (injected 500), page 2 follows
// has_more at once, an idle timer, page 3 hits the rate limit (429) and retries, then continue-as-new.
const PARTNER_POLL_RECORDS = 3;
const PARTNER_POLL_SETTINGS: Omit<PartnerPollInput, 'partnerId' | 'carried'> = {
  pageLimit: 2,
  idleMs: 300,
  pagesBeforeContinue: 3,
  historyEventsBeforeContinue: 8_000,
  pageTimeoutMs: 10_000,
};
// Two requests at once, then one per 2 s: page 3 (an idle wait after page 2) is throttled once.
const PARTNER_POLL_RATE_LIMIT = { burst: 2, perSecond: 0.5 };

/** What the partner-poll history must contain to be worth replaying; names what is missing. */
function partnerPollHistoryGaps(history: History): string[] {
  const events = history.events ?? [];
  const count = (type: temporal.api.enums.v1.EventType): number => events.filter((e) => e.eventType === type).length;
  const retriedAfter = new Set(
    events.flatMap((e) => e.activityTaskStartedEventAttributes?.lastFailure?.applicationFailureInfo?.type ?? []),
  );
  const gaps: string[] = [];
  if (count(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) < PARTNER_POLL_SETTINGS.pagesBeforeContinue)
    gaps.push(`${PARTNER_POLL_SETTINGS.pagesBeforeContinue} completed pages`);
  if (!retriedAfter.has('PartnerUnavailable')) gaps.push('a retry after the injected 500 (PartnerUnavailable)');
  if (!retriedAfter.has('PartnerRateLimited')) gaps.push('a retry after a 429 (PartnerRateLimited)');
  if (count(EventType.EVENT_TYPE_TIMER_FIRED) < 1) gaps.push('a fired idle timer');
  if (events.at(-1)?.eventType !== EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)
    gaps.push('a closing continue-as-new');
  return gaps;
}

/** Polls until the run is closed; PartnerPoll never completes, its first run ends in continue-as-new. */
async function waitForRunClosed(client: Client, workflowId: string, runId: string): Promise<string> {
  const deadline = Date.now() + SCENARIO_TIMEOUT_MS;
  for (;;) {
    const { status } = await client.workflow.getHandle(workflowId, runId).describe();
    if (status.name !== 'RUNNING') return status.name;
    if (Date.now() > deadline) throw new Error(`run ${runId} still running after ${SCENARIO_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// The simulated partner API and an ingest worker in-process, each private to this recording.
async function recordPartnerPoll(ctx: RecordContext): Promise<Recorded> {
  const started = Date.now();
  const { client, config } = ctx;
  const partnerId = `${ctx.runTag}-pp`;
  const token = `ptk_${partnerId}`;
  const taskQueue = `${ctx.runTag}-${PARTNER_POLL_SCENARIO}`;
  const workflowId = partnerPollWorkflowId(partnerId);
  const sim = createPartnerApiSimulator({ tokens: [token], rateLimit: PARTNER_POLL_RATE_LIMIT, seed: 5 });
  const settled = splitByChannel(
    simulatePayments({ payments: PARTNER_POLL_RECORDS, seed: 104, duplicateRate: 0, runId: partnerId }).deliveries,
  )['partner-api'];
  if (!settled || settled.length < PARTNER_POLL_RECORDS) throw new Error('seed 104 gave too few settlements');
  sim.publish(settled.slice(0, PARTNER_POLL_RECORDS));
  sim.failNext(1);

  const kafka = createKafka(config, 'record-histories');
  const admin = kafka.admin();
  const publisher = createEdgePublisher(config, kafka, 'paylink-record-histories', taskQueue, log);
  const vault = await openVault(config);
  let runId = '';
  try {
    const url = await sim.listen(0);
    await admin.connect();
    await ensureTopics(admin, config);
    const worker = await createIngestWorker({
      connection: ctx.nativeConnection,
      namespace: ctx.namespace,
      partners: [{ id: partnerId, url, token, region: 'eu-west' }],
      publisher,
      topics: topicsFor(config),
      tokenizer: tokenizerFromConfig(config),
      vault,
      taskQueue,
      workflowBundle: ctx.workflowBundle,
    });
    await worker.runUntil(async () => {
      const handle = await client.workflow.start(partnerPollWorkflow, {
        taskQueue,
        workflowId,
        args: [{ partnerId, ...PARTNER_POLL_SETTINGS }],
      });
      runId = handle.firstExecutionRunId;
      try {
        const status = await waitForRunClosed(client, workflowId, runId);
        if (status !== 'CONTINUED_AS_NEW') throw new Error(`first run closed as ${status}, not CONTINUED_AS_NEW`);
      } finally {
        // The chain would poll forever: end it once the first run is on record (or the recording failed).
        await client.workflow
          .getHandle(workflowId)
          .terminate('record-histories: first run recorded')
          .catch(() => undefined);
      }
    });
  } catch (err) {
    throw new Error(`scenario ${PARTNER_POLL_SCENARIO} (${workflowId}): ${errorMessage(err)}`);
  } finally {
    await publisher.close();
    await admin.disconnect();
    await vault.close();
    await sim.close();
  }

  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  const gaps = partnerPollHistoryGaps(history);
  if (gaps.length > 0) {
    throw new Error(
      `scenario ${PARTNER_POLL_SCENARIO} (${workflowId} run ${runId}): the first run lacks ${gaps.join(', ')} ` +
        `(partner saw ${JSON.stringify(sim.counters)})`,
    );
  }
  // Counters span the chain: the second run may have polled (and been throttled) before the terminate.
  log.info('partner api', { scenario: PARTNER_POLL_SCENARIO, counters: sim.counters });
  return {
    scenario: PARTNER_POLL_SCENARIO,
    workflowId,
    history,
    facts: PARTNER_POLL_RECORDS,
    ms: Date.now() - started,
  };
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
function alterHistory(recorded: History): { history: History; alteration: string } {
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
  throw new Error('the history has no activity or local-activity marker to alter: add an alteration');
}

/** Replays before writing, so a recording the replay test cannot use is never left behind. */
async function verifyReplay(workflowBundle: WorkflowBundle, recorded: Recorded[], altered: Recorded[]): Promise<void> {
  const inputs = [...recorded, ...altered].map((r) => ({ history: r.history, workflowId: r.workflowId }));
  const results = [];
  for await (const result of Worker.runReplayHistories({ workflowBundle }, inputs)) results.push(result);
  if (results.length !== inputs.length) throw new Error(`replayed ${results.length} of ${inputs.length} histories`);
  for (const [i, r] of recorded.entries()) {
    const error = results[i]?.error;
    if (error) throw new Error(`recorded ${r.scenario} does not replay: ${error.message}`);
  }
  for (const [i, r] of altered.entries()) {
    const error = results[recorded.length + i]?.error;
    if (!(error instanceof DeterminismViolationError)) {
      throw new Error(
        `altered ${r.scenario} did not fail with DeterminismViolationError: ${error?.message ?? 'no error'}`,
      );
    }
  }
}

/** `--only a,b` (or `--only a --only b`): the scenarios to record; all of them without it. */
function selectScenarios(argv: string[]): string[] {
  const all = [...SCENARIOS.map((s) => s.name), PARTNER_POLL_SCENARIO];
  const only = argv.flatMap((arg, i) =>
    arg === '--only' ? (argv[i + 1] ?? '').split(',') : arg.startsWith('--only=') ? arg.slice(7).split(',') : [],
  );
  const unknown = only.filter((name) => !all.includes(name));
  if (argv.includes('--only') && only.every((name) => name === '')) throw new Error('--only needs a scenario name');
  if (unknown.length > 0) throw new Error(`--only: unknown scenario ${unknown.join(', ')}; known: ${all.join(', ')}`);
  return only.length > 0 ? all.filter((name) => only.includes(name)) : all;
}

async function main(): Promise<void> {
  const started = Date.now();
  const config = loadConfig();
  const selected = selectScenarios(process.argv.slice(2));
  await requireStack('temporal', 'postgres', ...(selected.includes(PARTNER_POLL_SCENARIO) ? ['kafka'] : []));

  const pool = createPool(config, 4);
  const nativeConnection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    await migrateAsOwner(config);
    const workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows') });
    const ctx: RecordContext = {
      config,
      client: new Client({ connection, namespace: config.TEMPORAL_NAMESPACE }),
      nativeConnection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      workflowBundle,
      runTag: `hist-${Date.now().toString(36)}`,
    };

    const recorded: Recorded[] = [];
    for (const name of selected) {
      const payment = SCENARIOS.find((s) => s.name === name);
      const r = payment ? await recordScenario(ctx, payment) : await recordPartnerPoll(ctx);
      log.info('recorded', {
        scenario: r.scenario,
        workflowId: r.workflowId,
        facts: r.facts,
        events: r.history.events?.length,
        ms: r.ms,
      });
      recorded.push(r);
    }

    // Each workflow type's altered history is derived from its recorded one; --only keeps the others' files.
    const altered = recorded
      .filter((r) => ALTERED_SCENARIOS.includes(r.scenario))
      .map((r) => ({ ...r, ...alterHistory(r.history) }));
    await verifyReplay(workflowBundle, recorded, altered);

    mkdirSync(ALTERED_DIR, { recursive: true });
    for (const r of recorded) {
      const file = join(HISTORIES_DIR, `${r.scenario}.json`);
      writeFileSync(file, `${historyToJSON(r.history)}\n`);
      log.info('wrote', { file: relative(repoRoot, file) });
    }
    for (const a of altered) {
      const file = join(ALTERED_DIR, `${a.scenario}-altered.json`);
      writeFileSync(file, `${historyToJSON(a.history)}\n`);
      log.info('wrote', { file: relative(repoRoot, file), alteration: a.alteration });
    }
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

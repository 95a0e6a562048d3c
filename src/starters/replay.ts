import { parseArgs } from 'node:util';
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import { type Config, loadConfig } from '../config';
import { createLogger, errorMessage } from '../logger';
import { topicsFor } from '../streams/kafka';
import { replayTopicsOf } from '../streams/replay/replay-record';
import {
  BACKFILL_DEFAULTS,
  BACKFILL_TASK_QUEUE,
  type BackfillInput,
  type BackfillState,
  REPLAY_SOURCES,
  type ReplaySource,
  backfillPauseSignal,
  backfillStatusQuery,
  backfillWorkflow,
  backfillWorkflowId,
} from '../workflows/backfill';
import { BackfillSourcesAttr, BackfillStatusAttr } from '../workflows/search-attributes';

// `npm run replay -- …`: backfill a time range of the raw archive through the router's path (docs/archive.md,
// "Replay and backfill"), and status / pause / resume / cancel of a running backfill. The workflow runs
// on the payment worker (`npm run worker`).

const log = createLogger('replay');

const USAGE = `usage: npm run replay -- --from <ISO> --to <ISO> [--source webhooks,gateways,partner,cdc] [--dry-run] [--rate N] [--id X] [--json]
       npm run replay -- status|pause|resume|cancel <id> [--json]`;

export interface BackfillRequest {
  from: string;
  to: string;
  sources: ReplaySource[];
  dryRun: boolean;
  /** Records per second at most; 0 = no cap. */
  ratePerSecond: number;
  id: string;
}

/** The request a command line names; throws naming the argument that is wrong. */
export function parseBackfillRequest(
  values: { from?: string; to?: string; source?: string; 'dry-run'?: boolean; rate?: string; id?: string },
  now = Date.now(),
): BackfillRequest {
  const time = (name: 'from' | 'to'): string => {
    const raw = values[name];
    if (raw === undefined) throw new Error(`--${name} is required (an ISO 8601 time such as 2026-01-31T12:00:00Z)`);
    const ms = Date.parse(raw);
    if (!/^\d{4}-\d{2}-\d{2}/.test(raw) || Number.isNaN(ms))
      throw new Error(`--${name} "${raw}" is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)`);
    return new Date(ms).toISOString();
  };
  const from = time('from');
  const to = time('to');
  if (Date.parse(from) >= Date.parse(to)) throw new Error(`--from ${from} must be before --to ${to}`);
  const names = (values.source ?? REPLAY_SOURCES.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const unknown = names.filter((s) => !(REPLAY_SOURCES as readonly string[]).includes(s));
  if (unknown.length > 0 || names.length === 0)
    throw new Error(`--source "${values.source}": use one or more of ${REPLAY_SOURCES.join(',')}`);
  const rate = values.rate === undefined ? 0 : Number(values.rate);
  if (!Number.isInteger(rate) || (values.rate !== undefined && rate <= 0))
    throw new Error(`--rate "${values.rate}" must be a whole number of records per second above 0`);
  const id = values.id ?? `replay-${now.toString(36)}`;
  if (!/^[A-Za-z0-9_.:-]{1,100}$/.test(id)) throw new Error(`--id "${id}": 1–100 of letters, digits, _ . : -`);
  return {
    from,
    to,
    sources: [...new Set(names)] as ReplaySource[],
    dryRun: values['dry-run'] ?? false,
    ratePerSecond: rate,
    id,
  };
}

/** Starts the backfill's workflow (backfill/<id>); a second start of a running id is refused, naming it. */
export async function startBackfill(
  client: Client,
  config: Pick<Config, 'KAFKA_TOPIC_NAMESPACE' | 'S3_BUCKET'>,
  request: BackfillRequest,
  settings: Partial<Pick<BackfillInput, 'pageSize' | 'sliceMs' | 'slicesBeforeContinue'>> & {
    /** The payment workers' queue by default (the bench runs its own worker on its own queue). */
    taskQueue?: string;
  } = {},
): Promise<string> {
  const { taskQueue = BACKFILL_TASK_QUEUE, ...tuning } = settings;
  const topics = topicsFor(config);
  const input: BackfillInput = {
    ...request,
    topics: request.sources.flatMap((source) => replayTopicsOf(topics, source).map((topic) => ({ source, topic }))),
    bucket: config.S3_BUCKET,
    ...BACKFILL_DEFAULTS,
    ...tuning,
  };
  const workflowId = backfillWorkflowId(request.id);
  try {
    await client.workflow.start(backfillWorkflow, {
      workflowId,
      taskQueue,
      args: [input],
      typedSearchAttributes: [
        { key: BackfillStatusAttr, value: 'SURVEYING' },
        { key: BackfillSourcesAttr, value: request.sources.join(',') },
      ],
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError)
      throw new Error(
        `--id ${request.id}: backfill ${workflowId} is already running (npm run replay -- status ${request.id})`,
      );
    throw err;
  }
  return workflowId;
}

/** The backfill's state: asked of the workflow (running or closed), with its Temporal status. */
export async function backfillStatus(
  client: Client,
  id: string,
): Promise<{ status: string; state: BackfillState | undefined }> {
  const handle = client.workflow.getHandle<typeof backfillWorkflow>(backfillWorkflowId(id));
  let status: string;
  try {
    status = (await handle.describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError)
      throw new Error(`no backfill "${id}" (workflow ${backfillWorkflowId(id)})`);
    throw err;
  }
  if (status === 'COMPLETED') return { status, state: await handle.result() };
  try {
    return { status, state: await handle.query(backfillStatusQuery) };
  } catch {
    return { status, state: undefined }; // closed without a result (cancelled, failed) and no worker to answer
  }
}

export async function pauseBackfill(client: Client, id: string, paused: boolean): Promise<void> {
  await client.workflow.getHandle<typeof backfillWorkflow>(backfillWorkflowId(id)).signal(backfillPauseSignal, paused);
}

/** Temporal cancellation: the replay activity in flight stops at its next batch; the counts so far stay queryable. */
export async function cancelBackfill(client: Client, id: string): Promise<void> {
  await client.workflow.getHandle<typeof backfillWorkflow>(backfillWorkflowId(id)).cancel();
}

/** Waits for the backfill's result, calling `progress` with its state about once a second. */
export async function waitForBackfill(
  client: Client,
  id: string,
  progress?: (state: BackfillState) => void,
): Promise<BackfillState> {
  const handle = client.workflow.getHandle<typeof backfillWorkflow>(backfillWorkflowId(id));
  const result = handle.result();
  if (!progress) return result;
  let done = false;
  const poll = (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 1000));
      if (done) break;
      try {
        progress(await handle.query(backfillStatusQuery));
      } catch {
        // between runs (continue-as-new) or closing: the next poll answers
      }
    }
  })();
  try {
    return await result;
  } finally {
    done = true;
    await poll;
  }
}

/** One progress line: records (of the total), records/s, ETA. */
export function progressLine(s: BackfillState): string {
  const of = s.recordsTotal === null ? '' : `/${s.recordsTotal}`;
  const left = s.recordsTotal === null ? undefined : Math.max(0, s.recordsTotal - s.records);
  const eta = left === undefined || s.recordsPerSecond <= 0 ? '?' : `${Math.ceil(left / s.recordsPerSecond)}s`;
  const objects = `${s.objectsDone}/${s.objectsTotal ?? '?'}`;
  return `${s.id} ${s.phase}${s.paused ? ' (paused)' : ''}: objects ${objects}, records ${s.records}${of}, ${s.recordsPerSecond} rec/s, ETA ${eta}; facts ${s.facts} (new ${s.newFacts}), quarantined ${s.quarantined}`;
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      source: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      rate: { type: 'string' },
      id: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const [command, id] = positionals;
  const config = loadConfig();
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const print = (value: unknown, text: string): void =>
    void process.stdout.write(values.json ? `${JSON.stringify(value)}\n` : `${text}\n`);
  try {
    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    if (command !== undefined) {
      if (id === undefined) throw new Error(`${command}: which backfill id?\n${USAGE}`);
      switch (command) {
        case 'status':
          break;
        case 'pause':
        case 'resume':
          await pauseBackfill(client, id, command === 'pause');
          break;
        case 'cancel':
          await cancelBackfill(client, id);
          break;
        default:
          throw new Error(`unknown command "${command}"\n${USAGE}`);
      }
      const { status, state } = await backfillStatus(client, id);
      print(
        { id, status, ...(command !== 'status' && { signalled: command }), state },
        `${status}: ${state ? progressLine(state) : '(no state)'}`,
      );
      return;
    }
    const request = parseBackfillRequest(values);
    const workflowId = await startBackfill(client, config, request);
    const ui = `${config.TEMPORAL_UI_URL}/namespaces/${config.TEMPORAL_NAMESPACE}/workflows/${encodeURIComponent(workflowId)}`;
    if (!values.json) process.stdout.write(`started ${workflowId} (${request.dryRun ? 'dry run, ' : ''}${ui})\n`);
    const tty = process.stdout.isTTY === true && !values.json;
    let lastPlain = 0;
    const state = await waitForBackfill(
      client,
      request.id,
      values.json
        ? undefined
        : (s) => {
            if (tty) process.stdout.write(`\r\x1b[K${progressLine(s)}`);
            else if (Date.now() - lastPlain >= 5000) {
              lastPlain = Date.now();
              process.stdout.write(`${progressLine(s)}\n`);
            }
          },
    );
    if (tty) process.stdout.write('\n');
    print({ workflowId, ui, ...state }, `done: ${progressLine(state)}`);
  } catch (err) {
    if (err instanceof WorkflowFailedError) throw new Error(`backfill failed: ${errorMessage(err.cause ?? err)}`);
    throw err;
  } finally {
    await connection.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    log.error('replay failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

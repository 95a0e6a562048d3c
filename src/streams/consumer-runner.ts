import { type Logger, errorMessage } from '../logger';
import { loadConfig } from '../config';
import { serveHealth } from '../health';
import { type Dependency, dependencyOf, retryTransient } from '../resilience';
import type { BatchHandler, GroupConsumer } from './kafka';

// How every PayLink consumer group member runs (router, CDC normalizer, quality, and each one after):
// join the group, hand batches to the handler and commit once their work is durable (kafka.ts); wait out a
// restarting dependency inside the batch (src/resilience.ts) instead of failing it; on SIGTERM
// finish the batch in flight, commit it and leave the group; on a crash end the process non-zero with the
// group, topics and failing batch in the log (runMain).

/** After SIGTERM the batch in flight gets this long (inside the 30 s session); past it, it is redelivered. */
const STOP_DEADLINE_MS = 25_000;

export interface ConsumerSpec {
  consumer: GroupConsumer;
  topics: readonly string[];
  handle: BatchHandler;
  log: Logger;
  /** More fields for the `ready` line, which supervisors and tests wait for. */
  ready?: Record<string, unknown>;
  /** When to stop; by default the first SIGTERM or SIGINT. */
  stop?: Promise<unknown>;
  /** What a bare connection error in the handler is named in `degraded: <dependency>` (default postgres). */
  dependency?: Dependency;
}

/** kafkajs gave up on the member; `context` names the group, topics and the batch that failed. */
export class ConsumerCrashed extends Error {
  override name = 'ConsumerCrashed';
  constructor(readonly context: Record<string, unknown>) {
    super(`consumer group ${String(context.group)} crashed: ${String(context.error)}`);
  }
}

export interface RunningConsumer {
  /** Resolves once the member finished its batch and left after a stop; rejects with ConsumerCrashed. */
  done: Promise<void>;
}

/** The first SIGTERM or SIGINT. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
}

/** Connects, joins the group and logs `ready`; resolves then, with the run's end still to come. */
export async function startConsumer(spec: ConsumerSpec): Promise<RunningConsumer> {
  const { consumer, topics, log } = spec;
  const context = { group: consumer.groupId, topics };
  const stop = spec.stop ?? untilSignal();
  let failedBatch: Record<string, unknown> | undefined;
  const handle: BatchHandler = async (batch, control) => {
    try {
      // A dependency that is restarting (Postgres, Kafka for the handler's own produce) is waited out
      // here, in place, while the member heartbeats (kafka.ts): the same work a redelivery would
      // redo, without leaving the group. Handlers are idempotent under redelivery, so under a retry too.
      return await retryTransient(
        (err) => dependencyOf(err, spec.dependency ?? 'postgres'),
        `a batch of ${batch.topic}[${batch.partition}]`,
        () => spec.handle(batch, control),
        { log, shouldContinue: control.owned },
      );
    } catch (err) {
      failedBatch = {
        topic: batch.topic,
        partition: batch.partition,
        offsets: `${batch.messages[0]?.offset}-${batch.messages[batch.messages.length - 1]?.offset}`,
        error: errorMessage(err),
      };
      log.error('batch failed; its offsets stay uncommitted', { ...context, ...failedBatch });
      throw err;
    }
  };
  const crashed = new Promise<never>((_, reject) =>
    consumer.onCrash((error, willRestart) => {
      const fields = { ...context, error: errorMessage(error), ...(failedBatch && { batch: failedBatch }) };
      if (willRestart) log.warn('consumer crashed; kafkajs restarts it', fields);
      else reject(new ConsumerCrashed(fields));
    }),
  );
  crashed.catch(() => undefined); // observed through `done`
  const joined = new Promise<void>((resolve) => consumer.onJoin(resolve));
  await consumer.connect();
  await consumer.consume(topics, handle);
  await Promise.race([joined, crashed]);
  log.info('ready', { ...context, ...spec.ready });

  const leave = async (): Promise<void> => {
    log.info('stopping: finishing the batch in flight, then leaving the group', context);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${context.group}: the batch in flight did not finish within ${STOP_DEADLINE_MS} ms`)),
        STOP_DEADLINE_MS,
      );
    });
    try {
      await Promise.race([consumer.disconnect(), deadline]);
    } finally {
      clearTimeout(timer);
    }
    log.info('stopped', context);
  };
  return { done: Promise.race([stop.then(leave), crashed]) };
}

/** startConsumer, then until the member left (stop) or crashed. */
export async function runConsumer(spec: ConsumerSpec): Promise<void> {
  await (
    await startConsumer(spec)
  ).done;
}

/**
 * An entry point's main: exit 0 when it returns; else log why (a crash with its context) and exit 1.
 * With PAYLINK_HEALTH_PORT set, the process also serves /healthz and /readyz (src/health.ts).
 */
export function runMain(log: Logger, main: () => Promise<void>): void {
  const healthPort = loadConfig().PAYLINK_HEALTH_PORT;
  const health = healthPort > 0 ? serveHealth(healthPort, log) : Promise.resolve(undefined);
  health.then(main).then(
    () => exitFlushed(typeof process.exitCode === 'number' ? process.exitCode : 0), // a failing check's code stays
    (err: unknown) => {
      log.error('failed', { error: errorMessage(err), ...(err instanceof ConsumerCrashed ? err.context : {}) });
      exitFlushed(1);
    },
  );
}

/**
 * process.exit once stdout and stderr have taken everything written before. Writes to a pipe are
 * asynchronous, so a bare exit cut a long answer short (`quality -- quarantined --json | jq` lost its
 * tail past ~219 KB); each stream calls back in order, after the writes queued before this one.
 */
export function exitFlushed(code: number): void {
  let pending = 2;
  const done = (): void => {
    pending -= 1;
    if (pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}

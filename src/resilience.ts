import { setTimeout as sleep } from 'node:timers/promises';
import { type Logger, errorMessage } from './logger';

// How a PayLink process rides out a dependency that restarts or is cut off (Postgres, Kafka, Temporal,
// S3, the warehouse): a transient error is retried with capped, jittered backoff; the first one logs
// `degraded: <dependency>` and the first success after it `recovered: <dependency>`; health endpoints
// list what is degraded right now. Errors that are not transient (a bad query, a refused grant) are
// thrown at once: retrying them would hide a bug behind a wait.

export type Dependency = 'postgres' | 'kafka' | 'temporal' | 's3' | 'warehouse';

export interface DegradedDependency {
  dependency: Dependency;
  since: string;
  error: string;
}

/** SQLSTATEs of a server going away or not yet back: admin/crash shutdown, starting up, too many clients. */
const PG_TRANSIENT_CODES = new Set(['57P01', '57P02', '57P03', '53300']);
/** gRPC UNAVAILABLE and DEADLINE_EXCEEDED: Temporal's frontend is down or did not answer in time. */
const GRPC_TRANSIENT_CODES = new Set([14, 4]);
const NODE_TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNABORTED',
]);
const TRANSIENT_MESSAGES = [
  /connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /client has encountered a connection error/i,
  /server closed the connection unexpectedly/i,
  /socket hang up/i,
];

/** True when `err` (or an error in its `cause` chain) says the dependency is unreachable or restarting. */
export function isTransient(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (typeof e !== 'object') return false;
    const { code, name, retriable, message } = e as {
      code?: unknown;
      name?: unknown;
      retriable?: unknown;
      message?: unknown;
    };
    if (typeof code === 'string' && (PG_TRANSIENT_CODES.has(code) || NODE_TRANSIENT_CODES.has(code))) return true;
    if (typeof code === 'string' && code.startsWith('08')) return true; // SQLSTATE class 08: connection exception
    if (typeof code === 'number' && GRPC_TRANSIENT_CODES.has(code)) return true;
    if (typeof name === 'string' && name.startsWith('KafkaJS') && (retriable === true || /Connection/.test(name)))
      return true;
    if (typeof message === 'string' && TRANSIENT_MESSAGES.some((re) => re.test(message))) return true;
  }
  return false;
}

/**
 * Which dependency a transient error came from, by its shape: kafkajs errors, gRPC status codes
 * (Temporal), Postgres' SQLSTATE fields, the AWS SDK's metadata (S3); a bare socket error is named by
 * `fallback` (the caller knows what it was talking to).
 */
export function dependencyOf(err: unknown, fallback: Dependency): Dependency {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 8; depth++) {
    const { name, code, severity, $metadata } = e as {
      name?: unknown;
      code?: unknown;
      severity?: unknown;
      $metadata?: unknown;
    };
    if (typeof name === 'string' && name.startsWith('KafkaJS')) return 'kafka';
    if (typeof code === 'number') return 'temporal';
    if (typeof severity === 'string' && typeof code === 'string') return 'postgres';
    if ($metadata !== undefined) return 's3';
    e = (e as { cause?: unknown }).cause;
  }
  return fallback;
}

const degraded = new Map<Dependency, { since: number; error: string }>();

/** What this process finds degraded right now (for /readyz and logs). */
export function degradedDependencies(): DegradedDependency[] {
  return [...degraded].map(([dependency, d]) => ({
    dependency,
    since: new Date(d.since).toISOString(),
    error: d.error,
  }));
}

/** Records a transient failure; logs `degraded: <dependency>` on the first one only. */
export function markDegraded(dependency: Dependency, err: unknown, log: Logger, what?: string): void {
  if (degraded.has(dependency)) return;
  const error = errorMessage(err);
  degraded.set(dependency, { since: Date.now(), error });
  log.warn(`degraded: ${dependency}`, { dependency, ...(what && { during: what }), error, retrying: true });
}

/** Records a success; logs `recovered: <dependency>` and how long it was degraded, if it was. */
export function markRecovered(dependency: Dependency, log: Logger): void {
  const was = degraded.get(dependency);
  if (!was) return;
  degraded.delete(dependency);
  log.info(`recovered: ${dependency}`, { dependency, degradedMs: Date.now() - was.since });
}

export interface RetryOptions {
  log: Logger;
  /** Keep retrying while this holds (e.g. the consumer still owns the partition); the last error is thrown after. */
  shouldContinue?: () => boolean;
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up after this long (default: never, while shouldContinue holds). */
  maxElapsedMs?: number;
}

/**
 * Runs `fn` until it succeeds, retrying transient errors of `dependency` with exponential backoff
 * (capped, ±20% jitter). `fn` must be safe to repeat: every PayLink write is idempotent by its key.
 */
export async function retryTransient<T>(
  dependency: Dependency | ((err: unknown) => Dependency),
  what: string,
  fn: () => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const { log, shouldContinue = () => true, initialDelayMs = 200, maxDelayMs = 5_000 } = options;
  const started = Date.now();
  let waitedOn: Dependency | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      const result = await fn();
      if (waitedOn) markRecovered(waitedOn, log);
      return result;
    } catch (err) {
      const overdue = options.maxElapsedMs !== undefined && Date.now() - started >= options.maxElapsedMs;
      if (!isTransient(err) || overdue || !shouldContinue()) throw err;
      waitedOn = typeof dependency === 'function' ? dependency(err) : dependency;
      markDegraded(waitedOn, err, log, what);
      const base = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt, 16));
      await sleep(Math.round(base * (0.8 + Math.random() * 0.4)));
    }
  }
}

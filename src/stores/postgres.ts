import { Pool, types } from 'pg';
import { type Config, type SecretSetting, secretSetting } from '../config';
import { createLogger, errorMessage } from '../logger';

// bigint (int8) arrives as a string; money columns are bigint minor units, so parse them exactly.
types.setTypeParser(types.builtins.INT8, (value: string) => {
  const n = BigInt(value);
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`int8 value ${value} exceeds the safe integer range`);
  }
  return Number(n);
});

export type DatabaseUrlSetting = Extract<SecretSetting, `${string}DATABASE_URL`>;

/** A pool for one of the roles' URLs (DATABASE_URL, the application's, unless told otherwise). */
export function createPool(config: Config, max = 10, url: DatabaseUrlSetting = 'DATABASE_URL'): Pool {
  return survivingIdleErrors(
    new Pool({ connectionString: secretSetting(config, url), max, connectionTimeoutMillis: 5000 }),
    url,
  );
}

const log = createLogger('postgres');

/**
 * An idle client's error (Postgres restarted: 57P01, or the network cut) is emitted on the pool, and
 * an 'error' event nobody listens to kills the process. The pool drops that client by itself; the next
 * query reconnects or fails, and callers retry. So: log it and live.
 */
export function survivingIdleErrors(pool: Pool, name: string): Pool {
  pool.on('error', (err: Error & { code?: string }) => {
    log.warn('idle postgres connection lost; the pool reconnects on next use', {
      pool: name,
      code: err.code,
      error: errorMessage(err),
    });
  });
  return pool;
}

/** A LIKE pattern matching every value that starts with `prefix` (its own % _ \ taken literally). */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

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
 * A connection's error (Postgres restarted: 57P01, or the network cut) is emitted as an 'error' event,
 * and an 'error' event nobody listens to kills the process. Two places need a listener: the pool, for
 * an idle client (the pool drops it by itself), and every client, for one that is checked out between
 * queries (pg-pool removes its idle listener on checkout; a transaction waiting on Kafka is such a
 * client). The query in flight, if any, rejects on its own and its caller retries; the next query
 * reconnects. So: log it and live.
 */
export function survivingIdleErrors(pool: Pool, name: string): Pool {
  const lost = (state: string) => (err: Error & { code?: string }) =>
    log.warn(`postgres connection lost (${state}); the pool reconnects on next use`, {
      pool: name,
      code: err.code,
      error: errorMessage(err),
    });
  pool.on('error', lost('idle'));
  pool.on('connect', (client) => {
    client.on('error', (err: Error & { code?: string }) => {
      // An idle client's error also reaches the pool's listener above: log it once, there.
      if (client.listenerCount('error') === 1) lost('checked out')(err);
    });
  });
  return pool;
}

/** A LIKE pattern matching every value that starts with `prefix` (its own % _ \ taken literally). */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

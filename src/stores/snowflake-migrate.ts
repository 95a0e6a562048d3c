import { join } from 'node:path';
import type { Config } from '../config';
import { type Migration, listMigrations } from './migrate';
import { type SnowflakeSession, connectSnowflake } from './snowflake';

// Snowflake's migration sets, applied like Postgres' (src/stores/migrate.ts): versioned files, once each,
// in order, checksummed. Snowflake commits DDL implicitly, so a file is no transaction: its statements
// are idempotent (IF NOT EXISTS, OR REPLACE) and a failed file is re-run whole. One statement per
// request (the SDK's default), split at a `;` that ends a line.

export const SNOWFLAKE_MIGRATION_SETS = {
  /** The finance tables and views (docs/finance.md). */
  finance: join(__dirname, 'snowflake-migrations'),
  /** Roles, grants, policies, tags, retention: only where a real Snowflake enforces them. */
  governance: join(__dirname, 'snowflake-governance'),
} as const;
export type SnowflakeMigrationSet = keyof typeof SNOWFLAKE_MIGRATION_SETS;

const TABLE = 'FINANCE.SCHEMA_MIGRATIONS';

/** The statements of a file: `--` comment lines dropped, split at a `;` that ends a line. */
export function statementsOf(sql: string): string[] {
  return sql
    .split('\n')
    .filter((line) => !/^\s*--/.test(line))
    .join('\n')
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function snowflakeMigrations(set: SnowflakeMigrationSet): Migration[] {
  return listMigrations(SNOWFLAKE_MIGRATION_SETS[set]);
}

/** True where SNOWFLAKE_ACCESS_URL is empty: the SDK talks to a real account, which enforces governance. */
export const isRealSnowflake = (config: Config): boolean => !config.SNOWFLAKE_ACCESS_URL;

/**
 * Applies the finance set, and the governance set where a real Snowflake is configured (the local
 * server has no access control: it accepts those statements as no-ops, tools/snowflake/server.py).
 * Returns the applied versions as `<set>/<version>`.
 */
export async function migrateSnowflake(
  config: Config,
  sets: readonly SnowflakeMigrationSet[] = isRealSnowflake(config) ? ['finance', 'governance'] : ['finance'],
): Promise<string[]> {
  const session = await connectSnowflake(config);
  try {
    return await applySets(session, sets);
  } finally {
    await session.close();
  }
}

export async function applySets(session: SnowflakeSession, sets: readonly SnowflakeMigrationSet[]): Promise<string[]> {
  await session.query('CREATE SCHEMA IF NOT EXISTS FINANCE');
  await session.query(
    `CREATE TABLE IF NOT EXISTS ${TABLE} (
       MIGRATION_SET VARCHAR NOT NULL, VERSION VARCHAR NOT NULL, CHECKSUM VARCHAR NOT NULL,
       APPLIED_AT TIMESTAMP_NTZ(9) NOT NULL DEFAULT CURRENT_TIMESTAMP())`,
  );
  const done = new Map(
    (
      await session.query<{ MIGRATION_SET: string; VERSION: string; CHECKSUM: string }>(
        `SELECT MIGRATION_SET, VERSION, CHECKSUM FROM ${TABLE}`,
      )
    ).map((r) => [`${r.MIGRATION_SET}/${r.VERSION}`, r.CHECKSUM]),
  );
  const applied: string[] = [];
  for (const set of sets) {
    for (const m of snowflakeMigrations(set)) {
      const key = `${set}/${m.version}`;
      const previous = done.get(key);
      if (previous !== undefined) {
        if (previous !== m.checksum)
          throw new Error(`snowflake migration ${key} was edited after it was applied; add a new migration instead`);
        continue;
      }
      for (const statement of statementsOf(m.sql)) {
        try {
          await session.query(statement);
        } catch (err) {
          throw new Error(`snowflake migration ${key} failed: ${(err as Error).message}`, { cause: err });
        }
      }
      await session.query(`INSERT INTO ${TABLE} (MIGRATION_SET, VERSION, CHECKSUM) VALUES (?, ?, ?)`, [
        set,
        m.version,
        m.checksum,
      ]);
      applied.push(key);
    }
  }
  return applied;
}

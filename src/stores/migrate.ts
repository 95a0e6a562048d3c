import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool } from 'pg';
import { errorMessage } from '../logger';

// The one migration runner: versioned SQL files, applied once each, in order, under an advisory lock.

const migrationsDir = join(__dirname, 'migrations');
export const vaultMigrationsDir = join(__dirname, 'vault-migrations');
const LOCK_ID = 7_240_001;

export interface Migration {
  version: string;
  sql: string;
  checksum: string;
}

export function listMigrations(dir = migrationsDir): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const sql = readFileSync(join(dir, file), 'utf8');
      return { version: file.replace(/\.sql$/, ''), sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

/** Applies migrations; `table` tracks them (the vault keeps its own, in its own schema). */
export async function migrate(
  pool: Pool,
  migrations = listMigrations(),
  table = 'public.schema_migrations',
): Promise<string[]> {
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('select pg_advisory_lock($1)', [LOCK_ID]);
    await client.query(
      `create table if not exists ${table} (
         version text primary key, checksum text not null, applied_at timestamptz not null default now())`,
    );
    const done = new Map(
      (await client.query<{ version: string; checksum: string }>(`select version, checksum from ${table}`)).rows.map(
        (r) => [r.version, r.checksum],
      ),
    );
    for (const m of migrations) {
      const previous = done.get(m.version);
      if (previous !== undefined) {
        if (previous !== m.checksum) {
          throw new Error(`migration ${m.version} was edited after it was applied; add a new migration instead`);
        }
        continue;
      }
      await client.query('begin');
      try {
        await client.query(m.sql);
        await client.query(`insert into ${table} (version, checksum) values ($1, $2)`, [m.version, m.checksum]);
        await client.query('commit');
        applied.push(m.version);
      } catch (err) {
        await client.query('rollback');
        throw new Error(`migration ${m.version} failed: ${errorMessage(err)}`);
      }
    }
    return applied;
  } finally {
    await client.query('select pg_advisory_unlock($1)', [LOCK_ID]).catch(() => undefined);
    client.release();
  }
}

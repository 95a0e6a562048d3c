import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import type { Config } from '../config';
import { errorMessage } from '../logger';
import { createPool, survivingIdleErrors } from './postgres';

// The one migration runner: versioned SQL files, applied once each, in order, under an advisory lock.

const migrationsDir = join(__dirname, 'migrations');
const vaultMigrationsDir = join(__dirname, 'vault-migrations');
const riskMigrationsDir = join(__dirname, 'risk-migrations');
const RISK_MIGRATIONS_TABLE = 'risk.schema_migrations';
const LOCK_ID = 7_240_001;
/** The role migration 004 grants the pipeline's privileges to; a login role may also be a member of it (RDS). */
export const APPLICATION_ROLE = 'paylink_app';
/** The role vault migration 002 grants the vault's statements to; like APPLICATION_ROLE, it owns nothing. */
export const VAULT_ROLE = 'paylink_vault';
const VAULT_MIGRATIONS_TABLE = 'vault.schema_migrations';

export interface Migration {
  version: string;
  sql: string;
  checksum: string;
}

/** The versioned SQL files of a set, in order, each with its checksum (Snowflake's sets use it too). */
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
async function migrate(
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

/**
 * Applies every migration as the schemas' owner (MIGRATION_DATABASE_URL): the ledger, payments and
 * quality ones, then the vault's (tracked in vault.schema_migrations, returned as `vault/<version>`).
 * No pipeline process migrates; this is the deploy step (`npm run migrate`, `stack up`, the demo).
 */
export async function migrateAsOwner(config: Config): Promise<string[]> {
  const pool = createPool(config, 1, 'MIGRATION_DATABASE_URL');
  try {
    const applied = await migrate(pool);
    await ensureVaultSchema(pool);
    const vault = await migrate(pool, listMigrations(vaultMigrationsDir), VAULT_MIGRATIONS_TABLE);
    const risk = await migrateRisk(config);
    return [...applied, ...vault.map((v) => `vault/${v}`), ...risk.map((v) => `risk/${v}`)];
  } finally {
    await pool.end();
  }
}

/** The risk schema's owner: RISK_MIGRATION_DATABASE_URL, or MIGRATION_DATABASE_URL when it is empty. */
export function createRiskOwnerPool(config: Config): Pool {
  return config.RISK_MIGRATION_DATABASE_URL === ''
    ? createPool(config, 1, 'MIGRATION_DATABASE_URL')
    : survivingIdleErrors(new Pool({ connectionString: config.RISK_MIGRATION_DATABASE_URL, max: 1 }), 'risk-owner');
}

/** The risk store's own migrations (risk.schema_migrations), on RISK_MIGRATION_DATABASE_URL or the owner's URL. */
export async function migrateRisk(config: Config): Promise<string[]> {
  const pool = createRiskOwnerPool(config);
  try {
    await pool.query('create schema if not exists risk');
    return await migrate(pool, listMigrations(riskMigrationsDir), RISK_MIGRATIONS_TABLE);
  } finally {
    await pool.end();
  }
}

/**
 * Creates schema vault for the owner, or checks that the owner already owns it and everything in it.
 * Before vault migration 002 the vault role owned them: the owner could not even read
 * vault.schema_migrations, so say what hands them over instead of failing on a bare "permission denied".
 */
async function ensureVaultSchema(pool: Pool): Promise<void> {
  await pool.query('create schema if not exists vault');
  const { rows } = await pool.query<{ me: string; owners: string[] }>(
    `select current_user as me, array(
       select distinct pg_get_userbyid(o.owner)::text from (
         select nspowner as owner from pg_namespace where nspname = 'vault'
         union all select relowner from pg_class where relnamespace = 'vault'::regnamespace
         union all select proowner from pg_proc where pronamespace = 'vault'::regnamespace
       ) o
       where not pg_has_role(current_user, o.owner, 'usage')
       order by 1) as owners`,
  );
  const { me, owners } = rows[0]!;
  if (owners.length > 0) {
    throw new Error(
      `schema vault (or objects in it) is owned by ${owners.join(', ')}, not by the migration role ${me}: ` +
        `as a superuser (on RDS the master user, a member of both roles) run ` +
        owners.map((o) => `\`reassign owned by ${o} to ${me}\``).join(' and ') +
        ` in this database, then migrate again (docs/architecture.md, "Database roles")`,
    );
  }
}

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Pool } from 'pg';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { type Vault, openVault } from '../../src/stores/vault';
import { config, requireServices, uniqueId } from '../support/stack';
import { roleStanding } from '../support/roles';

// As the vault role (VAULT_DATABASE_URL: the edge, gateway connector, CDC reader, ingest worker) the
// vault can store tokens, read them back and append to the detokenization audit, nothing else. The
// owner-only statements that would switch the audit's append-only trigger off are refused by
// Postgres' privileges, before any trigger runs. The application role cannot even see the schema.
//
// To see it fail, give the vault code the owner's URL:
//   VAULT_DATABASE_URL=postgres://paylink:paylink@127.0.0.1:5433/paylink node --import tsx --test test/integration/vault-roles.test.ts

const VAULT_TABLES = [
  { table: 'tokens', column: 'kind', disable: 'disable trigger user', trigger: undefined },
  {
    table: 'detokenization_audit',
    column: 'purpose',
    disable: 'disable trigger detokenization_audit_append_only',
    trigger: 'detokenization_audit_append_only',
  },
] as const;

interface PgError {
  code?: string;
  message: string;
}

/** Runs `sql` in a transaction that is always rolled back; returns the error, or undefined if it ran. */
async function attempt(pool: Pool, sql: string, params: unknown[] = []): Promise<PgError | undefined> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query(sql, params);
    return undefined;
  } catch (err) {
    return err as PgError;
  } finally {
    await client.query('rollback');
    client.release();
  }
}

/** Refused for lack of privilege (SQLSTATE 42501), not by the append-only trigger, which uses 42501 too. */
async function assertRefused(pool: Pool, who: string, sql: string, message: RegExp): Promise<void> {
  const err = await attempt(pool, sql);
  assert.ok(err, `allowed as the ${who} role: ${sql}`);
  assert.equal(err.code, '42501', `${sql}: ${err.message}`);
  assert.doesNotMatch(err.message, /append-only/, `${sql}: refused by the trigger, not by privileges`);
  assert.match(err.message, message, sql);
}

describe('database roles: the vault role cannot rewrite the vault or its audit trail', () => {
  const vaultRole = createPool(config, 2, 'VAULT_DATABASE_URL');
  const appRole = createPool(config, 2);
  const ownerRole = createPool(config, 1, 'MIGRATION_DATABASE_URL');
  let vault: Vault;

  before(async () => {
    await requireServices('postgres');
    await migrateAsOwner(config);
    vault = await openVault(config);
  });
  after(async () => {
    await vault?.close();
    await Promise.all([vaultRole.end(), appRole.end(), ownerRole.end()]);
  });

  for (const { table, column, disable, trigger } of VAULT_TABLES) {
    describe(`vault.${table}: refused as the vault role`, () => {
      const denied = new RegExp(`^permission denied for table ${table}$`);
      const notOwner = new RegExp(`^must be owner of (table|relation) ${table}$`);
      const refusals: [statement: string, sql: string, message: RegExp][] = [
        ['UPDATE', `update vault.${table} set ${column} = ${column}`, denied],
        ['DELETE', `delete from vault.${table}`, denied],
        ['TRUNCATE', `truncate vault.${table}`, denied],
        // The attack: switch the append-only trigger off, then rewrite the audit trail.
        ['ALTER TABLE DISABLE TRIGGER', `alter table vault.${table} ${disable}`, notOwner],
        trigger
          ? ['DROP TRIGGER', `drop trigger ${trigger} on vault.${table}`, notOwner]
          : [
              'CREATE TRIGGER',
              `create trigger shadow before insert on vault.${table} for each row execute function vault.reject_mutation()`,
              denied,
            ],
        ['ALTER TABLE ADD COLUMN', `alter table vault.${table} add column rewritten text`, notOwner],
        ['DROP TABLE', `drop table vault.${table}`, notOwner],
      ];
      for (const [statement, sql, message] of refusals)
        it(statement, () => assertRefused(vaultRole, 'vault', sql, message));
    });
  }

  it('cannot read the audit trail or the migrations, reset the audit sequence, or create objects in the schema', async () => {
    const refuse = (sql: string, message: RegExp): Promise<void> => assertRefused(vaultRole, 'vault', sql, message);
    await refuse(
      'select count(*) from vault.detokenization_audit',
      /^permission denied for table detokenization_audit$/,
    );
    await refuse('select count(*) from vault.schema_migrations', /^permission denied for table schema_migrations$/);
    await refuse(
      `select setval('vault.detokenization_audit_audit_id_seq', 1)`,
      /^permission denied for sequence detokenization_audit_audit_id_seq$/,
    );
    await refuse(
      'alter sequence vault.detokenization_audit_audit_id_seq restart',
      /^must be owner of sequence detokenization_audit_audit_id_seq$/,
    );
    await refuse(
      `create or replace function vault.reject_mutation() returns trigger language plpgsql as $$ begin return old; end $$`,
      /^(permission denied for schema vault|must be owner of function reject_mutation)$/,
    );
    await refuse('create table vault.shadow (id int)', /^permission denied for schema vault$/);
  });

  it('owns nothing, has no special attributes and is not the owner role', async () => {
    const standing = await roleStanding(vaultRole);
    assert.notEqual(standing.user, new URL(config.MIGRATION_DATABASE_URL).username, 'VAULT_DATABASE_URL is the owner');
    assert.deepEqual({ special: standing.special, owned: standing.owned }, { special: false, owned: '0' });
  });

  it('stores, reads back and audits: what the vault code runs still works as the vault role', async () => {
    const token = `tok_pan_1_${uniqueId('roles')}`;
    assert.equal(await vault.store([{ token, kind: 'pan', original: '4111111111111111' }]), 1); // INSERT … ON CONFLICT
    assert.equal(await vault.store([{ token, kind: 'pan', original: '4111111111111111' }]), 0);
    const purpose = `vault-roles ${token}`;
    assert.equal(await vault.detokenize(token, { actor: 'test', purpose }), '4111111111111111'); // SELECT + audit INSERT
    assert.equal(await vault.detokenize(`${token}x`, { actor: 'test', purpose }), undefined);
    const raw = await vaultRole.query<{ n: number }>('select count(*)::int as n from vault.tokens where token = $1', [
      token,
    ]);
    assert.equal(raw.rows[0]!.n, 1);
    // The audit is read by its owner (an auditor), not by the role that writes it.
    const audit = await ownerRole.query<{ token: string; found: boolean }>(
      'select token, found from vault.detokenization_audit where purpose = $1 order by audit_id',
      [purpose],
    );
    assert.deepEqual(audit.rows, [
      { token, found: true },
      { token: `${token}x`, found: false },
    ]);
  });

  it('the append-only trigger stays as the second line, for the owner too', async () => {
    const err = await attempt(ownerRole, 'delete from vault.detokenization_audit');
    assert.ok(err, 'the owner deleted audit rows');
    assert.equal(err.code, '42501', err.message);
    assert.match(err.message, /^vault\.detokenization_audit is append-only: DELETE rejected$/);
  });

  it('the application role has no access at all to schema vault', async () => {
    for (const sql of [
      'select count(*) from vault.tokens',
      'select count(*) from vault.detokenization_audit',
      'select count(*) from vault.schema_migrations',
      `insert into vault.detokenization_audit (token, actor, purpose, found) values ('t', 'a', 'p', false)`,
      `insert into vault.tokens (token, kind, key_version, iv, ciphertext, auth_tag) values ('t', 'pan', 1, '', '', '')`,
    ]) {
      await assertRefused(appRole, 'application', sql, /^permission denied for schema vault$/);
    }
    const { rows } = await appRole.query<{ usage: boolean; create: boolean }>(
      `select has_schema_privilege('vault', 'usage') as usage, has_schema_privilege('vault', 'create') as create`,
    );
    assert.deepEqual(rows[0], { usage: false, create: false });
  });
});

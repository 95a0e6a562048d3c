import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLedgerActivities } from '../../src/activities/ledger';
import { type JournalEntryRequest, summarizeLedger } from '../../src/stores/ledger';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { config, requireServices, uniqueId } from '../support/stack';
import { roleStanding } from '../support/roles';

// As the application role (DATABASE_URL: what the worker, router and quality consumer use) the ledger
// can be read and appended to, nothing else. The owner-only statements that would switch the
// append-only triggers off are refused by Postgres' privileges, before any trigger runs.

const LEDGER_TABLES = [
  { table: 'journal_entries', column: 'memo', trigger: 'journal_entries_append_only' },
  { table: 'journal_lines', column: 'amount_minor', trigger: 'journal_lines_append_only' },
] as const;

interface PgError {
  code?: string;
  message: string;
}

describe('database roles: the application role cannot rewrite the ledger', () => {
  const app = createPool(config, 2);

  before(async () => {
    await requireServices('postgres');
    await migrateAsOwner(config);
  });
  after(() => app.end());

  /** Runs `sql` in a transaction that is always rolled back; returns the error, or undefined if it ran. */
  const attempt = async (sql: string): Promise<PgError | undefined> => {
    const client = await app.connect();
    try {
      await client.query('begin');
      await client.query(sql);
      return undefined;
    } catch (err) {
      return err as PgError;
    } finally {
      await client.query('rollback');
      client.release();
    }
  };

  /** Refused for lack of privilege (SQLSTATE 42501), not by a trigger, which uses 42501 too. */
  const assertRefused = async (sql: string, message: RegExp): Promise<void> => {
    const err = await attempt(sql);
    assert.ok(err, `allowed as the application role: ${sql}`);
    assert.equal(err.code, '42501', `${sql}: ${err.message}`);
    assert.match(err.message, message, sql);
  };

  const assertAllowed = async (sql: string): Promise<void> => {
    const err = await attempt(sql);
    assert.equal(err, undefined, `${sql}: ${err?.message}`);
  };

  for (const { table, column, trigger } of LEDGER_TABLES) {
    describe(`ledger.${table}: refused`, () => {
      const denied = new RegExp(`^permission denied for table ${table}$`);
      const notOwner = new RegExp(`^must be owner of (table|relation) ${table}$`);
      const refusals: [statement: string, sql: string, message: RegExp][] = [
        ['UPDATE', `update ledger.${table} set ${column} = ${column}`, denied],
        ['DELETE', `delete from ledger.${table}`, denied],
        ['TRUNCATE', `truncate ledger.${table} cascade`, denied],
        // The attack of issue 8: switch the append-only trigger off, then rewrite.
        ['DISABLE TRIGGER', `alter table ledger.${table} disable trigger ${trigger}`, notOwner],
        ['DISABLE TRIGGER USER', `alter table ledger.${table} disable trigger user`, notOwner],
        ['DROP TRIGGER', `drop trigger ${trigger} on ledger.${table}`, notOwner],
        ['ALTER TABLE ADD COLUMN', `alter table ledger.${table} add column rewritten text`, notOwner],
        ['DROP TABLE', `drop table ledger.${table} cascade`, notOwner],
      ];
      for (const [statement, sql, message] of refusals) it(statement, () => assertRefused(sql, message));
    });
  }

  it('cannot replace the append-only trigger function or create objects in the ledger schema', async () => {
    await assertRefused(
      `create or replace function ledger.reject_mutation() returns trigger language plpgsql as $$ begin return old; end $$`,
      /^(permission denied for schema ledger|must be owner of function reject_mutation)$/,
    );
    await assertRefused('create table ledger.shadow (id int)', /^permission denied for schema ledger$/);
    await assertRefused('create table public.shadow (id int)', /^permission denied for schema public$/);
  });

  it('owns nothing and has no special attributes', async () => {
    const standing = await roleStanding(app);
    assert.notEqual(standing.user, new URL(config.MIGRATION_DATABASE_URL).username, 'DATABASE_URL is the owner');
    assert.deepEqual({ special: standing.special, owned: standing.owned }, { special: false, owned: '0' });
  });

  it('reads and appends: posts a balanced entry and reads it back, with the balance views', async () => {
    const ledger = createLedgerActivities(app);
    const paymentId = uniqueId('roles');
    const request: JournalEntryRequest = {
      postingKey: `payment/${paymentId}/gw:tx:captured:1`,
      paymentId,
      merchantId: 'm-roles',
      factType: 'captured',
      idempotencyKey: `gw:${paymentId}:captured:1`,
      occurredAt: '2026-01-01T00:00:00Z',
      lines: [
        { account: 'gateway_clearing', side: 'debit', amountMinor: 1250, currency: 'EUR' },
        { account: 'merchant_payable', side: 'credit', amountMinor: 1250, currency: 'EUR' },
      ],
    };
    assert.equal((await ledger.postJournalEntry(request)).outcome, 'posted');
    await ledger.recordPaymentFlag({ paymentId, flagKey: 'resolved:roles', kind: 'resolved', reason: 'roles test' });
    const history = await ledger.loadPaymentHistory(paymentId);
    assert.deepEqual([history.postedKeys, history.flagKeys], [[request.postingKey], ['resolved:roles']]);
    const summary = await summarizeLedger(app, paymentId);
    assert.deepEqual([summary.entries, summary.unbalanced], [1, 0]);
    await app.query('select * from ledger.account_balances limit 1');
    await app.query(`select * from ledger.merchant_balances where merchant_id = 'm-roles'`);
  });

  it('inbox and quality tables: only the columns the pipeline updates, no deletes', async () => {
    await assertAllowed('update payments.facts set signalled_at = signalled_at where false');
    await assertRefused(`update payments.facts set body = '{}' where false`, /^permission denied for table facts$/);
    await assertRefused('delete from payments.facts where false', /^permission denied for table facts$/);
    await assertAllowed('update quality.schema_drift set count = count, last_seen = last_seen where false');
    await assertRefused(
      'update quality.schema_drift set detail = null where false',
      /^permission denied for table schema_drift$/,
    );
    await assertAllowed('update quality.consumed_offsets set next_offset = next_offset where false');
    await assertRefused('truncate quality.consumed_offsets', /^permission denied for table consumed_offsets$/);
  });
});

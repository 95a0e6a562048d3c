import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { type JournalEntryRequest, createLedgerActivities } from '../../src/activities/ledger';
import { summarizeLedger } from '../../src/ledger/checks';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { config, requireServices, uniqueId } from '../support/stack';

describe('ledger in Postgres', () => {
  const pool = createPool(config, 4);
  // The append-only triggers are the second line behind privileges (ledger-roles.test.ts): test them as the owner.
  const ownerPool = createPool(config, 1, 'MIGRATION_DATABASE_URL');
  const ledger = createLedgerActivities(pool);
  before(async () => {
    await requireServices('postgres');
    await migrateAsOwner(config);
  });
  after(async () => {
    await pool.end();
    await ownerPool.end();
  });

  const entry = (paymentId: string, amountMinor = 1000): JournalEntryRequest => ({
    postingKey: `payment/${paymentId}/gw:tx:captured:2`,
    paymentId,
    merchantId: 'm-1',
    factType: 'captured',
    idempotencyKey: 'gw:tx:captured:2',
    occurredAt: '2026-01-01T00:00:00Z',
    lines: [
      { account: 'gateway_clearing', side: 'debit', amountMinor, currency: 'EUR' },
      { account: 'merchant_payable', side: 'credit', amountMinor, currency: 'EUR' },
    ],
  });

  it('posts once: the same key with the same lines is a no-op', async () => {
    const id = uniqueId('led');
    const first = await ledger.postJournalEntry(entry(id));
    const again = await ledger.postJournalEntry(entry(id));
    assert.equal(first.outcome, 'posted');
    assert.equal(again.outcome, 'already-posted');
    assert.equal(again.entryId, first.entryId);
    const s = await summarizeLedger(pool, id);
    assert.equal(s.entries, 1);
    assert.deepEqual(s.totals['gateway_clearing|EUR'], { debitMinor: 1000, creditMinor: 0 });
  });

  it('concurrent posts of one key produce one entry', async () => {
    const id = uniqueId('led');
    const results = await Promise.all(Array.from({ length: 8 }, () => ledger.postJournalEntry(entry(id))));
    assert.equal(results.filter((r) => r.outcome === 'posted').length, 1);
    assert.equal((await summarizeLedger(pool, id)).entries, 1);
  });

  it('the same key with different lines is a non-retryable PostingConflict, never a second posting', async () => {
    const id = uniqueId('led');
    await ledger.postJournalEntry(entry(id, 1000));
    await assert.rejects(ledger.postJournalEntry(entry(id, 999)), (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure);
      assert.equal(err.type, 'PostingConflict');
      assert.equal(err.nonRetryable, true);
      return true;
    });
    const s = await summarizeLedger(pool, id);
    assert.equal(s.entries, 1);
    assert.equal(s.totals['merchant_payable|EUR']?.creditMinor, 1000);
  });

  it('the database rejects an unbalanced entry (per currency) and leaves nothing behind', async () => {
    const id = uniqueId('led');
    const bad = entry(id);
    bad.lines = [
      { account: 'gateway_clearing', side: 'debit', amountMinor: 1000, currency: 'EUR' },
      { account: 'merchant_payable', side: 'credit', amountMinor: 1000, currency: 'USD' },
    ];
    await assert.rejects(ledger.postJournalEntry(bad), /unbalanced journal entry/);
    assert.equal((await summarizeLedger(pool, id)).entries, 0);
  });

  it('the database rejects an entry without lines', async () => {
    const id = uniqueId('led');
    await assert.rejects(ledger.postJournalEntry({ ...entry(id), lines: [] }), /has no lines/);
  });

  it('the ledger is append-only even for its owner: UPDATE, DELETE and TRUNCATE are rejected by triggers', async () => {
    const id = uniqueId('led');
    const posted = await ledger.postJournalEntry(entry(id));
    await assert.rejects(
      ownerPool.query('update ledger.journal_lines set amount_minor = 1 where entry_id = $1', [posted.entryId]),
      /append-only/,
    );
    await assert.rejects(
      ownerPool.query('delete from ledger.journal_entries where entry_id = $1', [posted.entryId]),
      /append-only/,
    );
    await assert.rejects(ownerPool.query('truncate ledger.journal_lines cascade'), /append-only/);
    assert.equal((await summarizeLedger(pool, id)).entries, 1);
  });
});

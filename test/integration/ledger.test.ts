import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { createLedgerActivities } from '../../src/activities/ledger';
import { createSlaActivities } from '../../src/activities/sla';
import { factKey } from '../../src/ledger/posting-rules';
import { simulatePayments } from '../../src/simulator/payments';
import { type JournalEntryRequest, recordPaymentFlag, summarizeLedger } from '../../src/stores/ledger';
import { migrateAsOwner } from '../../src/stores/migrate';
import { admitFacts, markSignalled } from '../../src/stores/payment-inbox';
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

describe('SLA sweep query: the stage comes from the state machine, over the signalled facts', () => {
  const pool = createPool(config, 4);
  const sla = createSlaActivities(pool);
  before(async () => {
    await requireServices('postgres');
    await migrateAsOwner(config);
  });
  after(() => pool.end());

  it('finds a payment idle in CAPTURED past its SLA; not a settled, a flagged or an unsignalled one', async () => {
    const { events } = simulatePayments({
      payments: 4,
      seed: 3,
      duplicateRate: 0,
      runId: uniqueId('sla'),
      happyPathOnly: true,
    });
    const [captured, settled, flagged, unsignalled] = [...new Set(events.map((e) => e.paymentId))];
    const factsOf = (id: string | undefined, withSettlement = false) =>
      events.filter((e) => e.paymentId === id && (withSettlement || e.type !== 'settled'));
    const admitted = [...factsOf(captured), ...factsOf(settled, true), ...factsOf(flagged), ...factsOf(unsignalled)];
    await admitFacts(pool, admitted);
    await markSignalled(
      pool,
      admitted.filter((f) => f.paymentId !== unsignalled).map((f) => f.idempotencyKey),
    );
    await recordPaymentFlag(pool, { paymentId: flagged!, flagKey: 'stuck:CAPTURED', kind: 'stuck', reason: 'test' });
    await new Promise((r) => setTimeout(r, 50));

    const overdue = await sla.findOverduePayments({ CAPTURED: 20, AUTHORIZED: 60_000 }, 1_000_000);
    const ours = overdue.filter((p) => [captured, settled, flagged, unsignalled].includes(p.paymentId));
    assert.deepEqual(
      ours.map((p) => [p.paymentId, p.stage]),
      [[captured, 'CAPTURED']],
    );
    assert.ok(Date.parse(ours[0]!.since) <= Date.now() - 20);
  });
});

describe('Precondition expiry query: waits expire from the sweep, not from a timer per fact', () => {
  const pool = createPool(config, 4);
  const sla = createSlaActivities(pool);
  before(async () => {
    await requireServices('postgres');
    await migrateAsOwner(config);
  });
  after(() => pool.end());

  it('finds a payment idle past the timeout with a settlement waiting for its capture; not a complete, an expired or an unsignalled one', async () => {
    const { events } = simulatePayments({
      payments: 4,
      seed: 5,
      duplicateRate: 0,
      runId: uniqueId('wait'),
      happyPathOnly: true,
    });
    const [waiting, complete, expired, unsignalled] = [...new Set(events.map((e) => e.paymentId))];
    const factsOf = (id: string | undefined, withCapture = false) =>
      events.filter((e) => e.paymentId === id && (withCapture || e.type !== 'captured'));
    const admitted = [...factsOf(waiting), ...factsOf(complete, true), ...factsOf(expired), ...factsOf(unsignalled)];
    await admitFacts(pool, admitted);
    await markSignalled(
      pool,
      admitted.filter((f) => f.paymentId !== unsignalled).map((f) => f.idempotencyKey),
    );
    const settlement = factsOf(expired).find((f) => f.type === 'settled')!;
    await recordPaymentFlag(pool, {
      paymentId: expired!,
      flagKey: `timeout:${factKey(settlement)}`,
      kind: 'anomaly',
      stage: 'precondition-timeout',
      reason: 'test',
    });
    await new Promise((r) => setTimeout(r, 50));

    const found = await sla.findExpiredWaits(20, 1_000_000);
    const ours = found.filter((p) => [waiting, complete, expired, unsignalled].includes(p.paymentId));
    const waitingSettlement = factsOf(waiting).find((f) => f.type === 'settled')!;
    assert.deepEqual(
      ours.map((p) => [p.paymentId, p.factKeys]),
      [[waiting, [factKey(waitingSettlement)]]],
    );
    // Not idle long enough: nothing yet.
    const early = await sla.findExpiredWaits(3_600_000, 1_000_000);
    assert.ok(!early.some((p) => p.paymentId === waiting));
  });
});

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

describe('SLA sweep queries: the stage and the waits come from the state machine, over the facts Temporal has', () => {
  const pool = createPool(config, 4);
  const sla = createSlaActivities(pool, { preconditionTimeoutMs: 60_000, lifecycleSearchAttribute: false });
  before(async () => {
    await requireServices('postgres');
    await migrateAsOwner(config);
  });
  after(() => pool.end());

  /**
   * Happy-path payments (created, authorized, captured, settled) admitted to the inbox as the router leaves
   * them: `created` absorbed, the rest signalled; payment i keeps the fact types `keep` allows. The last
   * payment stays unhandled.
   */
  async function inbox(seed: number, prefix: string, count: number, keep: (i: number, type: string) => boolean) {
    const { events } = simulatePayments({
      payments: count,
      seed,
      duplicateRate: 0,
      runId: uniqueId(prefix),
      happyPathOnly: true,
    });
    const ids = [...new Set(events.map((e) => e.paymentId))];
    const factsOf = (i: number) => events.filter((e) => e.paymentId === ids[i] && keep(i, e.type));
    const admitted = ids.flatMap((_, i) => factsOf(i));
    await admitFacts(pool, admitted);
    const handled = admitted.filter((f) => f.paymentId !== ids.at(-1));
    await markSignalled(
      pool,
      handled.filter((f) => f.type !== 'created').map((f) => f.idempotencyKey),
      handled.filter((f) => f.type === 'created').map((f) => f.idempotencyKey),
    );
    return { ids, factsOf };
  }

  /** The payments' facts age past the 20 ms SLA used below (a busy machine only makes them older). */
  const idle = () => new Promise((r) => setTimeout(r, 50));

  it('finds a payment idle in CAPTURED past its SLA; not a settled, a flagged or an unsignalled one', async () => {
    const { ids } = await inbox(3, 'sla', 4, (i, type) => i === 1 || type !== 'settled');
    const [captured, , flagged] = ids;
    await recordPaymentFlag(pool, { paymentId: flagged!, flagKey: 'stuck:CAPTURED', kind: 'stuck', reason: 'test' });
    await idle();

    const overdue = await sla.findOverduePayments({ CAPTURED: 20, AUTHORIZED: 60_000 }, 1_000_000);
    const ours = overdue.filter((p) => ids.includes(p.paymentId));
    assert.deepEqual(
      ours.map((p) => [p.paymentId, p.stage, p.signalled]),
      [[captured, 'CAPTURED', true]],
    );
    assert.ok(Date.parse(ours[0]!.since) <= Date.now() - 20);
  });

  it('finds a payment with only its absorbed `created` overdue in CREATED, to be started; one with a run is judged by what Temporal has', async () => {
    // Payment 0: only `created` (absorbed: no run). Payment 1: `created` absorbed and a settlement
    // signalled, waiting for its capture (its run never saw `created`: OPEN, no SLA). Payment 2: unhandled.
    const { ids } = await inbox(4, 'created', 3, (i, type) => type === 'created' || (i === 1 && type === 'settled'));
    const onlyCreated = ids[0]!;
    await idle();

    const overdue = await sla.findOverduePayments({ CREATED: 20, CAPTURED: 20 }, 1_000_000);
    assert.deepEqual(
      overdue.filter((p) => ids.includes(p.paymentId)).map((p) => [p.paymentId, p.stage, p.signalled]),
      [[onlyCreated, 'CREATED', false]],
    );
  });

  it('finds a payment idle past the timeout with a settlement waiting for its capture; not a complete, an expired or an unsignalled one', async () => {
    const { ids, factsOf } = await inbox(5, 'wait', 4, (i, type) => i === 1 || type !== 'captured');
    const [waiting, , expired] = ids;
    const settlement = factsOf(2).find((f) => f.type === 'settled')!;
    await recordPaymentFlag(pool, {
      paymentId: expired!,
      flagKey: `timeout:${factKey(settlement)}`,
      kind: 'anomaly',
      stage: 'precondition-timeout',
      reason: 'test',
    });
    await idle();

    const found = await sla.findExpiredWaits(20, 1_000_000);
    const waitingSettlement = factsOf(0).find((f) => f.type === 'settled')!;
    assert.deepEqual(
      found.filter((p) => ids.includes(p.paymentId)).map((p) => [p.paymentId, p.factKeys]),
      [[waiting, [factKey(waitingSettlement)]]],
    );
    // Not idle long enough: nothing yet.
    const early = await sla.findExpiredWaits(3_600_000, 1_000_000);
    assert.ok(!early.some((p) => p.paymentId === waiting));
  });
});

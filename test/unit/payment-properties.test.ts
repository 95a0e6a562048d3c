import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { factKey, postingKey } from '../../src/ledger/posting-rules';
import { simulatePayments } from '../../src/simulator/payments';
import {
  emptyCore,
  evaluate,
  isInert,
  lifecycleStatus,
  receive,
  signalsFor,
  statusOf,
} from '../../src/workflows/payment-state';

// Any permutation and duplication of a payment's facts must yield the identical ledger.
// Seeded (PROPERTY_SEED to reproduce a CI failure); PROPERTY_RUNS raises the case count.
const seed = Number(process.env.PROPERTY_SEED ?? 20261124);
const numRuns = Number(process.env.PROPERTY_RUNS ?? 1000);

/** Delivers facts one by one, as the workflow does, and returns the ledger it would write. */
function ledgerFor(paymentId: string, deliveries: PaymentEvent[]) {
  const core = emptyCore(paymentId);
  const entries = new Map<string, string>();
  for (const fact of deliveries) {
    receive(core, fact);
    const { postings } = evaluate(core);
    for (const p of postings) {
      const key = postingKey(paymentId, p.factKey);
      assert.ok(!entries.has(key), `posted ${key} twice`);
      entries.set(key, JSON.stringify(p.lines));
    }
  }
  // Every anomaly, conflicting reports (found on receipt) included.
  return { entries, status: lifecycleStatus(core), anomalies: core.anomalies.length, waiting: core.waiting.length };
}

/**
 * Delivers facts as the router does (signalsFor): a fact the state machine calls inert (given what was
 * handled before) is recorded but never reaches the workflow. Returns the workflow's ledger and the skips.
 */
function routedLedgerFor(paymentId: string, deliveries: PaymentEvent[]) {
  const model = emptyCore(paymentId);
  const reaching = deliveries.flatMap((fact) => signalsFor(model, fact));
  return { ...ledgerFor(paymentId, reaching), skipped: deliveries.length - reaching.length };
}

/** The workflow never needs `created` (the sweep judges CREATED from the inbox): to it, CREATED is OPEN. */
const asWorkflowSees = (status: string) => (status === 'CREATED' ? 'OPEN' : status);

/** The same fact reported by another source: another idempotency key, the same money content. */
function fromOtherSource(fact: PaymentEvent): PaymentEvent {
  return { ...fact, idempotencyKey: `${fact.idempotencyKey}:other`, source: 'partner', sourceSequence: 99 };
}

/** One simulated payment (any lifecycle) with a delivery order and duplicates chosen by fast-check. */
const scenario = fc
  .record({
    simSeed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    order: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 12, maxLength: 12 }),
    duplicates: fc.array(fc.nat({ max: 11 }), { maxLength: 6 }),
    keep: fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
  })
  .map(({ simSeed, order, duplicates, keep }) => {
    const { events } = simulatePayments({ payments: 1, seed: simSeed, duplicateRate: 0, runId: 'prop' });
    const permuted = events
      .map((e, i) => ({ e, k: order[i % order.length]! + i * 1e-9 }))
      .sort((a, b) => a.k - b.k)
      .map((x) => x.e);
    const withDuplicates = [...permuted, ...duplicates.filter((d) => d < events.length).map((d) => events[d]!)];
    const subset = events.filter((_, i) => keep[i % keep.length]);
    return { events, delivered: withDuplicates, subset, subsetShuffled: [...subset].reverse() };
  });

describe('payment state machine properties (fast-check)', () => {
  it(`any permutation and duplication of a payment's facts yields the identical ledger (${numRuns} cases)`, () => {
    fc.assert(
      fc.property(scenario, ({ events, delivered }) => {
        const paymentId = events[0]!.paymentId;
        const inOrder = ledgerFor(paymentId, events);
        const shuffled = ledgerFor(paymentId, delivered);
        assert.deepEqual([...shuffled.entries].sort(), [...inOrder.entries].sort());
        assert.equal(shuffled.status, inOrder.status);
        assert.equal(shuffled.anomalies, 0);
        assert.equal(shuffled.waiting, 0, 'every fact of a complete lifecycle applies');
      }),
      { seed, numRuns },
    );
  });

  it(`with facts missing, the ledger still depends only on the set delivered (${numRuns} cases)`, () => {
    fc.assert(
      fc.property(scenario, ({ events, subset, subsetShuffled }) => {
        const paymentId = events[0]!.paymentId;
        const a = ledgerFor(paymentId, subset);
        const b = ledgerFor(paymentId, subsetShuffled);
        assert.deepEqual([...b.entries].sort(), [...a.entries].sort());
        assert.equal(a.waiting, b.waiting);
      }),
      { seed: seed + 1, numRuns },
    );
  });

  it(`the SLA sweep's status of a set of facts is the one the workflow reaches delivering them (${numRuns} cases)`, () => {
    fc.assert(
      fc.property(scenario, ({ events, delivered, subset, subsetShuffled }) => {
        const paymentId = events[0]!.paymentId;
        assert.equal(statusOf(paymentId, delivered, new Set()), ledgerFor(paymentId, events).status);
        assert.equal(statusOf(paymentId, subset, new Set()), ledgerFor(paymentId, subsetShuffled).status);
      }),
      { seed: seed + 3, numRuns },
    );
  });

  it(`skipping the facts the router calls inert changes nothing the workflow decides (${numRuns} cases)`, () => {
    fc.assert(
      fc.property(
        scenario,
        fc.array(fc.nat({ max: 11 }), { maxLength: 6 }),
        ({ events, delivered, subset }, alsoFrom) => {
          const paymentId = events[0]!.paymentId;
          const others = alsoFrom.filter((i) => i < events.length).map((i) => fromOtherSource(events[i]!));
          // A conflicting report (same fact, other amount) must still reach the workflow, as an anomaly;
          // a conflicting `created` too (it carries the amount), even though `created` itself is absorbed.
          const conflicting = others
            .slice(0, 1)
            .map((f) =>
              'amountMinor' in f
                ? { ...f, amountMinor: f.amountMinor + 1, idempotencyKey: `${f.idempotencyKey}:conflict` }
                : f,
            );
          for (const deliveries of [
            [...delivered, ...others],
            [...others, ...subset],
            [...delivered, ...conflicting],
          ]) {
            const all = ledgerFor(paymentId, deliveries);
            const routed = routedLedgerFor(paymentId, deliveries);
            assert.deepEqual([...routed.entries].sort(), [...all.entries].sort());
            assert.deepEqual(
              [asWorkflowSees(routed.status), routed.anomalies, routed.waiting],
              [asWorkflowSees(all.status), all.anomalies, all.waiting],
            );
          }
        },
      ),
      { seed: seed + 5, numRuns },
    );
  });

  it('a created is inert first or last, a same-content re-report is inert; a conflicting one is not, and takes the absorbed created along', () => {
    const { events } = simulatePayments({ payments: 1, seed: 7, duplicateRate: 0, runId: 'prop', happyPathOnly: true });
    const paymentId = events[0]!.paymentId;
    const created = events.find((e) => e.type === 'created')!;
    const captured = events.find((e) => e.type === 'captured')!;
    assert.equal(isInert(emptyCore(paymentId), created), true, 'created first: no rule reads it, nothing waits for it');
    const core = emptyCore(paymentId);
    for (const e of events.filter((x) => x.type !== 'created')) receive(core, e);
    evaluate(core);
    assert.equal(lifecycleStatus(core), 'SETTLED');
    assert.equal(isInert(core, created), true, 'a late created changes nothing');
    assert.equal(isInert(core, captured), true, 'the same idempotency key');
    assert.equal(isInert(core, fromOtherSource(captured)), true, 'the same capture from another source');
    const other = { ...fromOtherSource(captured), amountMinor: captured.amountMinor + 1 };
    assert.equal(isInert(core, other), false, 'a conflicting report becomes an anomaly');
    const late = emptyCore(paymentId);
    receive(late, captured);
    evaluate(late);
    const authorized = events.find((e) => e.type === 'authorized')!;
    assert.equal(isInert(late, authorized), false, 'a late authorization caps later refunds: the workflow needs it');

    const model = emptyCore(paymentId);
    assert.deepEqual(signalsFor(model, created), [], 'absorbed');
    assert.deepEqual(signalsFor(model, fromOtherSource(created)), [], 'the same created from another path');
    assert.ok('amountMinor' in created);
    const conflicting = {
      ...fromOtherSource(created),
      idempotencyKey: 'conflict',
      amountMinor: created.amountMinor + 1,
    };
    assert.deepEqual(signalsFor(model, conflicting), [created, conflicting], 'both, so the workflow sees the conflict');
    assert.deepEqual(signalsFor(model, captured), [captured]);
  });

  it('a wait an earlier run timed out stays refused when the sweep rebuilds the status', () => {
    const { events } = simulatePayments({ payments: 1, seed: 7, duplicateRate: 0, runId: 'prop', happyPathOnly: true });
    const paymentId = events[0]!.paymentId;
    const settled = events.find((e) => e.type === 'settled')!;
    const timedOut = new Set([`timeout:${factKey(settled)}`]);
    assert.equal(statusOf(paymentId, events, new Set()), 'SETTLED');
    assert.equal(statusOf(paymentId, events, timedOut), 'CAPTURED');
  });

  it('every posting balances per currency in integer minor units', () => {
    fc.assert(
      fc.property(scenario, ({ events }) => {
        const core = emptyCore(events[0]!.paymentId);
        for (const e of events) receive(core, e);
        for (const p of evaluate(core).postings) {
          let sum = 0;
          for (const l of p.lines) {
            assert.ok(Number.isSafeInteger(l.amountMinor) && l.amountMinor > 0);
            sum += l.side === 'debit' ? l.amountMinor : -l.amountMinor;
          }
          assert.equal(sum, 0, `${p.factKey} unbalanced`);
        }
      }),
      { seed: seed + 2, numRuns },
    );
  });
});

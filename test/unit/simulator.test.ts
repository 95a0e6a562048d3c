import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { simulatePayments } from '../../src/simulator/payments';

describe('payment simulator', () => {
  it('is reproducible from its seed and differs across seeds', () => {
    const a = simulatePayments({ payments: 50, seed: 1, duplicateRate: 0.3, runId: 'r' });
    const b = simulatePayments({ payments: 50, seed: 1, duplicateRate: 0.3, runId: 'r' });
    const c = simulatePayments({ payments: 50, seed: 2, duplicateRate: 0.3, runId: 'r' });
    assert.deepEqual(a.deliveries, b.deliveries);
    assert.notDeepEqual(a.deliveries, c.deliveries);
  });

  it('duplicate rate 1 delivers every event exactly twice; without --shuffle each payment keeps its order', () => {
    const sim = simulatePayments({ payments: 40, seed: 3, duplicateRate: 1, runId: 'r' });
    assert.equal(sim.deliveries.length, 2 * sim.events.length);
    const copies = new Map<string, number>();
    for (const e of sim.deliveries) copies.set(e.idempotencyKey, (copies.get(e.idempotencyKey) ?? 0) + 1);
    assert.ok([...copies.values()].every((n) => n === 2));
    const firstSeen = new Map<string, number[]>();
    const seen = new Set<string>();
    for (const e of sim.deliveries) {
      if (seen.has(e.idempotencyKey)) continue;
      seen.add(e.idempotencyKey);
      const seqs = firstSeen.get(e.paymentId) ?? [];
      seqs.push(e.sourceSequence);
      firstSeen.set(e.paymentId, seqs);
    }
    for (const [id, seqs] of firstSeen) {
      assert.deepEqual(
        seqs,
        [...seqs].sort((a, b) => a - b),
        `payment ${id} out of order`,
      );
      assert.deepEqual(
        seqs,
        seqs.map((_, i) => i),
        `payment ${id} has a gap`,
      );
    }
  });

  it('--shuffle reorders payments internally; --stuck withholds settlements', () => {
    const sim = simulatePayments({ payments: 60, seed: 3, duplicateRate: 0, runId: 'r', shuffle: true, stuck: 4 });
    const outOfOrder = new Set<string>();
    const last = new Map<string, number>();
    for (const e of sim.deliveries) {
      if ((last.get(e.paymentId) ?? -1) > e.sourceSequence) outOfOrder.add(e.paymentId);
      last.set(e.paymentId, e.sourceSequence);
    }
    assert.ok(outOfOrder.size > 10, `only ${outOfOrder.size} payments reordered`);
    assert.equal(sim.truth.stuckPaymentIds.length, 4);
    for (const id of sim.truth.stuckPaymentIds) {
      const types = sim.events.filter((e) => e.paymentId === id).map((e) => e.type);
      assert.ok(types.includes('captured') && !types.includes('settled'), `${id}: ${types.join(',')}`);
    }
  });

  it('ground truth adds up in integer minor units', () => {
    const sim = simulatePayments({ payments: 100, seed: 9, duplicateRate: 0, runId: 'r' });
    let captured = 0;
    let refunded = 0;
    for (const e of sim.events) {
      if (e.type === 'captured') captured += e.amountMinor;
      if (e.type === 'refunded') refunded += e.amountMinor;
    }
    const sum = (k: 'capturedMinor' | 'refundedMinor'): number =>
      Object.values(sim.truth.byCurrency).reduce((s, c) => s + c[k], 0);
    assert.equal(sum('capturedMinor'), captured);
    assert.equal(sum('refundedMinor'), refunded);
    const moving = sim.events.filter((e) => !['created', 'authorized', 'voided', 'failed'].includes(e.type)).length;
    assert.equal(sim.truth.moneyMovingFacts, moving);
  });

  it('rejects invalid options with an error naming the option', () => {
    assert.throws(() => simulatePayments({ payments: -1, seed: 1, duplicateRate: 0, runId: 'r' }), /--payments/);
    assert.throws(() => simulatePayments({ payments: 1, seed: 1, duplicateRate: 2, runId: 'r' }), /--duplicate-rate/);
  });
});

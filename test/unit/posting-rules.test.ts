import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { linesFor } from '../../src/ledger/posting-rules';
import { simulatePayments } from '../../src/simulator/payments';

function balance(lines: ReturnType<typeof linesFor>): number {
  return lines.reduce((s, l) => s + (l.side === 'debit' ? l.amountMinor : -l.amountMinor), 0);
}

describe('posting rules', () => {
  const sim = simulatePayments({ payments: 300, seed: 7, duplicateRate: 0, runId: 't' });

  it('every fact of 300 simulated payments posts a balanced entry of positive integer lines', () => {
    let entries = 0;
    for (const fact of sim.events) {
      const lines = linesFor(fact);
      if (lines.length === 0) continue;
      entries += 1;
      assert.equal(balance(lines), 0, `unbalanced entry for ${fact.idempotencyKey}`);
      for (const l of lines) {
        assert.ok(Number.isSafeInteger(l.amountMinor) && l.amountMinor > 0, `bad line amount ${l.amountMinor}`);
        assert.equal(l.currency, fact.currency);
      }
    }
    assert.equal(entries, sim.truth.moneyMovingFacts);
  });

  it('created and authorized move no money; a zero fee produces no zero line', () => {
    const settled = sim.events.find((e) => e.type === 'settled');
    assert.ok(settled);
    assert.deepEqual(linesFor({ ...settled, type: 'created' }), []);
    assert.deepEqual(linesFor({ ...settled, type: 'authorized' }), []);
    const noFee = linesFor({ ...settled, feeMinor: 0 });
    assert.equal(noFee.length, 2);
    assert.ok(noFee.every((l) => l.amountMinor > 0));
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { adjustmentLines, linesFor } from '../../src/ledger/posting-rules';
import { simulatePayments } from '../../src/simulator/payments';

function balance(lines: ReturnType<typeof linesFor>): number {
  return lines.reduce((s, l) => s + (l.side === 'debit' ? l.amountMinor : -l.amountMinor), 0);
}

describe('posting rules', () => {
  const sim = simulatePayments({ payments: 400, seed: 7, duplicateRate: 0, runId: 't' });

  it('every fact of 400 simulated payments posts a balanced entry of positive integer lines', () => {
    let entries = 0;
    const seenTypes = new Set<string>();
    for (const fact of sim.events) {
      const lines = linesFor(fact, 1000);
      seenTypes.add(fact.type);
      if (lines.length === 0) continue;
      entries += 1;
      assert.equal(balance(lines), 0, `unbalanced entry for ${fact.idempotencyKey}`);
      for (const l of lines) {
        assert.ok(Number.isSafeInteger(l.amountMinor) && l.amountMinor > 0, `bad line amount ${l.amountMinor}`);
        assert.equal(l.currency, fact.currency);
      }
    }
    assert.equal(entries, sim.truth.moneyMovingFacts);
    assert.equal(seenTypes.size, 10, `the simulator covers every fact type, saw ${[...seenTypes].join(', ')}`);
  });

  it('facts that move no money post nothing; zero fees produce no zero lines', () => {
    const s = sim.events.find((e) => e.type === 'settled');
    assert.ok(s && s.type === 'settled');
    for (const type of ['created', 'authorized', 'voided'] as const) {
      assert.deepEqual(linesFor({ ...s, type, amountMinor: 1 }), []);
    }
    const noFee = linesFor({ ...s, feeMinor: 0 });
    assert.equal(noFee.length, 2);
    assert.ok(noFee.every((l) => l.amountMinor > 0));
  });

  it('a manual adjustment balances against suspense and cannot target suspense', () => {
    assert.equal(balance(adjustmentLines('merchant_payable', 'credit', 500, 'EUR')), 0);
    assert.deepEqual(
      adjustmentLines('merchant_payable', 'credit', 500, 'EUR').map((l) => l.account),
      ['suspense', 'merchant_payable'],
    );
    assert.throws(() => adjustmentLines('suspense', 'debit', 1, 'EUR'), /suspense/);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  GENESIS_SEAL,
  type WindowEntry,
  entryDifferences,
  parseWindow,
  sealOf,
  totalsDifferences,
  totalsOf,
} from '../../src/ledger/seals';

// Seals and totals are what verify and every load compare: they must not depend on the order rows
// arrive in, must change with any field, and money must add up exactly beyond 2^53.

const entry = (id: number, amount: string, currency = 'EUR'): WindowEntry => ({
  entryId: id,
  xid: String(1000 + id),
  postingKey: `payment/p${id}/captured:c1`,
  paymentId: `p${id}`,
  merchantId: 'm1',
  factType: 'captured',
  idempotencyKey: `p${id}:captured`,
  traceId: null,
  occurredAtMs: 1_767_225_600_000 + id,
  postedAtMs: 1_767_225_601_000 + id,
  lines: [
    {
      lineId: id * 10,
      accountCode: 'gateway_clearing',
      merchantId: 'm1',
      side: 'debit',
      amountMinor: amount,
      currency,
    },
    {
      lineId: id * 10 + 1,
      accountCode: 'merchant_payable',
      merchantId: 'm1',
      side: 'credit',
      amountMinor: amount,
      currency,
    },
  ],
});

describe('finance seals and totals', () => {
  it('a seal does not depend on the order of entries or lines', () => {
    const entries = [entry(1, '100'), entry(2, '250', 'USD'), entry(3, '7')];
    const seal = sealOf(GENESIS_SEAL, entries);
    fc.assert(
      fc.property(fc.shuffledSubarray(entries, { minLength: 3, maxLength: 3 }), fc.boolean(), (shuffled, flip) => {
        const reordered = shuffled.map((e) => (flip ? { ...e, lines: [...e.lines].reverse() } : e));
        assert.equal(sealOf(GENESIS_SEAL, reordered), seal);
      }),
    );
  });

  it('a seal changes with any altered field, and with the previous seal', () => {
    const base = [entry(1, '100'), entry(2, '250')];
    const seal = sealOf(GENESIS_SEAL, base);
    const altered: WindowEntry[] = [
      { ...base[0]!, merchantId: 'm2' },
      { ...base[0]!, occurredAtMs: base[0]!.occurredAtMs + 1 },
      { ...base[0]!, lines: [{ ...base[0]!.lines[0]!, amountMinor: '101' }, base[0]!.lines[1]!] },
    ];
    for (const a of altered) assert.notEqual(sealOf(GENESIS_SEAL, [a, base[1]!]), seal);
    assert.notEqual(sealOf('f'.repeat(64), base), seal);
    assert.deepEqual(entryDifferences(base, [altered[2]!, base[1]!]), { altered: [1], missing: [], added: [] });
    assert.deepEqual(entryDifferences(base, [base[1]!, entry(3, '1')]), { altered: [], missing: [1], added: [3] });
  });

  it('totals per currency are exact beyond 2^53 and name what differs', () => {
    const big = '9007199254740993';
    const t = totalsOf([entry(1, big), entry(2, '1'), entry(3, '5', 'JPY')]);
    assert.deepEqual(t.byCurrency.EUR, { lines: 4, debitMinor: '9007199254740994', creditMinor: '9007199254740994' });
    assert.deepEqual(Object.keys(t.byCurrency), ['EUR', 'JPY']);
    const other = totalsOf([entry(1, big), entry(2, '2'), entry(3, '5', 'JPY')]);
    assert.deepEqual(totalsDifferences(t, other), [
      'EUR debitMinor ledger 9007199254740994 snowflake 9007199254740995',
      'EUR creditMinor ledger 9007199254740994 snowflake 9007199254740995',
    ]);
  });

  it('parses windows and refuses empty or reversed ones', () => {
    assert.deepEqual(parseWindow('100-250'), { lo: '100', hi: '250' });
    assert.deepEqual(parseWindow('load/0-791'), { lo: '0', hi: '791' });
    assert.throws(() => parseWindow('250-100'), /lo < hi/);
    assert.throws(() => parseWindow('5-5'), /lo < hi/);
    assert.throws(() => parseWindow('abc'), /expected/);
  });
});

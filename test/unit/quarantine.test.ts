import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  QUARANTINE_ID_PATTERN,
  amountOf,
  quarantineItemOf,
  quarantineSuspenseLines,
} from '../../src/quality/quarantine';

// The pure part of "quarantine never drops money": what money a quarantined record carries (integer minor
// units only, never a guess), the item's identity under redelivery, and its suspense entry.

const message = (value: unknown, headers: Record<string, string> = {}, key: string | null = 'pay-1') => ({
  key: key === null ? null : Buffer.from(key),
  value: Buffer.from(JSON.stringify(value)),
  headers: { 'idempotency-key': 'webhook:acme:evt_1', source: 'webhook', 'quarantine-reason': 'why', ...headers },
  offset: '7',
});
const read = { topic: 'quarantine', partition: 0 };

describe('quarantined money', () => {
  it('reads integer minor units and an ISO code from each known shape', () => {
    assert.deepEqual(amountOf({ data: { object: { amountMinor: 1999, currency: 'EUR' } } }), {
      status: 'parsed',
      amountMinor: 1999,
      currency: 'EUR',
    });
    assert.deepEqual(amountOf({ amount: { value: 0, currency: 'USD' } }), {
      status: 'parsed',
      amountMinor: 0,
      currency: 'USD',
    });
    assert.deepEqual(amountOf({ gross: { value: 500, currency: 'GBP' } }).status, 'parsed');
    assert.deepEqual(amountOf({ nothing: 1 }), { status: 'none' });
  });

  it('never guesses: decimals, decimal strings, bad currencies and unsafe integers are unparseable', () => {
    for (const record of [
      { amount: { value: 10.5, currency: 'EUR' } },
      { gross: { value: '10.00', currency: 'EUR' } },
      { amountMinor: 100, currency: 'eur' },
      { amountMinor: 2 ** 60, currency: 'EUR' },
      { amountMinor: -1, currency: 'EUR' },
    ]) {
      const a = amountOf(record);
      assert.equal(a.status, 'unparseable', JSON.stringify(record));
    }
  });

  it('is the same item under redelivery and another item for other bytes', () => {
    const a = quarantineItemOf(read, message({ amountMinor: 1, currency: 'EUR' }));
    const again = quarantineItemOf(
      { topic: 'quarantine', partition: 2 },
      { ...message({ amountMinor: 1, currency: 'EUR' }), offset: '99' },
    );
    const other = quarantineItemOf(read, message({ amountMinor: 2, currency: 'EUR' }));
    assert.match(a.quarantineId, QUARANTINE_ID_PATTERN);
    assert.equal(again.quarantineId, a.quarantineId);
    assert.notEqual(other.quarantineId, a.quarantineId);
  });

  it('names the payment only when it is a usable payment id', () => {
    assert.equal(
      quarantineItemOf(read, message({ data: { object: { paymentId: 'p-1' } } }, {}, null)).paymentId,
      'p-1',
    );
    assert.equal(
      quarantineItemOf(read, message({ data: { object: { paymentId: 'no id!' } } }, {}, 'no id!')).paymentId,
      null,
    );
  });

  it('holds money in a balanced suspense entry; no entry for authorizations, CDC rows or no amount', () => {
    const lines = quarantineSuspenseLines({
      source: 'webhook',
      eventType: 'payment.captured',
      amount: { status: 'parsed', amountMinor: 1999, currency: 'EUR' },
    });
    assert.deepEqual(
      lines.map((l) => `${l.account} ${l.side} ${l.amountMinor}`),
      ['gateway_clearing debit 1999', 'suspense credit 1999'],
    );
    const refund = quarantineSuspenseLines({
      source: 'webhook',
      eventType: 'payment.refunded',
      amount: { status: 'parsed', amountMinor: 5, currency: 'EUR' },
    });
    assert.deepEqual(
      refund.map((l) => `${l.account} ${l.side}`),
      ['suspense debit', 'gateway_clearing credit'],
    );
    const parsed = { status: 'parsed', amountMinor: 10, currency: 'EUR' } as const;
    assert.deepEqual(quarantineSuspenseLines({ source: 'gateway', eventType: 'AUTHORISATION', amount: parsed }), []);
    assert.deepEqual(quarantineSuspenseLines({ source: 'cdc', eventType: null, amount: parsed }), []);
    assert.deepEqual(
      quarantineSuspenseLines({
        source: 'partner',
        eventType: null,
        amount: { status: 'unparseable', raw: '"10.00"' },
      }),
      [],
    );
  });
});

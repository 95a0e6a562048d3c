import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  QUARANTINE_ID_PATTERN,
  amountOf,
  keepable,
  quarantineIdOf,
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

  it('cuts every field of a hostile message to what Postgres and the ledger accept, keeping its identity', () => {
    const key = `k\u0000${'x'.repeat(10_000)}`;
    const item = quarantineItemOf(
      read,
      message(
        { merchantId: 'm'.repeat(500), type: `t\u0000`, amountMinor: 5, currency: 'EUR' },
        {
          'idempotency-key': key,
          'trace-id': 'A'.repeat(32),
          'received-at': '+275760-09-13T00:00:00.000Z',
          'quarantine-reason': `bad \u0000 ${'r'.repeat(5_000)}`,
          [`h\u0000`]: '\ud800',
        },
        'not a payment id \u0000',
      ),
    );
    const texts = [
      item.idempotencyKey,
      item.reason,
      item.key!,
      ...Object.keys(item.headers),
      ...Object.values(item.headers),
    ];
    for (const t of texts) assert.doesNotMatch(t, /\u0000|[\uD800-\uDFFF]/, JSON.stringify(t.slice(0, 40)));
    assert.ok(
      item.idempotencyKey.length <= 256 && item.idempotencyKey.startsWith('k\uFFFDxxx'),
      item.idempotencyKey.slice(0, 20),
    );
    const body = { merchantId: 'm'.repeat(500), type: `t\u0000`, amountMinor: 5, currency: 'EUR' };
    assert.equal(
      item.quarantineId,
      quarantineIdOf(key, Buffer.from(JSON.stringify(body)), null),
      'the id comes from the key as sent, not as kept',
    );
    assert.ok(item.reason.length <= 2000);
    assert.equal(item.merchantId, null, 'a 500-character merchant is not guessed at');
    assert.equal(item.traceId, null, 'the ledger takes only 32 lowercase hex digits');
    assert.equal(item.receivedAt, null, 'a year Postgres cannot hold');
    assert.deepEqual(item.amount, { status: 'parsed', amountMinor: 5, currency: 'EUR' }, 'the money is still read');
  });

  it('says so when an amount is nested too deep to write out', () => {
    const deep = JSON.parse(`{"amountMinor":${'['.repeat(50_000)}1${']'.repeat(50_000)},"currency":"EUR"}`) as unknown;
    const a = amountOf(deep);
    assert.equal(a.status, 'unparseable');
    assert.ok(a.status === 'unparseable' && a.raw.length <= 200);
  });

  it('keepable: NUL and lone surrogates replaced, pairs kept, long text cut and marked', () => {
    assert.equal(keepable('a\u0000b', 10), 'a\uFFFDb');
    assert.equal(keepable('\ud83d\ude00', 10), '\ud83d\ude00');
    assert.equal(keepable('x\ud800y\udc00', 10), 'x\uFFFDy\uFFFD');
    const cut = keepable('y'.repeat(1_000), 100);
    assert.equal(cut.length <= 100, true);
    assert.match(cut, /…\(\+\d+ chars\)$/);
  });
});

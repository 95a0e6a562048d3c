import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePaymentEvent } from '../../src/contracts/payment-event';

const valid = {
  version: 1,
  idempotencyKey: 'gw-eu-west:tx1:captured:2',
  paymentId: 'p-1',
  merchantId: 'm-1',
  region: 'eu-west',
  type: 'captured',
  amountMinor: 12345,
  currency: 'EUR',
  occurredAt: '2026-01-01T00:00:00.000Z',
  source: 'gateway',
  sourceSequence: 2,
};

describe('payment event contract', () => {
  it('accepts a valid v1 event', () => {
    const r = parsePaymentEvent(JSON.stringify(valid));
    assert.equal(r.ok, true);
  });

  it('rejects float money and names the field', () => {
    const r = parsePaymentEvent(JSON.stringify({ ...valid, amountMinor: 123.45 }));
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.reason, /^amountMinor: /);
  });

  it('rejects a currency that is not ISO 4217 shaped', () => {
    const r = parsePaymentEvent(JSON.stringify({ ...valid, currency: 'eur' }));
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.reason, /currency/);
  });

  it('rejects a fee above the amount', () => {
    const r = parsePaymentEvent(JSON.stringify({ ...valid, type: 'settled', feeMinor: 20000 }));
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.reason, /feeMinor exceeds amountMinor/);
  });

  it('rejects an unknown version and malformed JSON with distinct reasons', () => {
    const v2 = parsePaymentEvent(JSON.stringify({ ...valid, version: 2 }));
    assert.match(v2.ok ? '' : v2.reason, /^version: /);
    const bad = parsePaymentEvent('{"version":1,');
    assert.match(bad.ok ? '' : bad.reason, /^malformed JSON/);
    const empty = parsePaymentEvent(null);
    assert.equal(empty.ok ? '' : empty.reason, 'empty message value');
  });
});

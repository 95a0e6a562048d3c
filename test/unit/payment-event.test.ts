import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePaymentEvent } from '../../src/contracts/payment-event';

const envelope = {
  version: 1,
  idempotencyKey: 'gw-eu-west:tx1:captured:2',
  paymentId: 'p-1',
  merchantId: 'm-1',
  region: 'eu-west',
  currency: 'EUR',
  occurredAt: '2026-01-01T00:00:00.000Z',
  source: 'gateway',
  sourceSequence: 2,
};
const captured = { ...envelope, type: 'captured', captureId: 'cap1', amountMinor: 12345, platformFeeMinor: 100 };
const settled = {
  ...envelope,
  type: 'settled',
  settlementId: 's1',
  captureId: 'cap1',
  amountMinor: 12345,
  feeMinor: 50,
};

const reason = (raw: unknown): string => {
  const r = parsePaymentEvent(typeof raw === 'string' ? raw : JSON.stringify(raw));
  return r.ok ? '' : r.reason;
};

describe('payment event contract', () => {
  it('accepts every fact type of v1', () => {
    const facts = [
      { ...envelope, type: 'created', amountMinor: 1 },
      { ...envelope, type: 'authorized', amountMinor: 1 },
      captured,
      { ...envelope, type: 'voided' },
      { ...envelope, type: 'refunded', refundId: 'r1', amountMinor: 5 },
      settled,
      { ...envelope, type: 'chargeback_opened', chargebackId: 'cb1', amountMinor: 5 },
      { ...envelope, type: 'chargeback_won', chargebackId: 'cb1' },
      { ...envelope, type: 'chargeback_lost', chargebackId: 'cb1' },
      { ...envelope, type: 'failed', reason: 'card_declined' },
    ];
    for (const f of facts) assert.equal(parsePaymentEvent(JSON.stringify(f)).ok, true, f.type);
  });

  it('defaults the platform fee to zero', () => {
    const { platformFeeMinor: _omit, ...noFee } = captured;
    const r = parsePaymentEvent(JSON.stringify(noFee));
    assert.ok(r.ok && r.value.type === 'captured' && r.value.platformFeeMinor === 0);
  });

  it('rejects float money and names the field', () => {
    assert.match(reason({ ...captured, amountMinor: 123.45 }), /^amountMinor: amount must be integer minor units/);
  });

  it('rejects a currency that is not ISO 4217 shaped', () => {
    assert.match(reason({ ...captured, currency: 'eur' }), /^currency: /);
  });

  it('rejects fees above the amount', () => {
    assert.match(reason({ ...settled, feeMinor: 20000 }), /feeMinor: feeMinor exceeds amountMinor/);
    assert.match(reason({ ...captured, platformFeeMinor: 20000 }), /platformFeeMinor exceeds amountMinor/);
  });

  it('rejects a fact missing its business id, an unknown type, an unknown version and malformed JSON', () => {
    const { captureId: _c, ...noId } = captured;
    assert.match(reason(noId), /^captureId: /);
    assert.match(reason({ ...envelope, type: 'teleported' }), /^type: /);
    assert.match(reason({ ...captured, version: 2 }), /^version: /);
    assert.match(reason('{"version":1,'), /^malformed JSON/);
    assert.equal(
      parsePaymentEvent(null).ok ? '' : (parsePaymentEvent(null) as { reason: string }).reason,
      'empty message value',
    );
  });
});

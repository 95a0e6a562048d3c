import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ENVELOPE_HEADERS,
  HEADERS,
  cdcIdempotencyKey,
  consumedQuarantineMessage,
  edgeEnvelope,
  factMessage,
  parseSchemaHeader,
  schemaHeader,
  traceIdOf,
} from '../../src/contracts/envelope';
import { type FactOf, parsePaymentEvent } from '../../src/contracts/payment-event';
import { simulatePayments } from '../../src/simulator/payments';
import { emptyCore, receive } from '../../src/workflows/payment-state';

const topics = { raw: 'raw', facts: 'facts', quarantine: 'quarantine' };
const schemas = { raw: { name: 'gateway-event', version: 1 }, fact: { name: 'payment-fact', version: 2 } };
// A captured fact as the simulator's gateways report it.
const fact = simulatePayments({
  payments: 1,
  seed: 3,
  duplicateRate: 0,
  runId: 'env',
  happyPathOnly: true,
}).events.find((e): e is FactOf<'captured'> => e.type === 'captured')!;
const at = '2026-01-01T00:00:01.000Z';
const unmapped = { region: fact.region, key: fact.paymentId, idempotencyKey: 'gw-eu-west:event:e1' };

describe('the Kafka envelope', () => {
  it('gives raw, fact and quarantine messages one header set, with the trace id of the idempotency key', () => {
    const envelope = edgeEnvelope('gateway', topics, schemas);
    const [raw, factOut] = envelope(at, { any: 'event' }, { ok: true, value: fact }, unmapped);
    const [, quarantined] = envelope(at, { any: 'event' }, { ok: false, reason: 'amount.value: bad' }, unmapped);
    const names = (h: Record<string, string>) => Object.keys(h).sort();
    const expected = [...ENVELOPE_HEADERS, HEADERS.region].sort();
    assert.deepEqual(names(raw.headers), expected);
    assert.deepEqual(names(factOut.headers), expected);
    assert.deepEqual(names(quarantined.headers), [...expected, HEADERS.quarantineReason].sort());
    assert.deepEqual([raw.topic, factOut.topic, quarantined.topic], ['raw', 'facts', 'quarantine']);
    assert.equal(raw.headers[HEADERS.traceId], traceIdOf(fact.idempotencyKey));
    assert.equal(factOut.headers[HEADERS.traceId], raw.headers[HEADERS.traceId]);
    assert.equal(raw.headers[HEADERS.schema], 'gateway-event@1');
    assert.equal(factOut.headers[HEADERS.schema], 'payment-fact@2');
    // Unmapped: the identity the raw event allowed, and the raw event's schema on its quarantine message.
    assert.equal(quarantined.headers[HEADERS.idempotencyKey], 'gw-eu-west:event:e1');
    assert.equal(quarantined.headers[HEADERS.schema], 'gateway-event@1');
    assert.equal(quarantined.headers[HEADERS.quarantineReason], 'amount.value: bad');
  });

  it("writes the edge's trace id into the fact, over one a sender put there", () => {
    const out = factMessage({ ...fact, traceId: 'f'.repeat(32) }, { receivedAt: at }, 'facts', schemas.fact);
    const parsed = parsePaymentEvent(out.value);
    assert.ok(parsed.ok);
    assert.equal(parsed.value.traceId, traceIdOf(fact.idempotencyKey));
    const carried = factMessage(fact, { receivedAt: at, traceId: 'a'.repeat(32) }, 'facts', schemas.fact);
    assert.equal(carried.headers[HEADERS.traceId], 'a'.repeat(32), 'carried from the upstream message');
    const garbage = factMessage(fact, { receivedAt: at, traceId: 'not a trace id' }, 'facts', schemas.fact);
    assert.equal(garbage.headers[HEADERS.traceId], traceIdOf(fact.idempotencyKey));
  });

  it('derives trace ids deterministically, 32 hex digits', () => {
    assert.match(traceIdOf('webhook:acme:evt_1'), /^[0-9a-f]{32}$/);
    assert.equal(traceIdOf('webhook:acme:evt_1'), traceIdOf('webhook:acme:evt_1'));
    assert.notEqual(traceIdOf('webhook:acme:evt_1'), traceIdOf('webhook:acme:evt_2'));
  });

  it('keeps a consumed message as it was when quarantining it, adding why and where', () => {
    const message = {
      key: Buffer.from(fact.paymentId),
      value: Buffer.from('{}'),
      headers: { source: 'cdc' },
      offset: '7',
    };
    const q = consumedQuarantineMessage('quarantine', { topic: 't', partition: 2 }, message, 'why');
    assert.deepEqual(q.headers, {
      source: 'cdc',
      'quarantine-reason': 'why',
      'source-topic': 't',
      'source-partition': '2',
      'source-offset': '7',
    });
    assert.equal(q.value, message.value);
  });

  it('formats the schema header and CDC keys in one way', () => {
    assert.deepEqual(parseSchemaHeader(schemaHeader({ name: 'payment-fact', version: 2 })), {
      name: 'payment-fact',
      version: 2,
    });
    assert.equal(parseSchemaHeader('payment-fact'), undefined);
    assert.equal(cdcIdempotencyKey('db', 's.payments', { id: 'a,b', x: 1 }, '9'), 'cdc:db.s.payments:id=a%2Cb,x=1:9');
    assert.equal(cdcIdempotencyKey('db', 's.payments', null, '9'), 'cdc:db.s.payments:truncate:9');
  });

  it('a trace id is not part of what a fact says: the same capture from two sources is a duplicate', () => {
    const core = emptyCore(fact.paymentId);
    assert.equal(receive(core, { ...fact, traceId: traceIdOf(fact.idempotencyKey) }), 'new');
    const other = { ...fact, idempotencyKey: 'webhook:acme:evt_9', source: 'webhook' as const };
    assert.equal(receive(core, { ...other, traceId: traceIdOf(other.idempotencyKey) }), 'duplicate');
  });
});

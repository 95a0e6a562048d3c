import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config';
import {
  type EdgeMessage,
  edgeEnvelope,
  partnerIdempotencyKey,
  unmappedGatewayIdempotencyKey,
} from '../../src/contracts/envelope';
import { gatewayEventToFact } from '../../src/contracts/gateway-event';
import { partnerSettlementToFact } from '../../src/contracts/partner-api';
import { WEBHOOK_RAW_SCHEMAS, webhookItemToFact } from '../../src/contracts/partner-webhooks';
import type { FactOf } from '../../src/contracts/payment-event';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { CURRENT_SCHEMAS } from '../../src/quality/schema-registry';
import { splitByChannel } from '../../src/simulator/channels';
import { encodeGatewayEvent } from '../../src/simulator/gateway-feed';
import { toPartnerSettlement } from '../../src/simulator/partner-api';
import { simulatePayments } from '../../src/simulator/payments';
import type { RestoredRecord } from '../../src/streams/archiver/layout';
import { edgeTopicsOf, topicsFor } from '../../src/streams/kafka';
import { replayRecord } from '../../src/streams/replay/replay-record';

// Replay's normalizer against the live edge: a raw message built by the edge's own envelope and
// mapping, as the archive restores it, replays to the same fact (same idempotency key) or quarantine.

const config = loadConfig({});
const topics = topicsFor(config);
const tokenizer = tokenizerFromConfig(config);
const receivedAt = '2026-11-29T12:00:00.000Z';
const facts = simulatePayments({ payments: 60, seed: 3, duplicateRate: 0, runId: 'rpl' }).deliveries;
const byChannel = splitByChannel(facts);

/** The raw message as the archive gives it back: bytes and header bytes. */
const restored = (m: EdgeMessage, offset = 0): RestoredRecord => ({
  offset: String(offset),
  timestamp: String(Date.parse(receivedAt)),
  key: m.key === null ? null : Buffer.from(m.key),
  value: m.value,
  headers: Object.entries(m.headers).map(([n, v]) => [n, Buffer.from(v)]),
});

describe('replayRecord: the live mapping on archived raw records', () => {
  it('gateway events: the same fact and idempotency key as the connector, and the same quarantine', () => {
    const envelope = edgeEnvelope('gateway', edgeTopicsOf(topics, 'rawGateways'), {
      raw: CURRENT_SCHEMAS['gateway-event'],
      fact: CURRENT_SCHEMAS['payment-fact'],
    });
    for (const [i, fact] of byChannel.gateway.entries()) {
      const gw = { gateway: `gw-${fact.region}`, region: fact.region };
      const event = tokenizer.tokenize({ seq: i + 1, ...encodeGatewayEvent(fact, gw.gateway) }).payload;
      const live = gatewayEventToFact(gw, event);
      const [raw] = envelope(receivedAt, event, live, { key: null, idempotencyKey: 'unused' });
      assert.deepEqual(replayRecord('gateways', restored(raw)), {
        kind: 'fact',
        fact: live.ok && live.value,
      });
    }
    const broken = { eventId: 'e-1', eventType: 'CAPTURE', paymentReference: 'p-1' };
    const live = gatewayEventToFact({ gateway: 'gw-eu-west', region: 'eu-west' }, broken);
    assert.equal(live.ok, false);
    const [raw] = envelope(receivedAt, broken, live, {
      region: 'eu-west',
      key: 'p-1',
      idempotencyKey: unmappedGatewayIdempotencyKey('gw-eu-west', 'e-1', 9),
    });
    assert.deepEqual(replayRecord('gateways', restored(raw)), {
      kind: 'quarantine',
      reason: !live.ok && live.reason,
    });
  });

  it('partner settlements: the partner from the key, the region from the header', () => {
    const envelope = edgeEnvelope('partner', edgeTopicsOf(topics, 'rawPartnerApi'), {
      raw: CURRENT_SCHEMAS['partner-settlement'],
      fact: CURRENT_SCHEMAS['payment-fact'],
    });
    const settled = facts.filter((f): f is FactOf<'settled'> => f.type === 'settled');
    assert.ok(settled.length > 0);
    for (const fact of settled) {
      const record = tokenizer.tokenize(toPartnerSettlement(fact)).payload as { id: string };
      const live = partnerSettlementToFact('acme-pay', 'eu-west', record);
      const [raw] = envelope(receivedAt, record, live, {
        key: null,
        idempotencyKey: partnerIdempotencyKey('acme-pay', record.id),
      });
      const replayed = replayRecord('partner', restored(raw));
      assert.deepEqual(replayed, { kind: 'fact', fact: live.ok && live.value });
    }
  });

  it('webhooks: the scheme from the schema header, receivedAt from its header (Adyen dates by receipt)', () => {
    for (const scheme of ['stripe', 'adyen'] as const) {
      const envelope = edgeEnvelope('webhook', edgeTopicsOf(topics, 'rawWebhooks'), {
        raw: CURRENT_SCHEMAS[WEBHOOK_RAW_SCHEMAS[scheme]],
        fact: CURRENT_SCHEMAS['payment-fact'],
      });
      const fact = byChannel.webhook[0] ?? facts[0]!;
      const item =
        scheme === 'stripe'
          ? { id: 'evt_1', type: `payment.${fact.type}`, created: 1767225600, data: { object: { ...fact } } }
          : {
              pspReference: 'psp1',
              eventCode: 'AUTHORISATION',
              success: 'true',
              eventDate: '2026-11-29T11:59:00+01:00',
              merchantReference: fact.paymentId,
              merchantAccountCode: fact.merchantId,
              amount: { value: 1250, currency: 'EUR' },
            };
      const partner = { id: 'acme-hooks', region: 'eu-west', scheme };
      const live = webhookItemToFact(partner, item, receivedAt);
      assert.equal(live.ok, true, `${scheme}: ${!live.ok && live.reason}`);
      const [raw] = envelope(receivedAt, item, live, { key: null, idempotencyKey: 'unused' });
      assert.deepEqual(replayRecord('webhooks', restored(raw)), {
        kind: 'fact',
        fact: live.ok && live.value,
      });
    }
  });

  it('refuses a record whose mapping disagrees with the key the edge recorded', () => {
    const envelope = edgeEnvelope('partner', edgeTopicsOf(topics, 'rawPartnerApi'), {
      raw: CURRENT_SCHEMAS['partner-settlement'],
      fact: CURRENT_SCHEMAS['payment-fact'],
    });
    const fact = facts.find((f): f is FactOf<'settled'> => f.type === 'settled')!;
    const record = toPartnerSettlement(fact);
    const live = partnerSettlementToFact('acme-pay', 'eu-west', record);
    const [raw] = envelope(receivedAt, record, live, { key: null, idempotencyKey: 'unused' });
    raw.headers['idempotency-key'] = 'partner:acme-pay:someone-else';
    const replayed = replayRecord('partner', restored(raw));
    assert.equal(replayed.kind, 'quarantine');
    assert.match(replayed.kind === 'quarantine' ? replayed.reason : '', /not the live mapping/);
  });
});

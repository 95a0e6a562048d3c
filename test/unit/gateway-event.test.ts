import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config';
import { gatewayIdempotencyKey } from '../../src/contracts/envelope';
import { GATEWAY_FACT_TYPES, gatewayEventToFact, parseGatewayEvent } from '../../src/contracts/gateway-event';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { cursorFile, readGatewayCursor, writeGatewayCursor } from '../../src/ingest/gateways/gateway-cursor';
import { parseGatewayFeeds } from '../../src/ingest/gateways/gateway-connector';
import { luhnValid } from '../../src/ingest/pii-detect';
import { scanValue } from '../../src/quality/pii-scanner';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { splitByChannel } from '../../src/simulator/channels';
import { createGatewayFeed, encodeGatewayEvent } from '../../src/simulator/gateway-feed';
import { simulatePayments } from '../../src/simulator/payments';

const config = loadConfig({});
const tokenizer = tokenizerFromConfig(config);

const gatewayFacts = splitByChannel(
  simulatePayments({ payments: 400, seed: 42, duplicateRate: 0, runId: 'gwu' }).deliveries,
).gateway;
const gw = (f: PaymentEvent) => ({ gateway: `gw-${f.region}`, region: f.region });
const encoded = (f: PaymentEvent) => ({ seq: 7, ...encodeGatewayEvent(f, gw(f).gateway) });
const one = (type: PaymentEvent['type']): PaymentEvent => gatewayFacts.find((f) => f.type === type)!;

const reason = (gateway: { gateway: string; region: string }, raw: unknown): string => {
  const r = gatewayEventToFact(gateway, raw);
  return r.ok ? '' : r.reason;
};

describe('gateway event contract', () => {
  it('encodes every gateway fact type and normalizes it back to the same fact, tokenized or not', () => {
    const types = new Set(gatewayFacts.map((f) => f.type));
    assert.deepEqual([...types].sort(), ['authorized', 'captured', 'failed', 'voided']);
    for (const fact of gatewayFacts) {
      const event = encoded(fact);
      assert.equal(parseGatewayEvent(event).ok, true);
      assert.deepEqual(gatewayEventToFact(gw(fact), event), { ok: true, value: fact });
      const tokenized = tokenizer.tokenize(event).payload;
      assert.deepEqual(scanValue(tokenized), [], `no PAN/PII left in ${fact.idempotencyKey}`);
      assert.deepEqual(gatewayEventToFact(gw(fact), tokenized), { ok: true, value: fact });
    }
  });

  it("speaks the gateway's format: event types, minor units, a Luhn-valid PAN, cardholder and shopper", () => {
    const capture = encoded(one('captured'));
    assert.equal(capture.eventType, 'CAPTURE');
    assert.ok(capture.eventType === 'CAPTURE' && capture.captureRef === 'cap1');
    assert.equal(capture.paymentReference, one('captured').paymentId);
    assert.ok(Number.isInteger(capture.amount.value));
    assert.ok(luhnValid(capture.card.number) && capture.card.number.length === 16);
    assert.match(capture.card.holderName ?? '', /^\S+ \S+$/);
    assert.match(capture.shopper?.email ?? '', /@example\.com$/);
    assert.equal(encoded(one('voided')).eventType, 'CANCELLATION');
    assert.equal(encoded(one('failed')).eventType, 'REFUSAL');
    // Every event of a payment carries the same card; a redelivery keeps its event id.
    const fact = one('authorized');
    assert.deepEqual(encoded(fact), encoded(fact));
  });

  it('derives the idempotency key exactly as the simulator does', () => {
    for (const fact of gatewayFacts.slice(0, 50)) {
      const e = encoded(fact);
      const key = gatewayIdempotencyKey(gw(fact).gateway, e.txnRef, GATEWAY_FACT_TYPES[e.eventType], e.factSeq);
      assert.equal(key, fact.idempotencyKey);
    }
  });

  it("takes the region from the gateway's configuration", () => {
    const fact = one('captured');
    const r = gatewayEventToFact({ gateway: gw(fact).gateway, region: 'elsewhere' }, encoded(fact));
    assert.ok(r.ok && r.value.region === 'elsewhere');
  });

  it('names the failing input of an invalid event (the quarantine reason)', () => {
    const fact = one('captured');
    const event = encoded(fact);
    const g = gw(fact);
    assert.match(
      reason(g, { ...event, amount: { value: 19.99, currency: 'EUR' } }),
      /amount\.value: amount must be integer minor units/,
    );
    assert.match(reason(g, { ...event, amount: { value: 100, currency: 'euro' } }), /amount\.currency: ISO 4217/);
    assert.match(reason(g, { ...event, captureRef: undefined }), /captureRef/);
    assert.match(reason(g, { ...event, eventType: 'REFUND' }), /eventType/);
    assert.match(reason(g, { ...event, occurredAt: 'yesterday' }), /occurredAt/);
    assert.match(reason(g, { ...event, platformFee: event.amount.value + 1 }), /platformFeeMinor exceeds amountMinor/);
    assert.match(reason(g, null), /\(root\)/);
  });
});

describe('simulated gateway feed', () => {
  it("appends only its own region's gateway facts, and serves them in its own format", () => {
    const eu = gatewayFacts.filter((f) => f.region === 'eu-west');
    const feed = createGatewayFeed({ region: 'eu-west' });
    assert.equal(feed.publish(eu.slice(0, 5)), 5);
    assert.equal(feed.publish([eu[0]!]), 6, 'a redelivery is a new entry');
    const us = gatewayFacts.find((f) => f.region === 'us-east')!;
    assert.throws(() => feed.publish([us]), /region us-east, but this is gw-eu-west/);
    const created = simulatePayments({ payments: 1, seed: 1, duplicateRate: 0, runId: 'gwu' }).events[0]!;
    assert.throws(() => feed.publish([{ ...created, region: 'eu-west' }]), /created is not delivered by a gateway/);
  });
});

describe('gateway connector configuration and cursor files', () => {
  it('parses GATEWAY_FEEDS and names what is wrong', () => {
    assert.equal(parseGatewayFeeds(config.GATEWAY_FEEDS).length, 3);
    assert.throws(() => parseGatewayFeeds('[{"region":"eu-west","gateway":"gw-eu-west","url":"nope"}]'), /0\.url/);
    const twice = JSON.stringify([
      { region: 'eu-west', gateway: 'gw-eu-west', url: 'http://127.0.0.1:1' },
      { region: 'eu-west', gateway: 'gw-eu-west', url: 'http://127.0.0.1:2' },
    ]);
    assert.throws(() => parseGatewayFeeds(twice), /gw-eu-west is listed twice/);
  });

  it('reads 0 before the first write, the last written cursor after, and refuses a corrupt file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'paylink-gw-cursor-'));
    try {
      assert.equal(await readGatewayCursor(dir, 'gw-eu-west'), 0);
      const at = new Date().toISOString();
      await writeGatewayCursor(dir, { gateway: 'gw-eu-west', region: 'eu-west', after: 41, updatedAt: at });
      await writeGatewayCursor(dir, { gateway: 'gw-eu-west', region: 'eu-west', after: 42, updatedAt: at });
      assert.equal(await readGatewayCursor(dir, 'gw-eu-west'), 42);
      writeFileSync(cursorFile(dir, 'gw-us-east'), '{"gateway":"gw-us-east","after":');
      await assert.rejects(readGatewayCursor(dir, 'gw-us-east'), /gw-us-east\.cursor\.json is not JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

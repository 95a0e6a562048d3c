import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { StripeStyleEvent } from '../../src/contracts/partner-webhooks';
import { createTokenizer } from '../../src/ingest/tokenize';
import { checkSchemas, freezeSchema } from '../../src/ops/schema-compat';
import { TRUNCATED_PATH, observeMessage } from '../../src/quality/quality-consumer';
import { documentsOf, unknownFieldPaths } from '../../src/quality/schema-drift';
import {
  type JsonSchema,
  REGISTERED_SCHEMAS,
  createSchemaRegistry,
  loadFrozenSchemas,
} from '../../src/quality/schema-registry';
import { topicsFor } from '../../src/streams/kafka';

const TOPICS = topicsFor({ KAFKA_TOPIC_NAMESPACE: '' });

const registry = createSchemaRegistry();
const frozen = (ref: string): JsonSchema => {
  const found = registry.lookup(ref);
  assert.ok(found.ok, `${ref} is frozen`);
  return found.schema;
};
const paths = (doc: unknown, ref: string, maxPaths = 50) =>
  unknownFieldPaths(doc, frozen(ref), { resolve: registry.resolve, maxPaths });

const fact = { paymentId: 'pay-1', merchantId: 'm-1', currency: 'EUR', captureId: 'cap-1', amountMinor: 1999 };
const stripe = (object: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  id: 'evt_1',
  type: 'payment.captured',
  created: 1_700_000_000,
  data: { object },
  ...extra,
});

describe('drift: unknown field paths', () => {
  it('a document that matches its schema has none', () => {
    assert.deepEqual(paths(stripe(fact), 'stripe-style-event@1'), { paths: [], truncated: false });
  });

  it('names nested unknown fields, arrays as [], and everything below an unknown field', () => {
    const doc = stripe(
      {
        ...fact,
        items: [
          { sku: 'A-1', qty: 2 },
          { sku: 'B-2', tax: { rate: 20 } },
        ],
      },
      { livemode: true, request: { id: 'req_1' } },
    );
    assert.deepEqual(paths(doc, 'stripe-style-event@1').paths, [
      'data.object.items',
      'data.object.items[].sku',
      'data.object.items[].qty',
      'data.object.items[].tax',
      'data.object.items[].tax.rate',
      'livemode',
      'request',
      'request.id',
    ]);
  });

  it('compares stripe-style data.object with the payment fact: fact fields of any fact type are known', () => {
    const doc = stripe({
      ...fact,
      refundId: 'r-1',
      settlementId: 's-1',
      feeMinor: 3,
      reason: 'x',
      loyaltyTier: 'gold',
    });
    assert.deepEqual(paths(doc, 'stripe-style-event@1').paths, ['data.object.loyaltyTier']);
  });

  it('a fields-of map also knows its own declared properties, so a v2 can declare what partners add', () => {
    const v2 = structuredClone(frozen('stripe-style-event@1')) as {
      properties: { data: { properties: { object: JsonSchema } } };
    };
    v2.properties.data.properties.object.properties = { metadata: { type: 'object', additionalProperties: {} } };
    const doc = stripe({ ...fact, metadata: { orderRef: 'o-1' }, loyaltyTier: 'gold' });
    const found = unknownFieldPaths(doc, v2, { resolve: registry.resolve, maxPaths: 50 });
    assert.deepEqual(found.paths, ['data.object.loyaltyTier']);
    assert.deepEqual(paths(doc, 'stripe-style-event@1').paths, [
      'data.object.metadata',
      'data.object.metadata.orderRef',
      'data.object.loyaltyTier',
    ]);
  });

  it('keys of a declared open map (Adyen additionalData) are not drift; a new top-level field is', () => {
    const item = {
      pspReference: 'psp-1',
      merchantAccountCode: 'm-1',
      merchantReference: 'pay-1',
      amount: { value: 100, currency: 'EUR', exponent: 2 },
      eventCode: 'CAPTURE',
      eventDate: '2026-01-01T00:00:00Z',
      success: 'true',
      additionalData: { hmacSignature: 'x', 'fraud.score': '10', nested: { anything: 1 } },
      riskScore: 12,
    };
    assert.deepEqual(paths(item, 'adyen-notification-item@1').paths, ['amount.exponent', 'riskScore']);
  });

  it('ignores the BIN and last four the edge tokenizer adds next to a card token, not the card field itself', () => {
    const tokenizer = createTokenizer({ keys: { 1: Buffer.alloc(32, 7) }, activeVersion: 1 });
    const raw = { ...fact, card: '4242 4242 4242 4242', customer: { card: '4242 4242 4242 4242' } };
    const tokenized = tokenizer.tokenize(stripe(raw)).payload as { data: { object: Record<string, unknown> } };
    assert.ok('cardLast4' in tokenized.data.object && 'cardBin' in tokenized.data.object);
    assert.deepEqual(paths(tokenized, 'stripe-style-event@1').paths, [
      'data.object.card',
      'data.object.customer',
      'data.object.customer.card',
    ]);
  });

  it('caps the paths of one document and says so', () => {
    const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i]));
    assert.deepEqual(paths(stripe(fact, { many }), 'stripe-style-event@1', 5), {
      paths: ['many', 'many.k0', 'many.k1', 'many.k2', 'many.k3'],
      truncated: true,
    });
  });

  it('checks a CDC event by its row images, bare or wrapped by the JSON converter', () => {
    const row = {
      id: 'pay-1',
      merchant_id: 'm-1',
      region: 'eu-west',
      currency: 'EUR',
      amount_minor: 1999,
      status: 'created',
      customer_email: null,
      created_at: '2026-01-01T00:00:00Z',
      updated_at: '2026-01-01T00:00:00Z',
    };
    const event = { before: null, after: { ...row, risk_score: 3 }, source: { lsn: 1 }, op: 'c', ts_ms: 1 };
    assert.deepEqual(documentsOf('debezium-rows', { schema: { type: 'struct' }, payload: event }), [event.after]);
    assert.deepEqual(documentsOf('debezium-rows', row), [row]);
    const observed = observeMessage(
      registry,
      TOPICS,
      TOPICS.cdcPayments,
      { headers: { schema: 'debezium-oltp-payments@1' }, value: Buffer.from(JSON.stringify(event)) },
      50,
    );
    assert.deepEqual(observed, [
      {
        source: 'cdc',
        schemaName: 'debezium-oltp-payments',
        schemaVersion: 1,
        kind: 'unknown field',
        fieldPath: 'risk_score',
      },
    ]);
    const tombstone = { headers: { schema: 'debezium-oltp-payments@1' }, value: null };
    assert.deepEqual(observeMessage(registry, TOPICS, TOPICS.cdcPayments, tombstone, 50), []);
  });
});

describe('drift: messages the registry cannot check', () => {
  const value = Buffer.from(JSON.stringify(stripe(fact)));
  it('a missing or unknown schema header is an "unregistered schema" observation, not a crash', () => {
    const none = observeMessage(registry, TOPICS, TOPICS.rawWebhooks, { headers: {}, value }, 50);
    assert.deepEqual(
      none.map((o) => [o.source, o.schemaName, o.schemaVersion, o.kind]),
      [['webhook', '(none)', 0, 'unregistered schema']],
    );
    const unknown = observeMessage(
      registry,
      TOPICS,
      TOPICS.rawGateways,
      { headers: { schema: 'gateway-event@9', source: 'gateway' }, value },
      50,
    );
    assert.deepEqual(
      unknown.map((o) => [o.schemaName, o.schemaVersion, o.kind, o.detail]),
      [['gateway-event', 9, 'unregistered schema', 'gateway-event@9 is not frozen in schemas/']],
    );
  });

  it('a payload that is not JSON is a "malformed payload" observation', () => {
    const [o] = observeMessage(
      registry,
      TOPICS,
      TOPICS.rawWebhooks,
      { headers: { schema: 'stripe-style-event@1' }, value: Buffer.from('{not json') },
      50,
    );
    assert.equal(o?.kind, 'malformed payload');
    assert.match(o?.detail ?? '', /not JSON/);
  });

  it('a message with more unknown paths than the limit records the truncation', () => {
    const wide = Buffer.from(JSON.stringify(stripe(fact, { a: 1, b: 2, c: 3 })));
    const observed = observeMessage(
      registry,
      TOPICS,
      TOPICS.rawWebhooks,
      { headers: { schema: 'stripe-style-event@1' }, value: wide },
      2,
    );
    assert.deepEqual(
      observed.map((o) => o.fieldPath),
      ['a', 'b', TRUNCATED_PATH],
    );
  });
});

describe('schema registry: versions are frozen in the repository', () => {
  it('every registered contract equals its latest frozen file (else: freeze a new version)', () => {
    const contractProblems = (entries: typeof REGISTERED_SCHEMAS) =>
      checkSchemas(join(__dirname, '..', '..', 'schemas'), entries).problems;
    assert.deepEqual(contractProblems(REGISTERED_SCHEMAS), []);
    const changed = {
      name: 'stripe-style-event',
      version: 1,
      contract: StripeStyleEvent.extend({ livemode: z.boolean() }),
    };
    assert.deepEqual(
      contractProblems([changed]).map((p) => [p.schema, p.rule]),
      [['stripe-style-event', 'contract-not-frozen']],
    );
  });

  it('--write freezes a bumped version, never rewrites a frozen one, and the check then compares them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'paylink-schemas-'));
    try {
      const v1 = { name: 'stripe-style-event', version: 1, contract: StripeStyleEvent };
      await freezeSchema(dir, v1);
      const optional = { ...v1, contract: StripeStyleEvent.extend({ livemode: z.boolean().optional() }) };
      await assert.rejects(freezeSchema(dir, optional), /is frozen and the contract differs/);
      assert.match(await freezeSchema(dir, { ...optional, version: 2 }), /froze stripe-style-event@2/);
      assert.deepEqual(checkSchemas(dir, [{ ...optional, version: 2 }]).problems, []);
      const required = { ...v1, version: 3, contract: StripeStyleEvent.extend({ account: z.string() }) };
      await freezeSchema(dir, required);
      assert.deepEqual(
        checkSchemas(dir).problems.map((p) => [p.check, p.path, p.rule]),
        [['v2 → v3', 'account', 'required-field-added']],
      );
      assert.equal(loadFrozenSchemas(dir).get('stripe-style-event')?.size, 3);
      assert.match(
        readFileSync(join(dir, 'stripe-style-event', 'v2.json'), 'utf8'),
        /"livemode": \{ "type": "boolean" \}/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

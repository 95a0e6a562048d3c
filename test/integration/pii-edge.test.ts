import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Pool } from 'pg';
import { signStripe } from '../../src/ingest/signatures';
import { parsePartners } from '../../src/ingest/webhook-receiver';
import { createLogger } from '../../src/logger';
import { scanForPii } from '../../src/quality/pii-scanner';
import { createOltpPool, ensureOltpSchema } from '../../src/simulator/oltp';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { type Vault, openVault } from '../../src/stores/vault';
import { createKafka, createProducer } from '../../src/streams/kafka';
import { type TestEdge, startTestEdge, stripeEvent } from '../support/edge';
import { type ReadMessage, type TopicOffsets, readKeyed, topicEnds } from '../support/kafka';
import { config, requireServices, uniqueId, topics as TOPICS } from '../support/stack';

// Card numbers and phones in the shapes that once slipped through the edge — a JSON number beside a
// currency, a PAN glued inside an event id or a primary key, US/UK/IN national phone formats, a
// column added while the CDC reader runs — must reach Kafka only as tokens, on every part of the
// message (key, headers, value), and the same upstream id must give the same idempotency key.

const VISA = '4242424242424242';
const MASTERCARD = '5555555555554444';
const DISCOVER = '6011111111111117';
const AMEX = '378282246310005';
const RAW_VALUES = [VISA, MASTERCARD, DISCOVER, AMEX, '(415) 555-2671', '020 7946 0958', '98765 43210'];

const kafka = createKafka(config, 'pii-edge-test');
const acme = parsePartners(config.WEBHOOK_PARTNERS).find((p) => p.scheme === 'stripe')!;

/** Everything a consumer can read of a message, as one text for the scanner. */
const wholeMessage = (m: ReadMessage): string =>
  `${m.key} ${Object.entries(m.headers)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')} ${m.value}`;

function assertNoRawPii(messages: ReadMessage[], where: string): void {
  assert.ok(messages.length > 0, `${where}: no messages to check`);
  for (const m of messages) {
    const text = wholeMessage(m);
    assert.deepEqual(scanForPii(text), [], `${where}: PII in ${text}`);
    for (const raw of RAW_VALUES) assert.ok(!text.includes(raw), `${where}: ${raw} in ${text}`);
  }
}

async function endsOf(topics: string[]): Promise<Map<string, TopicOffsets>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return new Map(await Promise.all(topics.map(async (t) => [t, await topicEnds(admin, t)] as const)));
  } finally {
    await admin.disconnect();
  }
}

describe('hostile card numbers and phones through the webhook edge', () => {
  const producer = createProducer(kafka);
  let edge: TestEdge;
  let starts: Map<string, TopicOffsets>;

  before(async () => {
    await requireServices('kafka', 'postgres');
    starts = await endsOf([TOPICS.rawWebhooks, TOPICS.paymentEvents, TOPICS.quarantine]);
    await producer.connect();
    edge = await startTestEdge(createLogger('pii-edge-test'));
  });
  after(async () => {
    await edge.close();
    await producer.disconnect();
  });

  const post = async (event: object, created: number): Promise<number> => {
    const body = JSON.stringify(event);
    const res = await fetch(`${edge.base}/webhooks/${acme.id}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'Stripe-Signature': signStripe(body, acme.secrets[0]!, created) },
    });
    await res.text();
    return res.status;
  };

  const read = (topic: string, key: string, want: number): Promise<ReadMessage[]> =>
    readKeyed(
      kafka,
      topic,
      starts.get(topic)!,
      (k) => k === key,
      (kept) => kept.length >= want,
    );

  it('tokenizes a PAN in the event id, JSON-number PANs beside a currency and national phones; same id, same key', async () => {
    const paymentId = uniqueId('pii-wh');
    const now = Math.floor(Date.now() / 1000);
    const event = (created: number): object =>
      stripeEvent(
        paymentId,
        {
          customer: { note: 'call (415) 555-2671 or 020 7946 0958', mobile: '98765 43210' },
          metadata: { cardOnFile: Number(MASTERCARD), amount: Number(DISCOVER), currency: 'USD' },
        },
        { id: `evt_${VISA}_x`, created },
      );
    // The same upstream event delivered twice (a partner retry signs it anew).
    assert.equal(await post(event(now), now), 200);
    assert.equal(await post(event(now + 1), now + 1), 200);
    const raw = await read(TOPICS.rawWebhooks, paymentId, 2);
    const facts = await read(TOPICS.paymentEvents, paymentId, 2);
    assertNoRawPii([...raw, ...facts], 'webhook');
    const keys = new Set([...raw, ...facts].map((m) => m.headers['idempotency-key']));
    assert.equal(keys.size, 1, `one idempotency key for one upstream event: ${[...keys].join(', ')}`);
    assert.match([...keys][0]!, /^webhook:acme-pay:evt_tok_pan_\d+_[0-9a-f]{32}_x$/);
    const tokenizedId = [...keys][0]!.replace('webhook:acme-pay:', '').replace(/^evt_|_x$/g, '');
    assert.equal(await edge.vault.detokenize(tokenizedId, { actor: 'test', purpose: 'pii-edge' }), VISA);
  });

  it('a quarantined event keeps no raw card number in its key, fallback idempotency key or reason', async () => {
    const paymentId = `pay_${AMEX}`;
    const now = Math.floor(Date.now() / 1000);
    const invalid = { id: `evt_${VISA}_q`, type: 'payment.captured', created: now, data: { object: { paymentId } } };
    assert.equal(await post(invalid, now), 202);
    const quarantined = await readKeyed(
      kafka,
      TOPICS.quarantine,
      starts.get(TOPICS.quarantine)!,
      (k) => k.startsWith('pay_tok_pan_'),
      (kept) => kept.some((m) => m.headers['idempotency-key']?.endsWith('_q')),
    );
    const ours = quarantined.filter((m) => m.headers['idempotency-key']?.endsWith('_q'));
    assertNoRawPii(ours, 'quarantine');
    assert.match(ours[0]!.headers['idempotency-key']!, /^webhook:acme-pay:evt_tok_pan_\d+_[0-9a-f]{32}_q$/);
  });
});

describe('hostile card numbers and phones through CDC, including a column added while the reader runs', () => {
  const name = uniqueId('cdcpii').replace(/[^a-z0-9]/g, '_');
  const schema = `t_${name}`;
  const env = {
    CDC_SLOT: `s_${name}`,
    CDC_PUBLICATION: `p_${name}`,
    CDC_SCHEMA: schema,
    CDC_POLL_INTERVAL_MS: '100',
    CDC_NORMALIZER_GROUP: `g-${name}`,
  };
  let pool: Pool;
  let vault: Vault;
  let reader: PipelineProcess | undefined;
  let normalizer: PipelineProcess | undefined;
  let starts: Map<string, TopicOffsets>;

  before(async () => {
    await requireServices('kafka', 'postgres');
    pool = createOltpPool(config);
    vault = await openVault(config);
    await ensureOltpSchema(pool, schema);
    starts = await endsOf([TOPICS.cdcPayments, TOPICS.paymentEvents]);
    const admin = kafka.admin();
    await admin.connect();
    await admin.setOffsets({
      groupId: env.CDC_NORMALIZER_GROUP,
      topic: TOPICS.cdcPayments,
      partitions: starts.get(TOPICS.cdcPayments)!,
    });
    await admin.disconnect();
  });
  after(async () => {
    await reader?.stop();
    await normalizer?.stop();
    await pool.query('select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1', [
      env.CDC_SLOT,
    ]);
    await pool.query(`drop publication if exists ${env.CDC_PUBLICATION}`);
    await pool.query(`drop schema if exists ${schema} cascade`);
    await pool.query('delete from paylink_cdc.reader_state where slot_name = $1', [env.CDC_SLOT]);
    await vault.close();
    await pool.end();
  });

  it('tokenizes a PAN primary key, a bigint PAN beside a currency and phones in a new text column', async () => {
    const insert = (id: string): Promise<unknown> =>
      pool.query(
        `insert into ${schema}.payments (id, merchant_id, region, currency, amount_minor, status, customer_email, created_at, updated_at)
         values ($1, 'm-1', 'eu-west', 'EUR', 1999, 'created', 'jane@example.com', now(), now())`,
        [id],
      );
    const glued = `pay_${VISA}`;
    await insert(glued);
    reader = startPipelineProcess('pii-cdc-test', 'src/ingest/cdc/cdc-reader-main.ts', env);
    normalizer = startPipelineProcess('pii-cdc-normalizer-test', 'src/ingest/cdc/cdc-normalizer-main.ts', env);
    await Promise.all([reader.ready, normalizer.ready]);
    // Columns PayLink adds to a captured table while the reader runs: any type, any name.
    await pool.query(
      `alter table ${schema}.payments add column card_ref bigint, add column contact text, add column extra jsonb, add column amount_check numeric`,
    );
    const later = `pay_late_${name}`;
    await pool.query(
      `insert into ${schema}.payments (id, merchant_id, region, currency, amount_minor, status, created_at, updated_at, card_ref, contact, extra, amount_check)
       values ($1, 'm-1', 'us-east', 'USD', 500, 'created', now(), now(), $2, $3, $4, $5)`,
      [
        later,
        MASTERCARD,
        'call (415) 555-2671 or 98765 43210',
        JSON.stringify({ pan: Number(DISCOVER), currency: 'USD' }),
        AMEX,
      ],
    );
    const mine = (m: ReadMessage): boolean =>
      (JSON.parse(m.value) as { source?: { schema?: string } }).source?.schema === schema;
    const changes = await readKeyed(
      kafka,
      TOPICS.cdcPayments,
      starts.get(TOPICS.cdcPayments)!,
      () => true,
      (kept) => kept.filter(mine).length >= 2,
      60_000,
    );
    const ours = changes.filter(mine);
    assertNoRawPii(ours, 'cdc');
    const late = ours
      .map((m) => JSON.parse(m.value) as { after: Record<string, unknown> })
      .find((e) => e.after['amount_minor'] === 500)!;
    assert.match(String(late.after['card_ref']), /^tok_pan_/, 'a bigint column added after start is tokenized');
    assert.equal(
      await vault.detokenize(String(late.after['card_ref']), { actor: 'test', purpose: 'pii-cdc' }),
      MASTERCARD,
    );
    const first = ours.find((m) => m.value.includes('"amount_minor":1999'))!;
    assert.match(first.key, /pay_tok_pan_/, 'the primary key is tokenized in the message key');
    assert.match(first.headers['idempotency-key']!, /pay_tok_pan_/);
    const facts = await readKeyed(
      kafka,
      TOPICS.paymentEvents,
      starts.get(TOPICS.paymentEvents)!,
      (k) => k.startsWith('pay_tok_pan_') || k === later,
      (kept) => kept.length >= 2,
      60_000,
    );
    assertNoRawPii(facts, 'cdc facts');
  });
});

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { Pool } from 'pg';
import { signStripe } from '../../src/ingest/signatures';
import { parsePartners } from '../../src/ingest/webhook-receiver';
import { createLogger } from '../../src/logger';
import {
  type DriftReportRow,
  type QualityCounters,
  qualityBatches,
  readDriftReport,
} from '../../src/quality/quality-consumer';
import { createSchemaRegistry } from '../../src/quality/schema-registry';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { startConsumer } from '../../src/streams/consumer-runner';
import {
  type KafkaAdmin,
  type Producer,
  type TopicRecord,
  consumerGroupLag,
  createConsumer,
  createKafka,
  createProducer,
  ensureTopics,
} from '../../src/streams/kafka';
import { type TopicOffsets, readKeyed, topicEnds } from '../support/kafka';
import { type TestEdge, startTestEdge } from '../support/edge';
import { config, requireServices, uniqueId, topics as TOPICS } from '../support/stack';

// Field names carry this run's tag, so rows are this run's whatever else the table holds.
const run = uniqueId('drift');
const tag = run.replace(/-/g, '_');
const group = `paylink-quality-test-${run}`;
// The raw topics this run writes to (resetting a group costs a few seconds per topic).
const topics = [TOPICS.rawWebhooks, TOPICS.rawGateways, TOPICS.cdcPayments];
const log = createLogger('test-quality');
const partners = parsePartners(config.WEBHOOK_PARTNERS);
const acme = partners.find((p) => p.scheme === 'stripe')!;

const fact = (paymentId: string) => ({
  paymentId,
  merchantId: 'm-1',
  currency: 'EUR',
  captureId: 'c1',
  amountMinor: 1999,
});
const stripeEvent = (object: Record<string, unknown>) => ({
  id: uniqueId('evt'),
  type: 'payment.captured',
  created: Math.floor(Date.now() / 1000),
  data: { object },
});

function raw(value: unknown, headers: Record<string, string>, key: string | null = run): Omit<TopicRecord, 'topic'> {
  return { key, value: JSON.stringify(value), headers };
}

const T1 = '2026-03-01T10:00:00.000Z';
const T2 = '2026-03-01T10:05:00.000Z';
const T3 = '2026-03-01T11:00:00.000Z';

describe('schema drift (quality consumer on the raw topics)', () => {
  let pool: Pool;
  let admin: KafkaAdmin;
  let producer: Producer;
  let edge: TestEdge | undefined;
  let base: string;
  let startOffsets: Map<string, TopicOffsets>;
  let quarantineStart: TopicOffsets;
  const kafka = createKafka(config, 'schema-drift-test');

  before(async () => {
    await requireServices('kafka', 'postgres');
    await migrateAsOwner(config);
    pool = createPool(config, 4);
    admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, config);
    // The test's group starts at the current end of every raw topic: it counts only what this run sends.
    startOffsets = new Map();
    for (const topic of topics) {
      const partitions = await topicEnds(admin, topic);
      startOffsets.set(topic, partitions);
      await admin.setOffsets({ groupId: group, topic, partitions });
    }
    quarantineStart = await topicEnds(admin, TOPICS.quarantine);
    producer = createProducer(kafka);
    await producer.connect();
    edge = await startTestEdge(log);
    base = edge.base;
  });

  after(async () => {
    await edge?.close();
    await producer?.disconnect();
    await admin?.disconnect();
    await pool?.end();
  });

  /** Runs the quality consumer in-process until the group has committed everything sent so far. */
  async function consumeUntilCaughtUp(): Promise<QualityCounters> {
    // Others may be producing to the raw topics: wait for today's ends, not for zero lag.
    const targets = await Promise.all(topics.map(async (topic) => ({ topic, ends: await topicEnds(admin, topic) })));
    const behind = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const { topic, ends } of targets) {
        const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
        const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
        for (const e of ends) if ((at.get(e.partition) ?? -1n) < BigInt(e.offset)) out.push(`${topic}/${e.partition}`);
      }
      return out;
    };
    const quality = qualityBatches({
      pool,
      registry: createSchemaRegistry(),
      topics: TOPICS,
      group,
      log,
      maxUnknownPaths: config.QUALITY_MAX_UNKNOWN_PATHS,
    });
    let caughtUp = (): void => undefined;
    const stop = new Promise<void>((resolve) => (caughtUp = resolve));
    const running = await startConsumer({
      consumer: createConsumer(kafka, group),
      topics,
      handle: quality.handle,
      log,
      stop,
    });
    try {
      for (let i = 0; ; i++) {
        const late = await behind();
        if (late.length === 0) return quality.counters;
        if (i > 300) throw new Error(`quality consumer has not committed ${late.join(', ')} after 60 s`);
        await sleep(200);
      }
    } finally {
      caughtUp();
      await running.done;
    }
  }

  const rowsOf = async (): Promise<Map<string, DriftReportRow>> => {
    const all = await readDriftReport(pool, { limit: 100_000 });
    const mine = all.filter((r) => r.fieldPath.includes(tag) || r.schema.includes(run) || r.source.includes(run));
    return new Map(mine.map((r) => [`${r.source} ${r.schema} ${r.kind} ${r.fieldPath}`, r]));
  };

  const postStripe = async (event: unknown): Promise<Response> => {
    const body = JSON.stringify(event);
    const signature = signStripe(body, acme.secrets[0]!, Math.floor(Date.now() / 1000));
    return fetch(`${base}/webhooks/${acme.id}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'Stripe-Signature': signature },
    });
  };

  let firstRows: Map<string, DriftReportRow>;
  const quarantinedIds: string[] = [];

  it('records unknown paths, unregistered schemas and webhook drift, with counts and first/last seen', async () => {
    const webhook = (at: string, extra: Record<string, unknown>) =>
      raw(stripeEvent({ ...fact(run), ...extra }), {
        source: 'webhook',
        schema: 'stripe-style-event@1',
        'idempotency-key': uniqueId('idem'),
        'received-at': at,
      });
    const row = {
      id: run,
      merchant_id: 'm-1',
      region: 'eu-west',
      currency: 'EUR',
      amount_minor: 1999,
      status: 'created',
      customer_email: null,
      created_at: T1,
      updated_at: T1,
    };
    await producer.sendBatch({
      acks: -1,
      topicMessages: [
        {
          topic: TOPICS.rawWebhooks,
          messages: [
            webhook(T2, { [`promo_${tag}`]: 'spring' }),
            webhook(T1, { [`promo_${tag}`]: 'spring', [`items_${tag}`]: [{ sku: 'A-1' }, { sku: 'B-2' }] }),
            webhook(T3, { [`promo_${tag}`]: 'summer' }),
            // No schema header at all: counted as unregistered, under its source.
            raw(stripeEvent(fact(run)), { source: `src-${run}`, 'received-at': T1 }),
          ],
        },
        {
          topic: TOPICS.rawGateways,
          messages: [raw({ seq: 1 }, { source: 'gateway', schema: `mystery-${run}@1`, 'received-at': T2 })],
        },
        {
          topic: TOPICS.cdcPayments,
          messages: [
            raw(
              { before: null, after: { ...row, [`risk_${tag}`]: 3 }, source: { lsn: 1 }, op: 'c', ts_ms: 1 },
              { source: 'cdc', schema: 'debezium-oltp-payments@1', 'received-at': T3 },
            ),
          ],
        },
      ],
    });

    // Through the real edge: one accepted event with an unknown field, two authentic but invalid ones.
    const accepted = await postStripe(stripeEvent({ ...fact(uniqueId('wh')), [`loyalty_${tag}`]: 'gold' }));
    assert.equal(accepted.status, 200, await accepted.clone().text());
    for (const broken of [
      { ...fact(uniqueId('wh')), amountMinor: '19.99' },
      { ...fact(uniqueId('wh')), merchantId: undefined },
    ]) {
      quarantinedIds.push(broken.paymentId);
      const res = await postStripe(stripeEvent(broken));
      assert.equal(res.status, 202, await res.clone().text());
    }

    const counters = await consumeUntilCaughtUp();
    assert.ok(counters.counted >= 9, `counted ${counters.counted} messages`);
    firstRows = await rowsOf();
    const summary = [...firstRows.values()].map((r) => [r.source, r.schema, r.kind, r.fieldPath, r.count]).sort();
    assert.deepEqual(
      summary,
      [
        ['cdc', 'debezium-oltp-payments@1', 'unknown field', `risk_${tag}`, 1],
        ['gateway', `mystery-${run}@1`, 'unregistered schema', '', 1],
        [`src-${run}`, '(none)@0', 'unregistered schema', '', 1],
        ['webhook', 'stripe-style-event@1', 'unknown field', `data.object.items_${tag}`, 1],
        ['webhook', 'stripe-style-event@1', 'unknown field', `data.object.items_${tag}[].sku`, 1],
        ['webhook', 'stripe-style-event@1', 'unknown field', `data.object.loyalty_${tag}`, 1],
        ['webhook', 'stripe-style-event@1', 'unknown field', `data.object.promo_${tag}`, 3],
      ].sort(),
    );
    const promo = firstRows.get(`webhook stripe-style-event@1 unknown field data.object.promo_${tag}`)!;
    assert.equal(promo.firstSeen, T1);
    assert.equal(promo.lastSeen, T3);
    assert.equal(promo.example.topic, TOPICS.rawWebhooks);
    const loyalty = firstRows.get(`webhook stripe-style-event@1 unknown field data.object.loyalty_${tag}`)!;
    assert.ok(Date.parse(loyalty.firstSeen) > Date.parse(T3), 'first seen = when the edge received it');
  });

  it('does not count again when the same offsets are redelivered (group reset to before the run)', async () => {
    for (const [topic, partitions] of startOffsets) await admin.setOffsets({ groupId: group, topic, partitions });
    const lag = await Promise.all(topics.map((t) => consumerGroupLag(admin, group, t)));
    assert.ok(
      lag.reduce((a, b) => a + b, 0) >= 9,
      'the reset makes Kafka redeliver the run (else this test proves nothing)',
    );
    const counters = await consumeUntilCaughtUp();
    assert.ok(counters.alreadyCounted >= 9, `skipped ${counters.alreadyCounted} redelivered messages`);
    assert.deepEqual(await rowsOf(), firstRows);
  });

  it('an authentic webhook with a missing or mistyped required field is quarantined with the field named', async () => {
    const quarantined = await readKeyed(
      kafka,
      TOPICS.quarantine,
      quarantineStart,
      (key) => quarantinedIds.includes(key),
      (kept) => new Set(kept.map((m) => m.key)).size === quarantinedIds.length,
    );
    const reasons = new Map(quarantined.map((m) => [m.key, m.headers['quarantine-reason']]));
    assert.match(reasons.get(quarantinedIds[0]!)!, /^data\.object\.amountMinor: /);
    assert.match(reasons.get(quarantinedIds[1]!)!, /^data\.object\.merchantId: /);
  });
});

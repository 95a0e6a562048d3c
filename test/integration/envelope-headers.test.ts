import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode } from '@temporalio/worker';
import { createPartnerPollActivities } from '../../src/ingest/partner-api/poll-activities';
import { ENVELOPE_HEADERS, HEADERS, readFromOf, traceIdOf } from '../../src/contracts/envelope';
import { parsePaymentEvent } from '../../src/contracts/payment-event';
import { cdcNormalizerBatches, cdcTopicsOf } from '../../src/ingest/cdc/normalizer-consumer';
import { createCdcReader } from '../../src/ingest/cdc/reader';
import { signStripe } from '../../src/ingest/signatures';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { parsePartners } from '../../src/ingest/webhook-receiver';
import { createLogger } from '../../src/logger';
import { CURRENT_SCHEMAS, type RegisteredSchemaName } from '../../src/quality/schema-registry';
import { splitByChannel } from '../../src/simulator/channels';
import { createGatewayFeed, encodeGatewayEvent } from '../../src/simulator/gateway-feed';
import { createOltpPool, ensureOltpSchema, recordInOltp } from '../../src/simulator/oltp';
import { createPartnerApiSimulator, toPartnerSettlement } from '../../src/simulator/partner-api';
import { simulatePayments } from '../../src/simulator/payments';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { type Vault, openVault } from '../../src/stores/vault';
import { startConsumer } from '../../src/streams/consumer-runner';
import { createConsumer, createKafka, createProducer, ensureTopics, readTopics } from '../../src/streams/kafka';
import { routeFacts } from '../../src/streams/payment-router';
import { createPaymentWorker } from '../../src/workers/payment-worker';
import { paymentWorkflowId } from '../../src/workflows/payment';
import { type TestEdge, startTestEdge, stripeEvent, testGatewayConnector, testPublisher } from '../support/edge';
import { type ReadMessage, type TopicOffsets, topicEnds } from '../support/kafka';
import { waitFor } from '../support/pipeline';
import { config, requireServices, topics, uniqueId } from '../support/stack';

// One envelope: one message per path read back from Kafka — webhook, gateway, partner API and CDC, each
// with its raw message, its fact and a quarantined event — must carry the same header set, and the fact's
// trace id must reach the ledger row the payment workflow posts for it.

type Path = 'webhook' | 'gateway' | 'partner' | 'cdc';
type Kind = 'raw' | 'fact' | 'quarantine';

interface Seen extends ReadMessage {
  path: Path;
  kind: Kind;
  /** Where it was read. */
  at: { topic: string; partition: number; offset: string };
}

/** Headers a consumer adds: why it refused a message and where it read it (also on a fact the CDC normalizer derived). */
const QUARANTINE_ONLY = new Set<string>([
  HEADERS.quarantineReason,
  HEADERS.sourceTopic,
  HEADERS.sourcePartition,
  HEADERS.sourceOffset,
]);
/** Every event here names its region, so every message must carry it. */
const EXPECTED = [...ENVELOPE_HEADERS, HEADERS.region].sort();

describe('one envelope on every path (webhook, gateway, partner API, CDC)', { timeout: 240_000 }, () => {
  const runId = uniqueId('env');
  const name = runId.replace(/[^a-z0-9]/g, '_');
  const log = createLogger('envelope-test');
  const kafka = createKafka(config, 'envelope-test');
  const producer = createProducer(kafka);
  const publisher = testPublisher('envelope-test', log);
  const admin = kafka.admin();
  const tokenizer = tokenizerFromConfig(config);
  const pool = createPool(config, 4);
  const oltp = createOltpPool(config);
  const sim = simulatePayments({ payments: 12, seed: 909, duplicateRate: 0, runId, happyPathOnly: true });
  const channels = splitByChannel(sim.deliveries);
  // One payment per path, so a path's fact is never mistaken for another's on the shared facts topic.
  const gatewayFact = channels.gateway[0]!;
  const settled = channels['partner-api'].find((e) => e.paymentId !== gatewayFact.paymentId)!;
  const created = channels.cdc.find(
    (e) => e.type === 'created' && e.paymentId !== gatewayFact.paymentId && e.paymentId !== settled.paymentId,
  )!;
  const cdc = { schema: `e_${name}`, slot: `s_${name}`, publication: `p_${name}`, group: `envelope-cdc-${runId}` };
  const stateDir = mkdtempSync(join(tmpdir(), 'paylink-envelope-gw-'));
  const seen: Seen[] = [];
  let starts: Map<string, TopicOffsets>;
  let vault: Vault;
  let edge: TestEdge | undefined;

  /**
   * A path's raw message and fact (of payment `id`) and its quarantined event (keyed `quarantinedId`), read
   * back from where the topics ended when the test started. CDC keys are {"id": …}.
   */
  const readPath = async (path: Path, rawTopic: string, id: string, quarantinedId: string): Promise<void> => {
    const wanted: Record<Kind, { topic: string; id: string }> = {
      raw: { topic: rawTopic, id },
      fact: { topic: topics.paymentEvents, id },
      quarantine: { topic: topics.quarantine, id: quarantinedId },
    };
    const kinds = Object.keys(wanted) as Kind[];
    const found = new Map<Kind, Seen>();
    const done = await readTopics(
      kafka,
      new Map(kinds.map((k) => [wanted[k].topic, starts.get(wanted[k].topic)!])),
      (topic, partition, m) => {
        const key = m.key?.toString() ?? '';
        for (const kind of kinds) {
          const w = wanted[kind];
          if (w.topic !== topic || found.has(kind) || (key !== w.id && key !== JSON.stringify({ id: w.id }))) continue;
          found.set(kind, {
            path,
            kind,
            key,
            value: String(m.value),
            headers: m.headers,
            at: { topic, partition, offset: m.offset },
          });
        }
        return found.size === kinds.length;
      },
      60_000,
    );
    assert.ok(done, `${path}: read only ${[...found.keys()].join(', ') || 'nothing'} of ${kinds.join(', ')}`);
    seen.push(...found.values());
  };

  before(async () => {
    await requireServices('kafka', 'postgres', 'temporal');
    await migrateAsOwner(config);
    await Promise.all([admin.connect(), producer.connect()]);
    await ensureTopics(admin, config);
    const all = [
      topics.rawWebhooks,
      topics.rawGateways,
      topics.rawPartnerApi,
      topics.cdcPayments,
      topics.paymentEvents,
      topics.quarantine,
    ];
    starts = new Map(await Promise.all(all.map(async (t) => [t, await topicEnds(admin, t)] as const)));
    vault = await openVault(config);
  });

  after(async () => {
    await edge?.close();
    await oltp.query('select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1', [
      cdc.slot,
    ]);
    await oltp.query(`drop publication if exists ${cdc.publication}`);
    await oltp.query(`drop schema if exists ${cdc.schema} cascade`);
    await oltp.query('delete from paylink_cdc.reader_state where slot_name = $1', [cdc.slot]);
    await admin.deleteGroups([cdc.group]).catch(() => undefined);
    await Promise.allSettled([
      producer.disconnect(),
      publisher.close(),
      admin.disconnect(),
      vault?.close(),
      pool.end(),
      oltp.end(),
    ]);
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('webhook: raw, fact and quarantine', async () => {
    edge = await startTestEdge(log);
    const acme = parsePartners(config.WEBHOOK_PARTNERS).find((p) => p.scheme === 'stripe')!;
    const post = async (event: unknown): Promise<number> => {
      const body = JSON.stringify(event);
      const signature = signStripe(body, acme.secrets[0]!, Math.floor(Date.now() / 1000));
      const res = await fetch(`${edge!.base}/webhooks/${acme.id}`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', 'Stripe-Signature': signature },
      });
      return res.status;
    };
    assert.equal(await post(stripeEvent(`${runId}-wh-ok`)), 200);
    assert.equal(await post(stripeEvent(`${runId}-wh-bad`, { amountMinor: '19.99' })), 202);
    await readPath('webhook', topics.rawWebhooks, `${runId}-wh-ok`, `${runId}-wh-bad`);
  });

  it('gateway: raw, fact and quarantine', async () => {
    const fact = gatewayFact;
    const feed = createGatewayFeed({ region: fact.region });
    await feed.start();
    feed.publish([fact]);
    const broken = encodeGatewayEvent(fact, feed.gateway);
    feed.appendRaw({ ...broken, eventId: `${broken.eventId}-broken`, paymentReference: `${runId}-gw-bad`, amount: {} });
    const connector = testGatewayConnector({
      feeds: [{ region: feed.region, gateway: feed.gateway, url: `http://127.0.0.1:${feed.port}` }],
      publisher,
      vault,
      log,
      stateDir,
    });
    connector.start();
    try {
      await waitFor('the gateway page to be produced', Date.now() + 30_000, async () => {
        const [st] = connector.status();
        return (st!.facts >= 1 && st!.quarantined >= 1) || `${st!.state}: ${st!.lastError ?? 'no page yet'}`;
      });
    } finally {
      await connector.stop();
      await feed.stop();
    }
    await readPath('gateway', topics.rawGateways, fact.paymentId, `${runId}-gw-bad`);
  });

  it('partner API: raw, fact and quarantine', async () => {
    assert.equal(settled.type, 'settled');
    const token = `ptk_${name}`;
    const api = createPartnerApiSimulator({ tokens: [token] });
    const url = await api.listen(0);
    try {
      api.publish([settled]);
      const record = settled.type === 'settled' ? toPartnerSettlement(settled) : {};
      api.publishRecords([{ ...record, id: `${name}_broken`, payment_reference: `${runId}-pa-bad`, gross: {} }]);
      const partnerId = `env-${name.slice(-12).replace(/_/g, '-')}`;
      const activities = createPartnerPollActivities({
        partners: [{ id: partnerId, url, token, region: settled.region }],
        publisher,
        topics,
        tokenizer,
        vault,
        log,
      });
      const page = await activities.pollPartnerPage({ partnerId, cursor: '', limit: 50 });
      assert.deepEqual([page.received, page.quarantined], [2, 1]);
    } finally {
      await api.close();
    }
    await readPath('partner', topics.rawPartnerApi, settled.paymentId, `${runId}-pa-bad`);
  });

  it('CDC: raw change, the normalizer fact and quarantine', async () => {
    await ensureOltpSchema(oltp, cdc.schema); // PayLink's tables (its API's; the reader only captures them)
    const reader = createCdcReader({
      pool: oltp,
      publisher,
      topics,
      tokenizer,
      vault,
      log,
      slot: cdc.slot,
      publication: cdc.publication,
      schema: cdc.schema,
      serverName: config.CDC_SERVER_NAME,
      batchSize: 500,
    });
    await reader.start();
    await recordInOltp(oltp, [created], cdc.schema);
    // A row PayLink's API should never have written: no merchant, so no created fact.
    await oltp.query(
      `insert into ${cdc.schema}.payments (id, merchant_id, region, currency, amount_minor, status, created_at, updated_at)
       values ($1, '', $2, 'EUR', 100, 'created', now(), now())`,
      [`${runId}-cdc-bad`, created.region],
    );
    let produced = 0;
    for (let i = 0; i < 100 && produced < 2; i++) {
      const { records } = await reader.poll();
      produced += records;
      if (records === 0) await sleep(100);
    }
    assert.ok(produced >= 2, `the reader produced ${produced} changes`);

    for (const topic of cdcTopicsOf(topics)) {
      await admin.setOffsets({
        groupId: cdc.group,
        topic,
        partitions: starts.get(topic) ?? (await topicEnds(admin, topic)),
      });
    }
    let stop = (): void => undefined;
    const normalizer = await startConsumer({
      consumer: createConsumer(kafka, cdc.group),
      topics: cdcTopicsOf(topics),
      handle: cdcNormalizerBatches({ producer, topics, log }),
      log,
      stop: new Promise<void>((resolve) => (stop = resolve)),
    });
    try {
      await readPath('cdc', topics.cdcPayments, created.paymentId, `${runId}-cdc-bad`);
    } finally {
      stop();
      await normalizer.done;
    }
  });

  it('every message of every path carries the same header set', () => {
    assert.equal(seen.length, 12, `read ${seen.map((m) => `${m.path}/${m.kind}`).join(', ')}`);
    const differing = seen
      .map((m) => ({ at: `${m.path} ${m.kind}`, names: Object.keys(m.headers).filter((h) => !QUARANTINE_ONLY.has(h)) }))
      .filter((m) => JSON.stringify(m.names.sort()) !== JSON.stringify(EXPECTED))
      .map((m) => `${m.at}: ${m.names.join(', ')}`);
    assert.deepEqual(differing, [], `expected ${EXPECTED.join(', ')} on every message`);
    for (const m of seen.filter((s) => s.kind === 'quarantine')) {
      assert.ok(m.headers[HEADERS.quarantineReason], `${m.path} quarantine has no reason`);
    }
  });

  it('a fact the CDC normalizer derived names its change event: source-topic/partition/offset', () => {
    const raw = seen.find((m) => m.path === 'cdc' && m.kind === 'raw')!;
    const fact = seen.find((m) => m.path === 'cdc' && m.kind === 'fact')!;
    assert.deepEqual(readFromOf(fact.headers), raw.at);
    // Edge facts are written with their raw message, whose offset they cannot know.
    for (const m of seen.filter((x) => x.path !== 'cdc' && x.kind === 'fact')) {
      assert.equal(readFromOf(m.headers), undefined, `${m.path} fact`);
    }
  });

  it("raw, fact and quarantine agree on the event's identity; schema headers come from the registry", () => {
    const schemas: Record<Path, RegisteredSchemaName> = {
      webhook: 'stripe-style-event',
      gateway: 'gateway-event',
      partner: 'partner-settlement',
      cdc: 'debezium-oltp-payments',
    };
    const header = (ref: { name: string; version: number }): string => `${ref.name}@${ref.version}`;
    for (const path of Object.keys(schemas) as Path[]) {
      const [raw, fact, quarantine] = (['raw', 'fact', 'quarantine'] as const).map((kind) =>
        seen.find((m) => m.path === path && m.kind === kind)!,
      );
      const rawSchema = header(CURRENT_SCHEMAS[schemas[path]]);
      assert.equal(raw!.headers.schema, rawSchema, `${path} raw`);
      assert.equal(quarantine!.headers.schema, rawSchema, `${path} quarantine keeps the raw event's schema`);
      assert.equal(fact!.headers.schema, header(CURRENT_SCHEMAS['payment-fact']), `${path} fact`);
      for (const m of [raw!, fact!, quarantine!]) {
        assert.equal(m.headers.source, path, `${path} ${m.kind} source`);
        assert.equal(m.headers[HEADERS.traceId], traceIdOf(m.headers[HEADERS.idempotencyKey]!), `${path} ${m.kind}`);
      }
      for (const h of [HEADERS.idempotencyKey, HEADERS.traceId, HEADERS.region])
        assert.equal(fact!.headers[h], raw!.headers[h], `${path}: fact and raw differ in ${h}`);
      assert.equal(fact!.headers[HEADERS.receivedAt], raw!.headers[HEADERS.receivedAt], `${path} received-at`);
      const parsed = parsePaymentEvent(fact!.value);
      assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
      assert.equal(
        parsed.value.traceId,
        fact!.headers[HEADERS.traceId],
        `${path}: the fact value carries the trace id`,
      );
    }
  });

  it("the fact's trace id reaches the ledger row its payment workflow posts", async () => {
    const fact = seen.find((m) => m.path === 'webhook' && m.kind === 'fact')!;
    const parsed = parsePaymentEvent(fact.value);
    assert.ok(parsed.ok);
    const taskQueue = uniqueId('envelope-payments');
    const env = await TestWorkflowEnvironment.createFromExistingServer({
      address: config.TEMPORAL_ADDRESS,
      namespace: config.TEMPORAL_NAMESPACE,
    });
    const worker = await createPaymentWorker({
      connection: env.nativeConnection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      taskQueue,
      workflowBundle: await bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows') }),
    });
    const running = worker.run();
    try {
      await routeFacts(env.client, pool, [parsed.value], {
        preconditionTimeoutMs: 60_000,
        lifecycleSearchAttribute: false,
        taskQueue,
      });
      let row: { trace_id: string | null; idempotency_key: string } | undefined;
      await waitFor('the captured fact to be posted', Date.now() + 60_000, async () => {
        const r = await pool.query<{ trace_id: string | null; idempotency_key: string }>(
          'select trace_id, idempotency_key from ledger.journal_entries where payment_id = $1',
          [parsed.value.paymentId],
        );
        row = r.rows[0];
        return row !== undefined || 'no journal entry yet';
      });
      assert.equal(row!.idempotency_key, fact.headers[HEADERS.idempotencyKey]);
      assert.equal(row!.trace_id, fact.headers[HEADERS.traceId]);
    } finally {
      // Captured, never settled: the workflow would wait for its settlement.
      await env.client.workflow
        .getHandle(paymentWorkflowId(parsed.value.paymentId))
        .terminate('envelope test done')
        .catch(() => undefined);
      worker.shutdown();
      await running;
      await env.teardown();
    }
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import type { Pool } from 'pg';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import {
  type BackfillRequest,
  backfillStatus,
  cancelBackfill,
  pauseBackfill,
  parseBackfillRequest,
  startBackfill,
  waitForBackfill,
} from '../../src/starters/replay';
import { summarizeLedger } from '../../src/stores/ledger';
import { createPool } from '../../src/stores/postgres';
import {
  REPLAY_SOURCES,
  backfillStatusQuery,
  backfillWorkflow,
  backfillWorkflowId,
} from '../../src/workflows/backfill';
import { type EdgeMessage, edgeEnvelope, traceIdOf } from '../../src/contracts/envelope';
import { gatewayEventToFact } from '../../src/contracts/gateway-event';
import { partnerSettlementToFact } from '../../src/contracts/partner-api';
import { webhookItemToFact } from '../../src/contracts/partner-webhooks';
import type { FactOf, PaymentEvent } from '../../src/contracts/payment-event';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { compareLedger } from '../../src/ledger/checks';
import { CURRENT_SCHEMAS, type RegisteredSchemaName } from '../../src/quality/schema-registry';
import { channelOf } from '../../src/simulator/channels';
import { encodeGatewayEvent } from '../../src/simulator/gateway-feed';
import { toPartnerSettlement } from '../../src/simulator/partner-api';
import { simulatePayments } from '../../src/simulator/payments';
import { expectedLedger } from '../../src/starters/expected-ledger';
import { createS3Client } from '../../src/stores/s3';
import { archivedTopicsOf, checkArchive } from '../../src/streams/archiver/completeness';
import {
  type TopicSet,
  createKafka,
  createProducer,
  edgeTopicsOf,
  ensureTopics,
  produce,
  topicsFor,
} from '../../src/streams/kafka';
import { runDemo } from '../support/demo';
import { testKafka } from '../support/kafka';
import { waitFor } from '../support/pipeline';
import { config, requireServices, uniqueId } from '../support/stack';

// Replay and backfill from the raw archive with real services: a small demo run (all four paths, the
// archiver) backfills its own window and posts nothing new; a dry run counts the same records; the
// starter's pause, resume and cancel drive a rate-capped backfill while the ledger stays as it was; and
// a window Kafka lost before the router read it is restored from the archive to the simulator's truth.

/**
 * Raw and fact messages as the edges write them (their envelope, tokenizer and mapping) for the gateway,
 * webhook (Stripe-style) and partner API deliveries; `created` (CDC) posts nothing and is left out.
 */
function edgeMessagesOf(topics: TopicSet, deliveries: readonly PaymentEvent[]): EdgeMessage[] {
  const tokenizer = tokenizerFromConfig(config);
  const receivedAt = new Date().toISOString();
  const envelopeOf = (
    source: 'gateway' | 'webhook' | 'partner',
    raw: 'rawGateways' | 'rawWebhooks' | 'rawPartnerApi',
    schema: RegisteredSchemaName,
  ) =>
    edgeEnvelope(source, edgeTopicsOf(topics, raw), {
      raw: CURRENT_SCHEMAS[schema],
      fact: CURRENT_SCHEMAS['payment-fact'],
    });
  const gateway = envelopeOf('gateway', 'rawGateways', 'gateway-event');
  const webhook = envelopeOf('webhook', 'rawWebhooks', 'stripe-style-event');
  const partner = envelopeOf('partner', 'rawPartnerApi', 'partner-settlement');
  const out: EdgeMessage[] = [];
  deliveries.forEach((fact, i) => {
    const unmapped = { key: fact.paymentId, idempotencyKey: fact.idempotencyKey };
    switch (channelOf(fact)) {
      case 'gateway': {
        const gw = { gateway: `gw-${fact.region}`, region: fact.region };
        const event = tokenizer.tokenize({ seq: i + 1, ...encodeGatewayEvent(fact, gw.gateway) }).payload;
        out.push(...gateway(receivedAt, event, gatewayEventToFact(gw, event), unmapped));
        break;
      }
      case 'webhook': {
        const { version: _v, type, idempotencyKey, occurredAt, source: _s, sourceSequence: _q, ...object } = fact;
        const item = tokenizer.tokenize({
          id: `evt_${traceIdOf(idempotencyKey)}`,
          type: `payment.${type}`,
          created: Math.floor(Date.parse(occurredAt) / 1000),
          data: { object },
        }).payload;
        const hooks = { id: 'replay-hooks', region: fact.region, scheme: 'stripe' as const };
        out.push(...webhook(receivedAt, item, webhookItemToFact(hooks, item, receivedAt), unmapped));
        break;
      }
      case 'partner-api': {
        const record = tokenizer.tokenize(toPartnerSettlement(fact as FactOf<'settled'>)).payload;
        out.push(...partner(receivedAt, record, partnerSettlementToFact('acme-pay', fact.region, record), unmapped));
        break;
      }
      case 'cdc':
        break;
    }
  });
  return out;
}

interface DemoSummary {
  runId: string;
  uniqueEvents: number;
  quarantined: number;
  replay: {
    id: string;
    from: string;
    to: string;
    records: number;
    facts: number;
    newFacts: number;
    quarantined: number;
    newPostings: number;
    recordsPerSecond: number;
  };
  ledger: { entries: number; unbalanced: number; duplicatePostings: number; matchesSimulator: boolean };
}

describe('replay and backfill from the raw archive', { timeout: 900_000 }, () => {
  let demo: DemoSummary;
  let worker: PipelineProcess | undefined;
  let connection: Connection | undefined;
  let client: Client;
  let pool: Pool;

  before(async () => {
    await requireServices('postgres', 'kafka', 'temporal', 's3', 'snowflake');
    pool = createPool(config);
  });
  after(async () => {
    await worker?.stop();
    await connection?.close();
    await pool.end();
  });

  it('`npm run demo -- --replay`: the run window backfilled again adds no journal entry', () => {
    demo = runDemo<DemoSummary>(['--payments', '10', '--seed', '11', '--invalid', '1', '--replay'], 420_000);
    const r = demo.replay;
    assert.equal(r.facts, demo.uniqueEvents, 'every fact of the run is in the archive and maps again');
    assert.equal(r.newFacts, 0, 'the inbox had every replayed fact already');
    assert.equal(r.newPostings, 0);
    assert.equal(r.quarantined, demo.quarantined, 'the live edge quarantined the same records');
    assert.ok(r.recordsPerSecond > 0);
    assert.equal(demo.ledger.duplicatePostings, 0);
    assert.equal(demo.ledger.matchesSimulator, true);
  });

  describe('the starter against a payment worker', () => {
    const request = (over: Partial<BackfillRequest>): BackfillRequest => ({
      from: demo.replay.from,
      to: demo.replay.to,
      sources: [...REPLAY_SOURCES],
      dryRun: false,
      ratePerSecond: 0,
      id: uniqueId('replay-test'),
      ...over,
    });
    const ledgerOfRun = async () => {
      const l = await summarizeLedger(pool, `${demo.runId}-`);
      return { entries: l.entries, totals: l.totals };
    };

    before(async () => {
      assert.ok(demo, 'the demo test above ran');
      worker = startPipelineProcess('payment-worker-replay-test', 'src/workers/payment-worker-main.ts');
      await worker.ready;
      connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
      client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    });

    it('a dry run counts the same records and facts and writes nothing, across continue-as-new', async () => {
      const before = await ledgerOfRun();
      const r = request({ dryRun: true });
      // A new run every 3 activities (5 topics: at least 5 listing pages): counts and position survive continue-as-new.
      await startBackfill(client, config, r, { pageSize: 25, slicesBeforeContinue: 3 });
      const state = await waitForBackfill(client, r.id);
      assert.ok(state.runs > 1, `continued as new ${state.runs - 1} times`);
      assert.equal(state.records, demo.replay.records);
      assert.equal(state.facts, demo.replay.facts);
      assert.equal(state.newFacts, 0);
      assert.equal(state.quarantined, demo.replay.quarantined);
      assert.deepEqual(await ledgerOfRun(), before);
    });

    it('pause stops a rate-capped backfill, resume finishes it, balances unchanged', async () => {
      const before = await ledgerOfRun();
      const r = request({ ratePerSecond: 20 });
      await startBackfill(client, config, r, { sliceMs: 1000, pageSize: 5 });
      const handle = client.workflow.getHandle<typeof backfillWorkflow>(backfillWorkflowId(r.id));
      const deadline = Date.now() + 60_000;
      await waitFor('the backfill to replay some records', deadline, async () => {
        const s = await handle.query(backfillStatusQuery);
        return s.records > 0 || `${s.phase}, ${s.records} records`;
      });
      await pauseBackfill(client, r.id, true);
      // Paused and idle: no replay activity pending, so nothing can move.
      await waitFor('the backfill to stand still', deadline, async () => {
        const s = await handle.query(backfillStatusQuery);
        const pending = (await handle.describe()).raw.pendingActivities?.length ?? 0;
        return (s.paused && pending === 0) || `paused ${s.paused}, ${pending} activities pending`;
      });
      const paused = await backfillStatus(client, r.id);
      assert.equal(paused.status, 'RUNNING');
      assert.ok(paused.state!.records < demo.replay.records, `paused at ${paused.state!.records} records`);
      // Findable in the Web UI by its search attribute.
      await waitFor('visibility to list it as PAUSED', deadline, async () => {
        const n = await client.workflow.count(
          `BackfillStatus = "PAUSED" AND WorkflowId = "${backfillWorkflowId(r.id)}"`,
        );
        return n.count === 1 || 'not yet';
      });
      await pauseBackfill(client, r.id, false);
      const state = await waitForBackfill(client, r.id);
      assert.equal(state.records, demo.replay.records);
      assert.equal(state.newFacts, 0);
      assert.ok(state.recordsPerSecond <= 25, `rate cap 20/s, measured ${state.recordsPerSecond}`);
      assert.deepEqual(await ledgerOfRun(), before, 'zero new journal entries, identical balances');
    });

    it('cancel stops a backfill through Temporal cancellation', async () => {
      const r = request({ ratePerSecond: 5 });
      await startBackfill(client, config, r, { sliceMs: 1000, pageSize: 5 });
      const handle = client.workflow.getHandle<typeof backfillWorkflow>(backfillWorkflowId(r.id));
      await waitFor('the backfill to replay some records', Date.now() + 60_000, async () => {
        const s = await handle.query(backfillStatusQuery);
        return s.records > 0 || `${s.phase}, ${s.records} records`;
      });
      await cancelBackfill(client, r.id);
      await assert.rejects(handle.result(), (err) => err instanceof WorkflowFailedError);
      assert.equal((await backfillStatus(client, r.id)).status, 'CANCELLED');
    });

    it('backfill after loss: a window Kafka deleted before the router read it is restored from the archive', async () => {
      // Its own topics and bucket; no router ever reads them ("router stopped"). The edges' own envelope and
      // mapping write raw + fact messages, the archiver archives them, then the log start moves past them.
      const runId = uniqueId('loss').replace(/[^A-Za-z0-9-]/g, '-');
      const namespace = runId.toLowerCase().slice(0, 40);
      const scope = { KAFKA_TOPIC_NAMESPACE: namespace, S3_BUCKET: `${namespace}-archive`.slice(0, 63) };
      const lossTopics = topicsFor(scope);
      const admin = createKafka(config, 'replay-loss-test').admin();
      await admin.connect();
      await ensureTopics(admin, { ...config, ...scope, KAFKA_TOPIC_PARTITIONS: 2 });
      await admin.disconnect();
      const from = new Date().toISOString();
      const sim = simulatePayments({ payments: 6, seed: 21, duplicateRate: 0, runId });
      const producer = createProducer(createKafka(config, 'replay-loss-test'));
      await producer.connect();
      await produce(producer, edgeMessagesOf(lossTopics, sim.deliveries));
      await producer.disconnect();
      const group = uniqueId('archiver-loss');
      const archiver = startPipelineProcess(`archiver-${namespace}`, 'src/streams/archiver/archiver-main.ts', {
        ...scope,
        KAFKA_TOPIC_PARTITIONS: '2',
        ARCHIVE_OBJECT_MAX_AGE_MS: '1000',
        ARCHIVER_GROUP: group,
      });
      const s3 = createS3Client(config);
      const kafkaAdmin = testKafka('replay-loss-test').admin();
      try {
        await archiver.ready;
        const check = () =>
          checkArchive({
            s3,
            bucket: scope.S3_BUCKET,
            kafka: createKafka(config, 'replay-loss-check'),
            group,
            topics: archivedTopicsOf(lossTopics),
          });
        await waitFor('the archive to reach the end of every partition', Date.now() + 60_000, async () => {
          const behind = (await check()).filter((p) => p.high !== '0' && p.archivedTo !== p.high);
          return behind.length === 0 || behind.map((p) => `${p.topic}[${p.partition}]`).join(', ');
        });
        await archiver.stop();
        // What retention does, at once: the log start passes every record (DeleteRecords; see docs/archive.md).
        await kafkaAdmin.connect();
        for (const topic of [
          lossTopics.rawGateways,
          lossTopics.rawWebhooks,
          lossTopics.rawPartnerApi,
          lossTopics.paymentEvents,
        ]) {
          const ends = await kafkaAdmin.fetchTopicOffsets(topic);
          await kafkaAdmin.deleteTopicRecords({
            topic,
            partitions: ends.map((e) => ({ partition: e.partition, offset: e.high })),
          });
        }
        const gone = await kafkaAdmin.fetchTopicOffsets(lossTopics.paymentEvents);
        assert.ok(
          gone.every((p) => p.low === p.high),
          'Kafka holds none of the facts any more',
        );

        const r = request({ from, to: new Date().toISOString(), sources: ['webhooks', 'gateways', 'partner'] });
        await startBackfill(client, scope, r);
        const state = await waitForBackfill(client, r.id);
        const moneyMoving = sim.deliveries.filter((f) => f.type !== 'created').length;
        assert.equal(state.facts, moneyMoving);
        assert.equal(state.newFacts, moneyMoving, 'every fact was new to the inbox');
        assert.equal(state.quarantined, 0);
        const prefix = `${runId}-`;
        await waitFor('the restored facts to be posted', Date.now() + 90_000, async () => {
          const l = await summarizeLedger(pool, prefix);
          return l.entries >= sim.truth.moneyMovingFacts || `${l.entries}/${sim.truth.moneyMovingFacts} entries`;
        });
        const ledger = await summarizeLedger(pool, prefix);
        assert.equal(ledger.duplicatePostings, 0);
        assert.equal(ledger.unbalanced, 0);
        assert.deepEqual(compareLedger(ledger, expectedLedger(sim.truth)).mismatches, []);

        // Again: the inbox has every fact now; nothing is routed, nothing posts twice.
        const again = request({ from, to: r.to, sources: ['webhooks', 'gateways', 'partner'] });
        await startBackfill(client, scope, again);
        assert.equal((await waitForBackfill(client, again.id)).newFacts, 0);
        const after = await summarizeLedger(pool, prefix);
        assert.deepEqual(
          { entries: after.entries, totals: after.totals },
          { entries: ledger.entries, totals: ledger.totals },
        );
      } finally {
        await archiver.stop();
        // Its topics go (later PII scans read every paylink.* topic); the bucket's objects are locked by design.
        await kafkaAdmin.connect();
        await kafkaAdmin.deleteTopics({ topics: Object.values(lossTopics) });
        await kafkaAdmin.disconnect();
        s3.destroy();
      }
    });

    it('names the bad argument', () => {
      assert.throws(() => parseBackfillRequest({ from: 'yesterday', to: demo.replay.to }), /--from "yesterday"/);
      assert.throws(
        () => parseBackfillRequest({ from: demo.replay.from, to: demo.replay.to, source: 'webhooks,fax' }),
        /--source "webhooks,fax"/,
      );
      assert.throws(
        () => parseBackfillRequest({ from: demo.replay.from, to: demo.replay.to, rate: '-3' }),
        /--rate "-3"/,
      );
      assert.throws(() => parseBackfillRequest({ from: demo.replay.to, to: demo.replay.from }), /must be before --to/);
    });
  });
});

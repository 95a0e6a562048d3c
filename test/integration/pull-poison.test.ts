import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { HEADERS } from '../../src/contracts/envelope';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { cdcReaderFromConfig } from '../../src/ingest/cdc/reader';
import { formatLsn, parseLsn } from '../../src/ingest/cdc/pgoutput';
import { createPartnerPollActivities } from '../../src/ingest/partner-api/poll-activities';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { createLogger } from '../../src/logger';
import { scanValue } from '../../src/quality/pii-scanner';
import { createGatewayFeed, encodeGatewayEvent } from '../../src/simulator/gateway-feed';
import { createOltpPool, customerEmailOf, ensureOltpSchema, recordInOltp } from '../../src/simulator/oltp';
import { createPartnerApiSimulator, toPartnerSettlement } from '../../src/simulator/partner-api';
import { simulatePayments } from '../../src/simulator/payments';
import { createS3Client, ensureBucket } from '../../src/stores/s3';
import { type Vault, openVault } from '../../src/stores/vault';
import { createKafka } from '../../src/streams/kafka';
import { CLAIM_CHECK_HEADER, type Publisher } from '../../src/streams/publish';
import { testGatewayConnector, testPublisher } from '../support/edge';
import { type ReadMessage, type TopicOffsets, readKeyed, readKeyedBetween, topicEnds } from '../support/kafka';
import { waitFor } from '../support/pipeline';
import { config, requireServices, topics, uniqueId } from '../support/stack';

// Issue 11: an event too large to produce once tokenized, between valid ones, used to stall the pull
// paths (the gateway connector re-read its page forever, PartnerPoll retried its page forever, the CDC
// reader failed its round and re-read the same WAL forever, its slot pinning WAL meanwhile). It is
// quarantined with a claim check now; the events after it flow, and no fact exists without its raw
// record. A re-read of the same page (a crash before the cursor moved) gets through it again, and the
// CDC slot moves past the poisoned row, so a restarted reader does not read it again.

/** Grows on tokenization: every address becomes a longer token (1,500 of them: ~48 KB once tokenized, over 32 KB). */
const bulky = (addresses = 1500): string =>
  Array.from({ length: addresses }, (_, i) => `payer${i}@example.com`).join(' ');

type Created = Extract<PaymentEvent, { type: 'created' }>;

describe('pull paths under a poisoned event (gateway, partner API, CDC)', { timeout: 180_000 }, () => {
  const log = createLogger('gateway-poison-test');
  const kafka = createKafka(config, 'gateway-poison-test');
  const admin = kafka.admin();
  const tokenizer = tokenizerFromConfig(config);
  // Far below the broker's limit, so a ~48 KB event is the poison without sending a megabyte.
  const publisher = testPublisher('gateway-poison', log, { maxRecordBytes: 32 * 1024 });
  const runId = uniqueId('gwp');
  const sim = simulatePayments({ payments: 40, seed: 77, duplicateRate: 0, runId, happyPathOnly: true });
  // Three authorizations through one regional gateway (its feed serves one region).
  const authorized = sim.events.filter((e) => e.type === 'authorized');
  const region = authorized[0]!.region;
  const [before1, poison, after1] = authorized.filter((e) => e.region === region);
  const used = new Set([before1, poison, after1].map((e) => e!.paymentId));
  // Rows of PayLink's OLTP payments table for the CDC cases, three per case, from the other end of the run.
  const createdRows = sim.events.filter((e): e is Created => e.type === 'created' && !used.has(e.paymentId)).slice(-6);
  const oltp = createOltpPool(config);
  const s3 = createS3Client(config);
  const cdcPlaces: { schema: string; slot: string; publication: string }[] = [];
  const stateDirs: string[] = [];
  let vault: Vault;
  const starts = new Map<string, TopicOffsets>();

  before(async () => {
    await requireServices('kafka', 'postgres', 's3');
    await admin.connect();
    vault = await openVault(config);
    await ensureBucket(s3, config.S3_BUCKET);
    for (const t of [
      topics.rawGateways,
      topics.rawPartnerApi,
      topics.cdcPayments,
      topics.paymentEvents,
      topics.quarantine,
    ]) {
      starts.set(t, await topicEnds(admin, t));
    }
  });
  after(async () => {
    await publisher.close();
    await vault?.close();
    await admin.disconnect();
    for (const d of stateDirs) rmSync(d, { recursive: true, force: true });
    for (const { schema, slot, publication } of cdcPlaces) {
      await oltp.query('select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1', [
        slot,
      ]);
      await oltp.query(`drop publication if exists ${publication}`);
      await oltp.query(`drop schema if exists ${schema} cascade`);
      await oltp.query('delete from paylink_cdc.reader_state where slot_name = $1', [slot]);
    }
    await oltp.end();
    s3.destroy();
  });

  const keysOn = async (topic: string, want: string[]): Promise<ReadMessage[]> =>
    readKeyed(
      kafka,
      topic,
      starts.get(topic)!,
      (key) => key.startsWith(runId),
      (kept) => want.every((id) => kept.some((m) => m.key === id)),
    );

  /** Runs a connector with its own cursor over the feed until it has read every event on it. */
  const readFeed = async (url: string, gateway: string, region: string, events: number): Promise<void> => {
    const stateDir = mkdtempSync(join(tmpdir(), 'paylink-gw-poison-'));
    stateDirs.push(stateDir);
    const connector = testGatewayConnector({ feeds: [{ region, gateway, url }], publisher, vault, log, stateDir });
    connector.start();
    try {
      await waitFor('the connector to read past the poison', Date.now() + 60_000, async () => {
        const [st] = connector.status();
        return (st!.events >= events && st!.state === 'ok') || `${st!.state}: ${st!.lastError ?? 'no page yet'}`;
      });
    } finally {
      await connector.stop();
    }
  };

  it('quarantines the poison with a claim check, delivers the events after it, and gets through it again on a re-read', async () => {
    const feed = createGatewayFeed({ region });
    await feed.start();
    try {
      feed.publish([before1!]);
      const big = encodeGatewayEvent(poison!, feed.gateway);
      feed.appendRaw({ ...big, note: bulky() });
      feed.publish([after1!]);
      const url = `http://127.0.0.1:${feed.port}`;
      await readFeed(url, feed.gateway, feed.region, 3);

      const ids = [before1!.paymentId, after1!.paymentId];
      const raw = await keysOn(topics.rawGateways, ids);
      const facts = await keysOn(topics.paymentEvents, ids);
      const quarantined = await keysOn(topics.quarantine, [poison!.paymentId]);
      const claim = quarantined.find((m) => m.key === poison!.paymentId)!;
      assert.match(claim.headers[CLAIM_CHECK_HEADER] ?? '', /^s3:\/\/.+\/claim-check\/gateway/, 'a claim check');
      assert.match(claim.headers[HEADERS.quarantineReason] ?? '', /bytes/, 'the reason names the size');
      // No fact without its raw record: the same idempotency key on the raw topic.
      const rawKeys = new Set(raw.map((m) => m.headers[HEADERS.idempotencyKey]));
      for (const f of facts.filter((m) => ids.includes(m.key)))
        assert.ok(rawKeys.has(f.headers[HEADERS.idempotencyKey]), `fact ${f.key} has no raw record`);
      assert.ok(!raw.some((m) => m.key === poison!.paymentId), 'the poison never reached the raw topic');
      assert.ok(!facts.some((m) => m.key === poison!.paymentId), 'nor the facts topic');

      // A connector that lost its cursor (a crash before the cursor write) re-reads the page, poison included.
      await readFeed(url, feed.gateway, feed.region, 3);
    } finally {
      await feed.stop();
    }
  });

  it('partner API: the poison record is quarantined with a claim check, the page completes, a retry of it too', async () => {
    const settlements = sim.events
      .filter((e): e is Extract<PaymentEvent, { type: 'settled' }> => e.type === 'settled')
      .filter((e) => !used.has(e.paymentId))
      .slice(0, 3);
    const [first, poisoned, last] = settlements;
    const token = `ptk_${runId.replace(/[^a-z0-9]/g, '_')}`;
    const api = createPartnerApiSimulator({ tokens: [token] });
    const url = await api.listen(0);
    try {
      api.publish([first!]);
      api.publishRecords([{ ...toPartnerSettlement(poisoned!), description: bulky() }]);
      api.publish([last!]);
      const partnerId = `poison-${runId.slice(-12).replace(/[^a-z0-9]/g, '-')}`;
      const activities = createPartnerPollActivities({
        partners: [{ id: partnerId, url, token, region: first!.region }],
        publisher,
        topics,
        tokenizer,
        vault,
        log,
      });
      const page = await activities.pollPartnerPage({ partnerId, cursor: '', limit: 50 });
      assert.deepEqual([page.received, page.quarantined], [3, 1], 'the page completes, one record quarantined');
      // An activity retry produces the same page again: it completes again, the poison quarantined again.
      const again = await activities.pollPartnerPage({ partnerId, cursor: '', limit: 50 });
      assert.deepEqual([again.received, again.quarantined], [3, 1]);

      const ids = [first!.paymentId, last!.paymentId];
      const raw = await keysOn(topics.rawPartnerApi, ids);
      const facts = await keysOn(topics.paymentEvents, ids);
      const quarantined = await keysOn(topics.quarantine, [poisoned!.paymentId]);
      const claim = quarantined.find((m) => m.key === poisoned!.paymentId)!;
      assert.match(claim.headers[CLAIM_CHECK_HEADER] ?? '', /^s3:\/\/.+\/claim-check\/partner/, 'a claim check');
      const rawKeys = new Set(raw.map((m) => m.headers[HEADERS.idempotencyKey]));
      for (const f of facts.filter((m) => ids.includes(m.key)))
        assert.ok(rawKeys.has(f.headers[HEADERS.idempotencyKey]), `fact ${f.key} has no raw record`);
      assert.ok(!raw.some((m) => m.key === poisoned!.paymentId), 'the poison never reached the raw topic');
    } finally {
      await api.close();
    }
  });

  /** The Kafka key of a payments change: the row's primary key, as the reader writes it. */
  const cdcKey = (paymentId: string): string => JSON.stringify({ id: paymentId });

  /**
   * A valid row, a poisoned one and a valid one, each its own OLTP transaction, in PayLink's tables under a
   * schema of the case's own, read by a reader on a slot of its own through `publisher`. Checks what every
   * poisoned row must come to and answers its quarantine record, for the reason the case expects.
   */
  const throughPoisonedRow = async (tag: string, publisher: Publisher, description: string): Promise<ReadMessage> => {
    const [first, poisoned, last] = createdRows.splice(0, 3) as [Created, Created, Created];
    const name = `${runId}_${tag}`.replace(/[^a-z0-9]/g, '_');
    const place = { schema: `t_${name}`, slot: `s_${name}`, publication: `p_${name}` };
    cdcPlaces.push(place);
    await ensureOltpSchema(oltp, place.schema);
    const newReader = () =>
      cdcReaderFromConfig(
        { ...config, CDC_SLOT: place.slot, CDC_PUBLICATION: place.publication, CDC_SCHEMA: place.schema },
        { pool: oltp, publisher, vault, log },
      );
    const reader = newReader();
    await reader.start();

    await recordInOltp(oltp, [first], place.schema);
    await oltp.query(
      `insert into ${place.schema}.payments
         (id, merchant_id, region, currency, amount_minor, status, customer_email, created_at, updated_at, description)
       values ($1, $2, $3, $4, $5, 'created', $6, $7, $7, $8)`,
      [
        poisoned.paymentId,
        poisoned.merchantId,
        poisoned.region,
        poisoned.currency,
        poisoned.amountMinor,
        customerEmailOf(poisoned.paymentId),
        poisoned.occurredAt,
        description,
      ],
    );
    await recordInOltp(oltp, [last], place.schema);
    const written = (await oltp.query<{ lsn: string }>('select pg_current_wal_flush_lsn()::text as lsn')).rows[0]!.lsn;

    let read = 0;
    await waitFor(
      'the CDC reader to read past the poisoned row',
      Date.now() + 30_000,
      async () => {
        // A round that throws is the stall: the slot stays before the poisoned row and every round re-reads it.
        const round = await reader.poll();
        read += round.records;
        return parseLsn(round.confirmedLsn) >= parseLsn(written) || `slot at ${round.confirmedLsn}, ${read} changes`;
      },
      { intervalMs: 100 },
    );
    assert.equal(read, 3, 'each row read once');

    const ids = [first.paymentId, last.paymentId];
    const ours = new Set([first, poisoned, last].map((e) => cdcKey(e.paymentId)));
    const [quarantined] = await readKeyed(
      kafka,
      topics.quarantine,
      starts.get(topics.quarantine)!,
      (key) => key === cdcKey(poisoned.paymentId),
      (kept) => kept.length > 0,
    );
    await readKeyed(
      kafka,
      topics.cdcPayments,
      starts.get(topics.cdcPayments)!,
      (key) => ours.has(key),
      (kept) => ids.every((id) => kept.some((m) => m.key === cdcKey(id))),
    );
    // Seen, so committed: everything up to the end offsets now, every copy counted.
    const copies = async (topic: string): Promise<string[]> =>
      (await readKeyedBetween(kafka, topic, starts.get(topic)!, await topicEnds(admin, topic), (k) => ours.has(k)))
        .map((m) => m.key)
        .sort();
    assert.deepEqual(await copies(topics.cdcPayments), ids.map(cdcKey).sort(), 'the rows around it, once each');
    assert.deepEqual(await copies(topics.quarantine), [cdcKey(poisoned.paymentId)], 'the poisoned row, once');

    // Not dropped: the claim check holds the whole change, tokenized as it would have been produced.
    const uri = quarantined!.headers[CLAIM_CHECK_HEADER] ?? '';
    const object = /^s3:\/\/([^/]+)\/(claim-check\/cdc\/.+)$/.exec(uri);
    assert.ok(object, `a claim check: ${uri}`);
    const body = await s3.send(new GetObjectCommand({ Bucket: object[1], Key: object[2] }));
    const stored = JSON.parse(await body.Body!.transformToString()) as { records: { topic: string; value: string }[] };
    assert.deepEqual(
      stored.records.map((r) => r.topic),
      [topics.cdcPayments],
    );
    const change = JSON.parse(stored.records[0]!.value) as { op: string; after: Record<string, unknown> };
    assert.deepEqual([change.op, change.after.id], ['c', poisoned.paymentId]);
    assert.deepEqual(scanValue(change), [], 'no raw PII in the claim check');

    // The slot stands past the poisoned row (its LSN ends its idempotency key): a restarted reader reads nothing.
    const lsn = BigInt(/:(\d+)$/.exec(quarantined!.headers[HEADERS.idempotencyKey] ?? '')?.[1] ?? 'NaN');
    const slot = await oltp.query<{ lsn: string }>(
      'select confirmed_flush_lsn::text as lsn from pg_replication_slots where slot_name = $1',
      [place.slot],
    );
    assert.ok(parseLsn(slot.rows[0]!.lsn) > lsn, `slot at ${slot.rows[0]!.lsn}, the poisoned row at ${formatLsn(lsn)}`);
    const restarted = newReader();
    await restarted.start();
    assert.equal((await restarted.poll()).records, 0, 'a restarted reader reads nothing again');
    return quarantined!;
  };

  it('CDC: a row too large once tokenized is claim-checked; the rows around it flow once, the slot moves past it', async () => {
    const description = bulky(1200);
    // As written the row fits, envelope and all; its ~1,200 addresses, tokenized, take it over the limit.
    assert.ok(Buffer.byteLength(description) + 4096 < 32 * 1024);
    const quarantined = await throughPoisonedRow('big', publisher, description);
    assert.match(
      quarantined.headers[HEADERS.quarantineReason] ?? '',
      /is \d+ bytes as produced \(after tokenization\).* over the 32768-byte record limit/,
    );
  });

  it("CDC: a row the broker refuses is quarantined with the broker's reason, the slot moves past it", async () => {
    // The publisher's own limit above the broker's (misconfigured): the broker refuses the record itself.
    const lenient = testPublisher('cdc-refused', log, { maxRecordBytes: 8 * 1024 * 1024 });
    try {
      // An order note pasted whole: ~1.2 MB, over the broker's 1,048,588-byte message.max.bytes.
      const quarantined = await throughPoisonedRow('refused', lenient, 'order note '.repeat(110_000));
      assert.match(
        quarantined.headers[HEADERS.quarantineReason] ?? '',
        /Kafka refused event cdc:.*(larger than the max message size|too large)/i,
      );
    } finally {
      await lenient.close();
    }
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HEADERS } from '../../src/contracts/envelope';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { createPartnerPollActivities } from '../../src/ingest/partner-api/poll-activities';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { createLogger } from '../../src/logger';
import { createGatewayFeed, encodeGatewayEvent } from '../../src/simulator/gateway-feed';
import { createPartnerApiSimulator, toPartnerSettlement } from '../../src/simulator/partner-api';
import { simulatePayments } from '../../src/simulator/payments';
import { createS3Client, ensureBucket } from '../../src/stores/s3';
import { type Vault, openVault } from '../../src/stores/vault';
import { createKafka } from '../../src/streams/kafka';
import { CLAIM_CHECK_HEADER } from '../../src/streams/publish';
import { testGatewayConnector, testPublisher } from '../support/edge';
import { type ReadMessage, type TopicOffsets, readKeyed, topicEnds } from '../support/kafka';
import { waitFor } from '../support/pipeline';
import { config, requireServices, topics, uniqueId } from '../support/stack';

// Issue 11: an event too large to produce once tokenized, between valid ones, used to stall the pull
// paths (the gateway connector re-read its page forever, PartnerPoll retried its page forever). It is
// quarantined with a claim check now; the events after it flow, and no fact exists without its raw
// record. A re-read of the same page (a crash before the cursor moved) gets through it again.

/** Grows on tokenization: every address becomes a longer token (~48 KB once tokenized, over 32 KB). */
const bulky = (): string => Array.from({ length: 1500 }, (_, i) => `payer${i}@example.com`).join(' ');

describe('pull paths under a poisoned event (gateway, partner API)', { timeout: 180_000 }, () => {
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
  const stateDirs: string[] = [];
  let vault: Vault;
  const starts = new Map<string, TopicOffsets>();

  before(async () => {
    await requireServices('kafka', 'postgres', 's3');
    await admin.connect();
    vault = await openVault(config);
    const s3 = createS3Client(config);
    await ensureBucket(s3, config.S3_BUCKET);
    s3.destroy();
    for (const t of [topics.rawGateways, topics.rawPartnerApi, topics.paymentEvents, topics.quarantine]) {
      starts.set(t, await topicEnds(admin, t));
    }
  });
  after(async () => {
    await publisher.close();
    await vault?.close();
    await admin.disconnect();
    for (const d of stateDirs) rmSync(d, { recursive: true, force: true });
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
});

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { HEADERS } from '../../src/contracts/envelope';
import { signStripe } from '../../src/ingest/signatures';
import { openSpool } from '../../src/ingest/spool';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { parsePartners } from '../../src/ingest/webhook-receiver';
import { createLogger } from '../../src/logger';
import { scanValue } from '../../src/quality/pii-scanner';
import { startPipelineProcess } from '../../src/starters/processes';
import { createS3Client, ensureBucket } from '../../src/stores/s3';
import { openVault } from '../../src/stores/vault';
import { createKafka, ensureTopics } from '../../src/streams/kafka';
import { CLAIM_CHECK_HEADER } from '../../src/streams/publish';
import {
  RECEIVER_MAIN,
  listenLocally,
  receiverProcessPlace,
  stripeEvent,
  tempSpool,
  testPublisher,
  testReceiver,
  wrapTransactions,
} from '../support/edge';
import { emails } from '../support/events';
import { type ReadMessage, type TopicOffsets, readKeyed, topicEnds } from '../support/kafka';
import { config, requireServices, uniqueId, topics as TOPICS } from '../support/stack';

// Issue 11: a 2xx means committed on Kafka or in a spool that will drain. A signed event that grows past
// the record limit once tokenized, between valid ones, must not stall them (Kafka up, and after a restart
// with it in the spool); it is quarantined with its reason and a claim check in S3; no fact is ever on
// Kafka without its raw record (read committed); a send abandoned at the timeout never lands twice.

const acme = parsePartners(config.WEBHOOK_PARTNERS).find((p) => p.scheme === 'stripe')!;
const kafka = createKafka(config, 'edge-poison-test');
const s3 = createS3Client(config);
const suiteStart = new Map<string, TopicOffsets>();
// The record limit the receivers under test use: small, so a body of ~15 KB outgrows it once tokenized.
const MAX_RECORD_BYTES = 32 * 1024;

/** ~15 KB as received, ~45 KB as produced: short addresses become ~45-byte tokens. */
const growingContacts = (): string[] => emails(900);

function signed(body: string): Record<string, string> {
  return {
    'content-type': 'application/json',
    'Stripe-Signature': signStripe(body, acme.secrets[0]!, Math.floor(Date.now() / 1000)),
  };
}

async function post(base: string, event: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const body = JSON.stringify(event);
  const res = await fetch(`${base}/webhooks/${acme.id}`, { method: 'POST', body, headers: signed(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const captureOf = (m: ReadMessage): string =>
  (JSON.parse(m.value) as { captureId?: string; data?: { object?: { captureId?: string } } }).captureId ??
  (JSON.parse(m.value) as { data?: { object?: { captureId?: string } } }).data?.object?.captureId ??
  '';

/**
 * Everything keyed `paymentId` on the raw and fact topics (read committed), up to the event
 * captured as `sentinel`: one payment is one partition, so records before the sentinel's are all read.
 */
async function readPayment(paymentId: string, sentinel: string): Promise<{ raw: ReadMessage[]; facts: ReadMessage[] }> {
  const upTo = (m: ReadMessage[]): boolean => m.some((x) => captureOf(x) === sentinel);
  const [raw, facts] = await Promise.all([
    readKeyed(kafka, TOPICS.rawWebhooks, suiteStart.get(TOPICS.rawWebhooks)!, (k) => k === paymentId, upTo, 60_000),
    readKeyed(kafka, TOPICS.paymentEvents, suiteStart.get(TOPICS.paymentEvents)!, (k) => k === paymentId, upTo, 60_000),
  ]);
  return { raw, facts };
}

/** The quarantine records keyed `paymentId`, once `want` are there. */
const readQuarantine = (paymentId: string, want: number): Promise<ReadMessage[]> =>
  readKeyed(
    kafka,
    TOPICS.quarantine,
    suiteStart.get(TOPICS.quarantine)!,
    (k) => k === paymentId,
    (m) => m.length >= want,
    60_000,
  );

/** No fact without its raw record: every fact's idempotency key is on the raw topic. */
function assertNoFactWithoutRaw(raw: ReadMessage[], facts: ReadMessage[]): void {
  const rawKeys = new Set(raw.map((m) => m.headers[HEADERS.idempotencyKey]));
  for (const f of facts)
    assert.ok(rawKeys.has(f.headers[HEADERS.idempotencyKey]), `fact ${captureOf(f)} has its raw record`);
}

async function assertClaimCheck(q: ReadMessage, limit: RegExp): Promise<void> {
  assert.match(q.headers[HEADERS.quarantineReason]!, limit);
  const uri = q.headers[CLAIM_CHECK_HEADER]!;
  const m = /^s3:\/\/([^/]+)\/(claim-check\/webhook\/\d{4}-\d{2}-\d{2}\/[a-p]{32}-[a-p]{16}\.json)$/.exec(uri);
  assert.ok(m, `claim check ${uri}`);
  const object = await s3.send(new GetObjectCommand({ Bucket: m[1], Key: m[2] }));
  const stored = JSON.parse(await object.Body!.transformToString()) as { records: { topic: string; value: string }[] };
  assert.equal(stored.records[0]!.topic, TOPICS.rawWebhooks);
  assert.deepEqual(scanValue(JSON.parse(stored.records[0]!.value)), [], 'the stored body is tokenized');
}

describe('edge under a poisoned event', () => {
  before(async () => {
    await requireServices('kafka', 's3', 'postgres');
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureTopics(admin, config);
      for (const t of [TOPICS.rawWebhooks, TOPICS.paymentEvents, TOPICS.quarantine]) {
        suiteStart.set(t, await topicEnds(admin, t));
      }
    } finally {
      await admin.disconnect();
    }
    await ensureBucket(s3, config.S3_BUCKET);
  });
  after(() => s3.destroy());

  it('with Kafka up: later events flow, the poison is quarantined with its reason and a claim check', async () => {
    const { base, env, remove } = receiverProcessPlace('paylink-poison-up-');
    const edge = startPipelineProcess('edge-poison-up', RECEIVER_MAIN, {
      ...env,
      KAFKA_MAX_RECORD_BYTES: String(MAX_RECORD_BYTES),
    });
    const paymentId = uniqueId('poison-up');
    try {
      await edge.ready;
      assert.equal((await post(base, stripeEvent(paymentId, { captureId: 'v1' }))).status, 200);
      const poison = stripeEvent(paymentId, { captureId: 'p1', contacts: growingContacts() });
      assert.ok(JSON.stringify(poison).length < MAX_RECORD_BYTES / 2, 'under the limit as received');
      const poisoned = await post(base, poison);
      assert.equal(poisoned.status, 202, JSON.stringify(poisoned.body));
      assert.deepEqual(poisoned.body, { accepted: 1, quarantined: 1, durable: 'kafka' });
      for (const id of ['v2', 'v3']) {
        const later = await post(base, stripeEvent(paymentId, { captureId: id }));
        assert.equal(later.status, 200, JSON.stringify(later.body));
        assert.equal(later.body['durable'], 'kafka');
      }
      const ready = (await (await fetch(`${base}/readyz`)).json()) as { status: string; spooled: number };
      assert.equal(ready.spooled, 0, 'nothing stranded in the spool');

      const { raw, facts } = await readPayment(paymentId, 'v3');
      assert.deepEqual(raw.map(captureOf), ['v1', 'v2', 'v3']);
      assert.deepEqual(facts.map(captureOf), ['v1', 'v2', 'v3']);
      assertNoFactWithoutRaw(raw, facts);
      const [q] = await readQuarantine(paymentId, 1);
      await assertClaimCheck(
        q!,
        new RegExp(
          `is \\d+ bytes as produced \\(after tokenization\\).*over the ${MAX_RECORD_BYTES}-byte record limit`,
        ),
      );
    } finally {
      await edge.stop();
      remove();
    }
  });

  it("with a limit above the broker's: the broker's refusal is poison, the others in its transaction still land", async () => {
    const { base, env, remove } = receiverProcessPlace('paylink-poison-broker-');
    const edge = startPipelineProcess('edge-poison-broker', RECEIVER_MAIN, {
      ...env,
      KAFKA_MAX_RECORD_BYTES: String(8 * 1024 * 1024), // misconfigured: above message.max.bytes
      WEBHOOK_MAX_BODY_BYTES: String(2 * 1024 * 1024),
    });
    const paymentId = uniqueId('poison-broker');
    try {
      await edge.ready;
      // Concurrent, so they share a transaction: the broker refuses it, the publish step isolates the event.
      const answers = await Promise.all([
        post(base, stripeEvent(paymentId, { captureId: 'w1' })),
        post(base, stripeEvent(paymentId, { captureId: 'big', note: 'n'.repeat(1_200_000) })),
        post(base, stripeEvent(paymentId, { captureId: 'w2' })),
      ]);
      assert.deepEqual(
        answers.map((a) => a.status),
        [200, 202, 200],
        JSON.stringify(answers.map((a) => a.body)),
      );
      assert.equal(answers[1]?.body['durable'], 'kafka');
      assert.equal((await post(base, stripeEvent(paymentId, { captureId: 'w3' }))).status, 200);
      const { raw, facts } = await readPayment(paymentId, 'w3');
      assert.deepEqual(raw.map(captureOf).sort(), ['w1', 'w2', 'w3']);
      assert.deepEqual(facts.map(captureOf).sort(), ['w1', 'w2', 'w3']);
      assertNoFactWithoutRaw(raw, facts);
      const [q] = await readQuarantine(paymentId, 1);
      await assertClaimCheck(q!, /Kafka refused event webhook:acme-pay:.*(too large|MESSAGE_TOO_LARGE|larger)/i);
    } finally {
      await edge.stop();
      remove();
    }
  });

  it('after a restart with the poison in the spool (its own and an earlier receiver’s), everything else drains', async () => {
    const place = receiverProcessPlace('paylink-poison-restart-');
    const { dir, base } = place;
    const env = {
      ...place.env,
      WEBHOOK_KAFKA_TIMEOUT_MS: '500',
      KAFKA_MAX_RECORD_BYTES: String(MAX_RECORD_BYTES),
    };
    const paymentId = uniqueId('poison-restart');
    const down = startPipelineProcess('edge-poison-kafka-down', RECEIVER_MAIN, {
      ...env,
      KAFKA_BROKERS: '127.0.0.1:1',
    });
    try {
      await down.ready;
      for (const event of [
        stripeEvent(paymentId, { captureId: 'k1' }),
        stripeEvent(paymentId, { captureId: 'kp', contacts: growingContacts() }),
        stripeEvent(paymentId, { captureId: 'k2' }),
      ]) {
        const answer = await post(base, event);
        assert.equal(answer.status, 202, JSON.stringify(answer.body));
        assert.equal(answer.body['durable'], 'spool');
      }
    } finally {
      await down.kill9();
    }
    // A spool as the receiver before this change left it: one record per message, the poison among them.
    const spool = await openSpool({ dir: join(dir, 'spool', 'worker-0'), maxBytes: 64 * 1024 * 1024 });
    const tokenizer = tokenizerFromConfig(config);
    const legacy = (captureId: string, extra: Record<string, unknown> = {}) => {
      const t = tokenizer.tokenize(stripeEvent(paymentId, { captureId, ...extra })).payload;
      const headers = (kind: string) => ({
        [HEADERS.idempotencyKey]: `webhook:${acme.id}:legacy-${captureId}-${paymentId}`,
        [HEADERS.traceId]: '0'.repeat(32),
        [HEADERS.source]: 'webhook',
        [HEADERS.schema]: kind,
        [HEADERS.receivedAt]: new Date().toISOString(),
      });
      const raw = {
        topic: TOPICS.rawWebhooks,
        key: paymentId,
        value: Buffer.from(JSON.stringify(t)),
        headers: headers('stripe-style-event@1'),
      };
      const fact = {
        topic: TOPICS.paymentEvents,
        key: paymentId,
        value: Buffer.from(JSON.stringify({ captureId, paymentId })),
        headers: headers('payment-fact@1'),
      };
      return [raw, fact];
    };
    for (const r of [...legacy('l1'), ...legacy('lp', { contacts: growingContacts() }), ...legacy('l2')]) {
      assert.ok((await spool.append(r)).ok);
    }
    await spool.close();

    const back = startPipelineProcess('edge-poison-kafka-back', RECEIVER_MAIN, env);
    try {
      await back.ready;
      const deadline = Date.now() + 30_000;
      let ready = { status: '', spooled: -1 };
      while (Date.now() < deadline) {
        ready = (await (await fetch(`${base}/readyz`)).json()) as typeof ready;
        if (ready.spooled === 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(ready.spooled, 0, `the spool drained: ${JSON.stringify(ready)}`);
      assert.equal((await post(base, stripeEvent(paymentId, { captureId: 'k3' }))).status, 200);
      const { raw, facts } = await readPayment(paymentId, 'k3');
      assert.deepEqual(raw.map(captureOf).sort(), ['k1', 'k2', 'k3', 'l1', 'l2']);
      assert.deepEqual(facts.map(captureOf).sort(), ['k1', 'k2', 'k3', 'l1', 'l2']);
      assertNoFactWithoutRaw(raw, facts);
      const quarantined = await readQuarantine(paymentId, 2);
      for (const q of quarantined) await assertClaimCheck(q, /bytes as produced .*record limit/);
    } finally {
      await back.stop();
      place.remove();
    }
  });

  it('the timeout race: a send past the timeout is aborted, not committed beside its spooled copy; a commit in flight is waited out', async () => {
    const { spool, remove } = await tempSpool('paylink-poison-race-', 8 * 1024 * 1024);
    const log = createLogger('edge-poison-race');
    const slow = { send: 0, commit: 0 };
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const publisher = testPublisher('edge-poison-race', log, {
      // The broker gets the records (or the commit) only after the receiver's timeout has passed.
      wrap: wrapTransactions((txn) => ({
        send: async (records) => {
          if (slow.send > 0) await sleep(slow.send);
          await txn.send(records);
        },
        commit: async () => {
          if (slow.commit > 0) await sleep(slow.commit);
          await txn.commit();
        },
      })),
    });
    const vault = await openVault(config);
    const receiver = testReceiver({ publisher, spool, vault, log, maxBodyBytes: 64 * 1024, kafkaTimeoutMs: 300 });
    const base = `http://127.0.0.1:${await listenLocally(receiver)}`;
    const paymentId = uniqueId('race');
    try {
      assert.equal((await post(base, stripeEvent(paymentId, { captureId: 'warm' }))).status, 200);
      slow.send = 1500;
      const abandoned = await post(base, stripeEvent(paymentId, { captureId: 'slow-send' }));
      assert.equal(abandoned.status, 202, JSON.stringify(abandoned.body));
      assert.equal(abandoned.body['durable'], 'spool');
      slow.send = 0;
      // The abandoned send reaches the broker later and is aborted there, never committed.
      const deadline = Date.now() + 30_000;
      while (publisher.counters.aborted < 1) {
        assert.ok(Date.now() < deadline, 'the abandoned transaction was not aborted within 30 s');
        await sleep(50);
      }
      while (spool.size().records > 0) {
        assert.ok(Date.now() < deadline, `the spool did not drain within 30 s (${spool.size().records} left)`);
        await receiver.drainSpool();
        await sleep(100);
      }
      slow.commit = 1000;
      const waited = await post(base, stripeEvent(paymentId, { captureId: 'slow-commit' }));
      assert.equal(waited.status, 200, JSON.stringify(waited.body));
      assert.equal(waited.body['durable'], 'kafka', 'a commit in flight is waited out, not abandoned');
      slow.commit = 0;
      assert.equal((await post(base, stripeEvent(paymentId, { captureId: 'end' }))).status, 200);
      const { raw, facts } = await readPayment(paymentId, 'end');
      assert.deepEqual(raw.map(captureOf), ['warm', 'slow-send', 'slow-commit', 'end'], 'each exactly once');
      assert.deepEqual(facts.map(captureOf), ['warm', 'slow-send', 'slow-commit', 'end']);
      assert.equal(publisher.counters.timeouts, 1);
      assert.ok(publisher.counters.aborted >= 1);
    } finally {
      await receiver.close();
      await spool.close();
      await publisher.close();
      await vault.close();
      remove();
    }
  });
});

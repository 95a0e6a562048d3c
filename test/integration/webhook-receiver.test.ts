import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { scanValue } from '../../src/quality/pii-scanner';
import { signAdyen, signStripe } from '../../src/ingest/signatures';
import { openSpool } from '../../src/ingest/spool';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { createVaultJournal } from '../../src/ingest/vault-journal';
import { createWebhookReceiver, parsePartners } from '../../src/ingest/webhook-receiver';
import { type Logger, createLogger } from '../../src/logger';
import { createPool } from '../../src/stores/postgres';
import { type Vault, openVaultLazily, vaultKeyring } from '../../src/stores/vault';
import { KafkaJSConnectionError } from 'kafkajs';
import { createKafka } from '../../src/streams/kafka';
import { startPipelineProcess } from '../../src/starters/processes';
import { type ReadMessage, type TopicOffsets, readKeyed as readTopic, topicEnds } from '../support/kafka';
import { type TestEdge, startTestEdge, stripeEvent, testPublisher } from '../support/edge';
import { config, requireServices, uniqueId, topics as TOPICS } from '../support/stack';

const partners = parsePartners(config.WEBHOOK_PARTNERS);
const acme = partners.find((p) => p.scheme === 'stripe')!;
const adyen = partners.find((p) => p.scheme === 'adyen')!;
const tokenizer = tokenizerFromConfig(config);

/** One POST on a fresh connection (no keep-alive), so node:cluster spreads requests over its workers. */
function postOnNewConnection(url: string, body: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// End offsets when the suite started: reading from them, not from the beginning, keeps each read short
// however much the shared topics already hold.
const kafka = createKafka(config, 'webhook-test');
const suiteStart = new Map<string, TopicOffsets>();

async function rememberTopicEnds(topics: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    for (const topic of topics) suiteStart.set(topic, await topicEnds(admin, topic));
  } finally {
    await admin.disconnect();
  }
}

/** The first `want` messages keyed `key` on `topic` since the suite started. */
function readKeyed(topic: string, key: string, want: number, timeoutMs?: number): Promise<ReadMessage[]> {
  return readTopic(
    kafka,
    topic,
    suiteStart.get(topic) ?? [],
    (k) => k === key,
    (kept) => kept.length >= want,
    timeoutMs,
  );
}

describe('webhook receiver (the edge)', () => {
  let edge: TestEdge;
  let vault: Vault;
  let base: string;

  before(async () => {
    await requireServices('kafka', 'postgres');
    await rememberTopicEnds([TOPICS.paymentEvents, TOPICS.rawWebhooks, TOPICS.quarantine]);
    edge = await startTestEdge(createLogger('test-edge'));
    ({ base, vault } = edge);
  });
  after(async () => {
    await edge.close();
  });

  const postStripe = (body: string, signature?: string, partner = acme.id): Promise<Response> =>
    fetch(`${base}/webhooks/${partner}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', ...(signature ? { 'Stripe-Signature': signature } : {}) },
    });

  it('accepts a signed event, tokenizes PAN and PII before Kafka, and keeps originals only in the vault', async () => {
    const paymentId = uniqueId('wh');
    const body = JSON.stringify(stripeEvent(paymentId));
    const res = await postStripe(body, signStripe(body, acme.secrets[0]!, Math.floor(Date.now() / 1000)));
    assert.equal(res.status, 200, await res.clone().text());
    const [fact] = await readKeyed(TOPICS.paymentEvents, paymentId, 1);
    const [raw] = await readKeyed(TOPICS.rawWebhooks, paymentId, 1);
    assert.equal((JSON.parse(fact!.value) as { type: string; amountMinor: number }).amountMinor, 1999);
    assert.match(fact!.headers['idempotency-key']!, /^webhook:acme-pay:evt-/);
    assert.deepEqual(scanValue(JSON.parse(raw!.value)), [], 'no raw PAN/PII on Kafka');
    const card = (JSON.parse(raw!.value) as { data: { object: { customer: { card: string; cardLast4: string } } } })
      .data.object.customer;
    assert.match(card.card, /^tok_pan_/);
    assert.equal(card.cardLast4, '4242');
    assert.equal(await vault.detokenize(card.card, { actor: 'test', purpose: 'verify vault' }), '4242424242424242');
  });

  it('accepts the previous secret during rotation', async () => {
    const body = JSON.stringify(stripeEvent(uniqueId('wh')));
    const res = await postStripe(body, signStripe(body, acme.secrets[1]!, Math.floor(Date.now() / 1000)));
    assert.equal(res.status, 200);
  });

  it('rejects forged, unsigned, stale, future-dated and replayed requests with 401 and a reason', async () => {
    const body = JSON.stringify(stripeEvent(uniqueId('wh')));
    const now = Math.floor(Date.now() / 1000);
    const cases: [string, string | undefined, RegExp][] = [
      ['forged', signStripe(body, 'whsec_attacker_secret', now), /mismatch/],
      ['unsigned', undefined, /missing-signature/],
      ['stale', signStripe(body, acme.secrets[0]!, now - 3600), /stale-timestamp/],
      ['future', signStripe(body, acme.secrets[0]!, now + 3600), /future-timestamp/],
    ];
    for (const [name, sig, reason] of cases) {
      const res = await postStripe(body, sig);
      assert.equal(res.status, 401, name);
      assert.match(((await res.json()) as { error: string }).error, reason, name);
    }
    const sig = signStripe(body, acme.secrets[0]!, now);
    assert.equal((await postStripe(body, sig)).status, 200);
    const replay = await postStripe(body, sig);
    assert.equal(replay.status, 401);
    assert.match(((await replay.json()) as { error: string }).error, /replayed/);
  });

  it('answers 400 to malformed JSON, 413 to an oversized body, 404 to an unknown partner', async () => {
    const bad = '{"id": "evt_1", ';
    const res400 = await postStripe(bad, signStripe(bad, acme.secrets[0]!, Math.floor(Date.now() / 1000)));
    assert.equal(res400.status, 400);
    assert.match(((await res400.json()) as { error: string }).error, /malformed JSON/);
    const big = JSON.stringify({ pad: 'x'.repeat(70 * 1024) });
    assert.equal((await postStripe(big, signStripe(big, acme.secrets[0]!, Math.floor(Date.now() / 1000)))).status, 413);
    const res404 = await postStripe('{}', 't=1,v1=00', 'nobody');
    assert.equal(res404.status, 404);
    assert.match(((await res404.json()) as { error: string }).error, /unknown partner "nobody"/);
  });

  it('accepts an authentic but schema-invalid event and quarantines it with the reason', async () => {
    const paymentId = uniqueId('wh');
    const body = JSON.stringify(stripeEvent(paymentId, { amountMinor: 19.99 }));
    const res = await postStripe(body, signStripe(body, acme.secrets[0]!, Math.floor(Date.now() / 1000)));
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json(), { accepted: 1, quarantined: 1, durable: 'kafka' });
    const [q] = await readKeyed(TOPICS.quarantine, paymentId, 1);
    assert.match(q!.headers['quarantine-reason']!, /data\.object\.amountMinor: amount must be integer minor units/);
  });

  it('verifies Adyen-style notifications per item (HMAC key rotation aside) and rejects a tampered one', async () => {
    const paymentId = uniqueId('wha');
    const item = {
      pspReference: uniqueId('psp'),
      merchantAccountCode: 'm-2',
      merchantReference: paymentId,
      amount: { value: 5000, currency: 'USD' },
      eventCode: 'CAPTURE',
      eventDate: new Date().toISOString(),
      success: 'true',
      additionalData: {} as Record<string, unknown>,
    };
    item.additionalData.hmacSignature = signAdyen(item, adyen.secrets[0]!);
    const ok = await fetch(`${base}/webhooks/${adyen.id}`, {
      method: 'POST',
      body: JSON.stringify({ live: 'false', notificationItems: [{ NotificationRequestItem: item }] }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(ok.status, 200, await ok.clone().text());
    const [fact] = await readKeyed(TOPICS.paymentEvents, paymentId, 1);
    assert.equal((JSON.parse(fact!.value) as { type: string }).type, 'captured');
    const tampered = { ...item, amount: { value: 9_999_999, currency: 'USD' } };
    const bad = await fetch(`${base}/webhooks/${adyen.id}`, {
      method: 'POST',
      body: JSON.stringify({ notificationItems: [{ NotificationRequestItem: tampered }] }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(bad.status, 401);
  });

  it('serves its OpenAPI document and health endpoints', async () => {
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    assert.ok('/webhooks/{partnerId}' in doc.paths);
    assert.deepEqual(await (await fetch(`${base}/readyz`)).json(), {
      status: 'ready',
      spooled: 0,
      spoolDrainErrors: 0,
    });
  });

  it('logs a failing spool drain once, counts every attempt, keeps the records, and logs when it drains again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'paylink-spool-drain-'));
    const spool = await openSpool({ dir, maxBytes: 1024 * 1024 });
    const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
    const record =
      (level: string) =>
      (msg: string, fields: Record<string, unknown> = {}): void => {
        lines.push({ level, msg, fields });
      };
    const log: Logger = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') };
    // Kafka unreachable until the gate opens: every transaction fails at once with a connection error.
    const gate = { down: true };
    const drainPublisher = testPublisher('webhook-test-drain', log, {
      wrap: (p) => ({
        ...p,
        transaction: () =>
          gate.down
            ? Promise.reject(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:1'))
            : p.transaction(),
      }),
    });
    const receiver = createWebhookReceiver({
      partners,
      publisher: drainPublisher,
      topics: TOPICS,
      spool,
      tokenizer,
      vault,
      log,
      maxBodyBytes: 64 * 1024,
      kafkaTimeoutMs: 5000,
    });
    await new Promise<void>((r) => receiver.server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}`;
    const readyz = async () =>
      (await (await fetch(`${url}/readyz`)).json()) as {
        status: string;
        spoolDrainErrors: number;
        lastSpoolDrainError?: { error: string; records: number };
      };
    const paymentId = uniqueId('whd');
    try {
      for (let i = 0; i < 3; i++) {
        const body = JSON.stringify(stripeEvent(paymentId, { captureId: `cap${i}` }));
        const res = await fetch(`${url}/webhooks/${acme.id}`, {
          method: 'POST',
          body,
          headers: {
            'content-type': 'application/json',
            'Stripe-Signature': signStripe(body, acme.secrets[0]!, Math.floor(Date.now() / 1000)),
          },
        });
        assert.equal(res.status, 202, await res.clone().text());
      }
      const waiting = spool.size().records;
      assert.equal(waiting, 3, 'one spool record per event (its raw record and its fact)');

      for (let i = 0; i < 3; i++) assert.equal(await receiver.drainSpool(), 0);
      assert.equal(spool.size().records, waiting, 'a failed drain keeps every record in the spool');
      assert.equal(receiver.counters.spoolDrainErrors, 3, 'every failed attempt is counted');
      const failing = lines.filter((l) => l.msg.startsWith('spool cannot drain'));
      assert.equal(failing.length, 1, 'logged when draining starts failing, not on every attempt');
      assert.equal(failing[0]!.level, 'warn');
      assert.match(String(failing[0]!.fields.error), /ECONNREFUSED/);
      assert.equal(failing[0]!.fields.records, waiting);
      const degraded = await readyz();
      assert.equal(degraded.status, 'degraded: kafka (spooling)');
      assert.equal(degraded.spoolDrainErrors, 3);
      assert.match(degraded.lastSpoolDrainError?.error ?? '', /ECONNREFUSED/);
      assert.equal(degraded.lastSpoolDrainError?.records, waiting);

      gate.down = false;
      assert.equal(await receiver.drainSpool(), waiting);
      assert.equal(spool.size().records, 0);
      const recovered = lines.filter((l) => l.msg.startsWith('spool draining to kafka again'));
      assert.equal(recovered.length, 1, 'logged when it drains again');
      assert.equal(recovered[0]!.fields.failedAttempts, 3);
      assert.equal(lines.filter((l) => l.msg.startsWith('spool cannot drain')).length, 1);
      const ready = await readyz();
      assert.equal(ready.status, 'ready');
      assert.equal(ready.spoolDrainErrors, 3, 'a counter since start');
      const facts = await readKeyed(TOPICS.paymentEvents, paymentId, 3);
      assert.deepEqual(facts.map((f) => (JSON.parse(f.value) as { captureId: string }).captureId).sort(), [
        'cap0',
        'cap1',
        'cap2',
      ]);
    } finally {
      await receiver.close();
      await spool.close();
      await drainPublisher.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('with Kafka unreachable it spools (fsync) and answers 202; after kill -9 and a restart with Kafka back, nothing is lost', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'paylink-spool-kill-'));
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const env = { WEBHOOK_PORT: String(port), WEBHOOK_SPOOL_DIR: dir, WEBHOOK_KAFKA_TIMEOUT_MS: '500' };
    const down = startPipelineProcess('webhook-receiver-kafka-down', 'src/ingest/webhook-receiver-main.ts', {
      ...env,
      KAFKA_BROKERS: '127.0.0.1:1',
    });
    const paymentId = uniqueId('whk');
    try {
      await down.ready;
      for (let i = 0; i < 5; i++) {
        const body = JSON.stringify(stripeEvent(paymentId, { captureId: `cap${i}` }));
        const res = await fetch(`http://127.0.0.1:${port}/webhooks/${acme.id}`, {
          method: 'POST',
          body,
          headers: {
            'content-type': 'application/json',
            'Stripe-Signature': signStripe(body, acme.secrets[0]!, Math.floor(Date.now() / 1000)),
          },
        });
        assert.equal(res.status, 202, await res.clone().text());
        assert.equal(((await res.json()) as { durable: string }).durable, 'spool');
      }
      assert.match(
        ((await (await fetch(`http://127.0.0.1:${port}/readyz`)).json()) as { status: string }).status,
        /degraded: kafka \(spooling\)/,
      );
    } finally {
      await down.kill9();
    }
    const back = startPipelineProcess('webhook-receiver-kafka-back', 'src/ingest/webhook-receiver-main.ts', env);
    try {
      await back.ready;
      const facts = await readKeyed(TOPICS.paymentEvents, paymentId, 5, 60_000);
      assert.deepEqual(facts.map((f) => (JSON.parse(f.value) as { captureId: string }).captureId).sort(), [
        'cap0',
        'cap1',
        'cap2',
        'cap3',
        'cap4',
      ]);
    } finally {
      await back.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('with Postgres unreachable it still answers 200 (vault journal, fsync) and says degraded; after kill -9 and a restart with Postgres back, every vault entry is there and decrypts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'paylink-vault-down-'));
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const env = {
      WEBHOOK_PORT: String(port),
      WEBHOOK_SPOOL_DIR: join(dir, 'spool'),
      VAULT_JOURNAL_DIR: join(dir, 'vault-journal'),
      WEBHOOK_WORKERS: '2', // two journals; the restart runs one worker, which must drain both
    };
    const down = startPipelineProcess('webhook-receiver-postgres-down', 'src/ingest/webhook-receiver-main.ts', {
      ...env,
      VAULT_DATABASE_URL: 'postgres://paylink_vault:paylink_vault@127.0.0.1:1/paylink',
    });
    const events = Array.from({ length: 6 }, (_, i) =>
      stripeEvent(uniqueId('whv'), {
        customer: {
          email: `${uniqueId('shopper')}@example.com`,
          name: `Jane ${uniqueId('n')}`,
          card: '4242 4242 4242 4242',
        },
        captureId: `cap${i}`,
      }),
    );
    const expected = new Map(events.flatMap((e) => tokenizer.tokenize(e).vault.map((v) => [v.token, v.original])));
    try {
      await down.ready;
      for (const event of events) {
        const body = JSON.stringify(event);
        const status = await postOnNewConnection(`http://127.0.0.1:${port}/webhooks/${acme.id}`, body, {
          'Stripe-Signature': signStripe(body, acme.secrets[0]!, Math.floor(Date.now() / 1000)),
        });
        assert.equal(status, 200);
      }
      // Workers share their status every 250 ms; the first failed drain marks the edge degraded.
      let ready: { status: string; vaultJournal?: number } = { status: '' };
      for (let i = 0; i < 100 && !/vault journal 6/.test(ready.status); i++) {
        ready = (await (await fetch(`http://127.0.0.1:${port}/readyz`)).json()) as typeof ready;
        if (!/vault journal 6/.test(ready.status)) await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(ready.status, /^degraded: postgres \(vault journal 6\)$/);
      assert.equal(ready.vaultJournal, 6);
    } finally {
      await down.kill9();
    }
    const vaultRole = createPool({ ...config, DATABASE_URL: config.VAULT_DATABASE_URL }, 1);
    const back = startPipelineProcess('webhook-receiver-postgres-back', 'src/ingest/webhook-receiver-main.ts', {
      ...env,
      WEBHOOK_WORKERS: '1',
    });
    try {
      await back.ready;
      const tokens = [...expected.keys()];
      let stored = 0;
      for (let i = 0; i < 300 && stored < tokens.length; i++) {
        const rows = await vaultRole.query<{ n: number }>(
          'select count(*)::int as n from vault.tokens where token = any($1)',
          [tokens],
        );
        stored = rows.rows[0]!.n;
        if (stored < tokens.length) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(stored, tokens.length, 'every journaled vault entry reached Postgres');
      for (const [token, original] of expected) {
        assert.equal(await vault.detokenize(token, { actor: 'test', purpose: 'verify vault drain' }), original);
      }
      const readyz = (await (await fetch(`http://127.0.0.1:${port}/readyz`)).json()) as { status: string };
      assert.doesNotMatch(readyz.status, /vault journal/);
    } finally {
      await back.stop();
      await vaultRole.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers 503 when the vault journal is full (Postgres down too long), so the partner retries', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'paylink-vault-full-'));
    const journalSpool = await openSpool({ dir: join(dir, 'journal'), maxBytes: 1000 }); // room for two requests
    const kafkaSpool = await openSpool({ dir: join(dir, 'spool'), maxBytes: 1024 * 1024 });
    const unreachable = openVaultLazily({ ...config, VAULT_DATABASE_URL: 'postgres://x:y@127.0.0.1:1/paylink' });
    const log = createLogger('test-edge-journal-full');
    const fullPublisher = testPublisher('webhook-test-full', log);
    const full = createWebhookReceiver({
      partners,
      publisher: fullPublisher,
      topics: TOPICS,
      spool: kafkaSpool,
      tokenizer,
      vault: unreachable,
      vaultJournal: createVaultJournal({ spool: journalSpool, keyring: vaultKeyring(config), vault: unreachable, log }),
      log,
      maxBodyBytes: 64 * 1024,
      kafkaTimeoutMs: 5000,
    });
    await new Promise<void>((r) => full.server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(full.server.address() as AddressInfo).port}/webhooks/${acme.id}`;
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        const body = JSON.stringify(stripeEvent(uniqueId('whf')));
        const res = await fetch(url, {
          method: 'POST',
          body,
          headers: {
            'content-type': 'application/json',
            'Stripe-Signature': signStripe(body, acme.secrets[0]!, Math.floor(Date.now() / 1000)),
          },
        });
        statuses.push(res.status);
        if (res.status === 503) assert.match(((await res.json()) as { error: string }).error, /vault journal is full/);
      }
      assert.deepEqual(statuses, [200, 200, 503, 503]);
    } finally {
      await full.close();
      await fullPublisher.close();
      await journalSpool.close();
      await kafkaSpool.close();
      await unreachable.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

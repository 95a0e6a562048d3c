import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { HEADERS } from '../../src/contracts/envelope';
import { errorCollectingLogger } from '../support/edge';
import { STRIPE_SIGNATURE_HEADER, signAdyen, signStripe } from '../../src/ingest/signatures';
import { parsePartners } from '../../src/ingest/webhook-receiver';
import { stripeSignatureSpellings } from '../../src/ops/edge-fuzz';
import { type InProcessEdge, startEdgeInProcess } from '../../src/ops/edge-in-process';
import { ensureBucket, createS3Client } from '../../src/stores/s3';
import type { TopicSet } from '../../src/streams/kafka';
import { captureObject, capturedEvent, nested } from '../support/events';
import { type PrivateTopics, privateTopics } from '../support/kafka';
import { config, requireServices } from '../support/stack';

// The webhook edge's request-level hardening (issue 11: bounded work, 4xx never 5xx, replay by meaning,
// Content-Type), driven over real HTTP, through the publish step on a real broker and the real vault. The
// receiver writes to topics of this suite's own, read back read-committed: what it committed, and only that.
// The request checks on their own: test/unit/webhook-hostile-input.test.ts.

const partners = parsePartners(config.WEBHOOK_PARTNERS);
const acme = partners.find((p) => p.scheme === 'stripe')!;
const adyen = partners.find((p) => p.scheme === 'adyen')!;

interface Produced {
  topic: string;
  key: string | null;
  value: unknown;
  headers: Record<string, string>;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** One raw HTTP request: fetch would refuse some of the paths a hostile sender writes (`/webhooks/%`). */
function post(port: number, path: string, body: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const JSON_TYPE = { 'content-type': 'application/json' };
const now = (): number => Math.floor(Date.now() / 1000);

/** A capture; `extra` overrides or adds top-level fields. */
function stripeEvent(paymentId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...capturedEvent(`evt_${paymentId}`, now(), captureObject(paymentId)), ...extra };
}

function adyenItem(paymentId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const item: Record<string, unknown> = {
    pspReference: `psp-${paymentId}`,
    merchantAccountCode: 'm-2',
    merchantReference: paymentId,
    amount: { value: 5000, currency: 'USD' },
    eventCode: 'CAPTURE',
    eventDate: '2001-02-03T04:05:06Z',
    success: 'true',
    ...extra,
  };
  item['additionalData'] = {
    ...(extra['additionalData'] as object),
    hmacSignature: signAdyen(item, adyen.secrets[0]!),
  };
  return item;
}

const adyenBody = (...items: Record<string, unknown>[]): string =>
  JSON.stringify({
    live: 'false',
    notificationItems: items.map((NotificationRequestItem) => ({ NotificationRequestItem })),
  });

describe('webhook edge under hostile input', () => {
  let edge: InProcessEdge;
  let port: number;
  let kafka: PrivateTopics;
  let topics: TopicSet;
  const { log, errors } = errorCollectingLogger();
  const signedStripe = (body: string, t = now()): Record<string, string> => ({
    ...JSON_TYPE,
    [STRIPE_SIGNATURE_HEADER]: signStripe(body, acme.secrets[0]!, t),
  });
  /**
   * Everything accepted so far is on the topics and read: the spool is empty (on a busy machine a request
   * may pass its Kafka deadline and be spooled, then drained into a later case's window), then caught up.
   */
  const settled = async (): Promise<void> => {
    const deadline = Date.now() + 30_000;
    while (edge.receiver.status().spooled > 0) {
      assert.ok(Date.now() < deadline, `the spool still holds ${edge.receiver.status().spooled} records after 30 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await kafka.caughtUp();
  };
  /** Where the suite's topics end now (everything committed so far read): a case's records come after. */
  const mark = async (): Promise<number> => {
    await settled();
    return kafka.records.length;
  };
  // Read committed, after everything committed so far; raw records first, as each event's transaction holds them.
  const since = async (from: number): Promise<Produced[]> => {
    await settled();
    const rank = (topic: string): number =>
      [topics.rawWebhooks, topics.paymentEvents, topics.quarantine].indexOf(topic);
    return kafka.records
      .slice(from)
      .map((m) => ({
        topic: m.topic,
        key: m.key,
        value: JSON.parse(m.value.toString()) as unknown,
        headers: { ...m.headers },
      }))
      .sort((a, b) => rank(a.topic) - rank(b.topic));
  };

  before(async () => {
    await requireServices('kafka', 's3', 'postgres');
    const s3 = createS3Client(config);
    await ensureBucket(s3, config.S3_BUCKET);
    s3.destroy();
    kafka = await privateTopics('hostile-input');
    topics = kafka.topics;
    edge = await startEdgeInProcess(config, {
      name: 'hostile-input',
      topics,
      partners,
      log,
      spoolMaxBytes: 8 * 1024 * 1024,
      maxBodyBytes: 512 * 1024,
      kafkaTimeoutMs: 5000,
    });
    port = Number(new URL(edge.base).port);
  });
  after(async () => {
    await edge?.close();
    await kafka?.drop();
    assert.deepEqual(errors, [], 'no request was answered 5xx');
  });

  describe('4xx, never 5xx, for bad input', () => {
    it('answers 400 to a partner path that is not valid percent-encoding, before any signature', async () => {
      for (const path of ['/webhooks/%', '/webhooks/%E0%A4%A', '/webhooks/acme%']) {
        const res = await post(port, path, '{}', JSON_TYPE);
        assert.equal(res.status, 400, path);
        assert.match(String(res.body['error']), /is not valid percent-encoding/, path);
      }
    });

    it('quarantines a signed body of null (authentic, breaks the contract) with the reason', async () => {
      const from = await mark();
      const res = await post(port, `/webhooks/${acme.id}`, 'null', signedStripe('null'));
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.deepEqual(res.body, { accepted: 1, quarantined: 1, durable: 'kafka' });
      const [raw, quarantine] = await since(from);
      assert.equal(raw!.topic, topics.rawWebhooks);
      assert.equal(raw!.value, null);
      assert.equal(quarantine!.topic, topics.quarantine);
      assert.match(quarantine!.headers[HEADERS.quarantineReason]!, /expected object/);
      assert.match(quarantine!.headers[HEADERS.idempotencyKey]!, /^webhook:acme-pay:unidentified-[0-9a-f]{32}$/);
    });

    it('quarantines a signed event whose `created` is past the date range, naming the field', async () => {
      for (const created of [1e15, 8.64e12 + 1, 253_402_300_800]) {
        const from = await mark();
        const body = JSON.stringify(stripeEvent(`far-${created}`, { created }));
        const res = await post(port, `/webhooks/${acme.id}`, body, signedStripe(body));
        assert.equal(res.status, 202, `${created}: ${JSON.stringify(res.body)}`);
        const quarantine = (await since(from)).find((r) => r.topic === topics.quarantine);
        assert.match(quarantine!.headers[HEADERS.quarantineReason]!, /created/);
      }
    });

    it('answers 400 to a body nested 5,000 deep, signed or not, through an unsigned Adyen field too', async () => {
      const from = await mark();
      const deep = nested(5000, '"jane@example.com"');
      const stripeBody = JSON.stringify(stripeEvent('deep')).replace('"paymentId"', `"extra":${deep},"paymentId"`);
      const signed = await post(port, `/webhooks/${acme.id}`, stripeBody, signedStripe(stripeBody));
      assert.equal(signed.status, 400);
      assert.match(String(signed.body['error']), /nests more than 32 arrays\/objects deep \(at byte \d+\)/);

      const item = adyenItem('deep-adyen');
      const adyenText = adyenBody(item).replace('"hmacSignature"', `"deep":${deep},"hmacSignature"`);
      const res = await post(port, `/webhooks/${adyen.id}`, adyenText, JSON_TYPE);
      assert.equal(res.status, 400);
      assert.match(String(res.body['error']), /nests more than 32/);
      assert.deepEqual(await since(from), [], 'nothing produced');
    });

    it('answers 413 to a signed body holding more PII values than a request may tokenize', async () => {
      const from = await mark();
      const note = Array.from({ length: 36_000 }, (_, i) => `s${i.toString(36)}@x.io`).join(' ');
      const body = JSON.stringify(stripeEvent('many-emails', { note }));
      const res = await post(port, `/webhooks/${acme.id}`, body, signedStripe(body));
      assert.equal(res.status, 413);
      assert.match(
        String(res.body['error']),
        /more than 1000 PII values to tokenize \(value 1001 at \$\[0\]\.item\.note\)/,
      );
      assert.deepEqual(await since(from), []);
    });
  });

  describe('Content-Type', () => {
    it('answers 415 to what is not JSON, and takes JSON with any spelling of a UTF-8 charset', async () => {
      const body = JSON.stringify(stripeEvent('ctype'));
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
        const res = await post(port, `/webhooks/${acme.id}`, body, { ...signedStripe(body), 'content-type': type });
        assert.equal(res.status, 415, type);
        assert.match(String(res.body['error']), /is not application\/json/);
      }
      const latin1 = await post(port, `/webhooks/${acme.id}`, body, {
        ...signedStripe(body),
        'content-type': 'application/json; charset=latin1',
      });
      assert.equal(latin1.status, 415);
      for (const [i, type] of ['application/json; charset=utf-8', 'Application/JSON;Charset="UTF-8"'].entries()) {
        const ok = JSON.stringify(stripeEvent(`ctype-ok-${i}`));
        const res = await post(port, `/webhooks/${acme.id}`, ok, { ...signedStripe(ok), 'content-type': type });
        assert.equal(res.status, 200, `${type}: ${JSON.stringify(res.body)}`);
      }
    });
  });

  describe('replay by meaning', () => {
    it('refuses one Stripe-style signature however its header is spelled', async () => {
      const body = JSON.stringify(stripeEvent('respelled'));
      const t = now();
      const header = signStripe(body, acme.secrets[0]!, t);
      const first = await post(port, `/webhooks/${acme.id}`, body, { ...JSON_TYPE, [STRIPE_SIGNATURE_HEADER]: header });
      assert.equal(first.status, 200);
      for (const spelling of [header, ...stripeSignatureSpellings(header)]) {
        const res = await post(port, `/webhooks/${acme.id}`, body, {
          ...JSON_TYPE,
          [STRIPE_SIGNATURE_HEADER]: spelling,
        });
        assert.equal(res.status, 401, spelling);
        assert.match(String(res.body['error']), /^replayed/, spelling);
      }
      // The partner's retry is signed anew at another second: a new signature, accepted.
      const retry = await post(port, `/webhooks/${acme.id}`, body, signedStripe(body, t - 1));
      assert.equal(retry.status, 200);
    });

    it('acknowledges an Adyen item it already accepted without producing it again, padding or not', async () => {
      const item = adyenItem('adyen-replay');
      const from = await mark();
      const first = await post(port, `/webhooks/${adyen.id}`, adyenBody(item), JSON_TYPE);
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.equal((await since(from)).length, 2, 'raw + fact');

      const signature = (item['additionalData'] as { hmacSignature: string }).hmacSignature;
      const unpadded = { ...item, additionalData: { hmacSignature: signature.replace(/=+$/, '') } };
      const respelled = { ...item, eventDate: '2030-01-01T00:00:00Z', additionalData: { hmacSignature: signature } };
      for (const again of [item, unpadded, respelled]) {
        const res = await post(port, `/webhooks/${adyen.id}`, adyenBody(again), JSON_TYPE);
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, { accepted: 0, quarantined: 0, replayed: 1 });
      }
      const twiceInOne = adyenItem('adyen-twice');
      const both = await post(port, `/webhooks/${adyen.id}`, adyenBody(twiceInOne, twiceInOne), JSON_TYPE);
      assert.deepEqual(both.body, { accepted: 1, quarantined: 0, durable: 'kafka', replayed: 1 });
      assert.equal((await since(from)).length, 4, 'each item once: raw + fact each');
    });

    it('accepts a genuine Adyen signature sent without base64 padding', async () => {
      const item = adyenItem('adyen-unpadded');
      const signature = (item['additionalData'] as { hmacSignature: string }).hmacSignature;
      assert.match(signature, /=$/);
      item['additionalData'] = { hmacSignature: signature.replace(/=+$/, '') };
      const res = await post(port, `/webhooks/${adyen.id}`, adyenBody(item), JSON_TYPE);
      assert.equal(res.status, 200, JSON.stringify(res.body));
    });
  });

  describe('facts from signed data only', () => {
    it('dates an Adyen fact by its receipt, not by the unsigned eventDate, and ignores unsigned additionalData', async () => {
      const from = await mark();
      const before = Date.now();
      const item = adyenItem('adyen-dated', {
        additionalData: { amountMinor: 1, currency: 'EUR', merchantReference: 'x' },
      });
      const res = await post(port, `/webhooks/${adyen.id}`, adyenBody(item), JSON_TYPE);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const fact = (await since(from)).find((r) => r.topic === topics.paymentEvents)!.value as Record<string, unknown>;
      assert.notEqual(fact['occurredAt'], '2001-02-03T04:05:06Z');
      const occurred = Date.parse(String(fact['occurredAt']));
      assert.ok(occurred >= before - 1000 && occurred <= Date.now(), String(fact['occurredAt']));
      assert.equal(fact['sourceSequence'], occurred);
      assert.equal(fact['paymentId'], 'adyen-dated');
      assert.equal(fact['amountMinor'], 5000);
      assert.equal(fact['currency'], 'USD');
    });

    it('keeps a top-level "__proto__" key as data: no fact from inherited fields, the raw copy is what was sent', async () => {
      const from = await mark();
      const inner = JSON.stringify(stripeEvent('proto'));
      const body = `{"__proto__":${inner},"constructor":{"prototype":{"polluted":true}}}`;
      const res = await post(port, `/webhooks/${acme.id}`, body, signedStripe(body));
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.deepEqual(res.body, { accepted: 1, quarantined: 1, durable: 'kafka' });
      const produced = await since(from);
      assert.deepEqual(
        produced.map((r) => r.topic),
        [topics.rawWebhooks, topics.quarantine],
        'no fact',
      );
      const raw = produced[0]!.value as Record<string, unknown>;
      assert.deepEqual(Object.keys(raw), ['__proto__', 'constructor']);
      assert.equal(Object.getPrototypeOf(raw), Object.prototype);
      assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    });
  });

  describe('quarantine keys', () => {
    it('gives id-less events distinct keys, and a retried one the same key', async () => {
      const keys: string[] = [];
      const bodies = ['{"type":"payment.captured"}', '{"type":"payment.refunded"}', '{"type":"payment.captured"}'];
      for (const [i, body] of bodies.entries()) {
        const from = await mark();
        const res = await post(port, `/webhooks/${acme.id}`, body, signedStripe(body, now() - i));
        assert.equal(res.status, 202, JSON.stringify(res.body));
        keys.push((await since(from)).find((r) => r.topic === topics.quarantine)!.headers[HEADERS.idempotencyKey]!);
      }
      for (const key of keys) assert.match(key, /^webhook:acme-pay:unidentified-[0-9a-f]{32}$/);
      assert.notEqual(keys[0], keys[1]);
      assert.equal(keys[0], keys[2], 'the same event retried keeps its key');

      const from = await mark();
      const item = adyenItem('adyen-no-psp');
      delete item['pspReference'];
      item['additionalData'] = { hmacSignature: signAdyen(item, adyen.secrets[0]!) };
      const res = await post(port, `/webhooks/${adyen.id}`, adyenBody(item), JSON_TYPE);
      assert.equal(res.status, 202, JSON.stringify(res.body));
      const q = (await since(from)).find((r) => r.topic === topics.quarantine)!;
      assert.match(q.headers[HEADERS.idempotencyKey]!, /^webhook:adyen-us:unidentified-[0-9a-f]{32}$/);
    });
  });
});

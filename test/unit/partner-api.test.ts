import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { retryAfterMs } from '../../src/ingest/partner-api/poll-activities';
import { loadConfig } from '../../src/config';
import { parsePartnerApis, partnerSettlementToFact } from '../../src/contracts/partner-api';
import type { FactOf, PaymentEvent } from '../../src/contracts/payment-event';
import { scanValue } from '../../src/quality/pii-scanner';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { splitByChannel } from '../../src/simulator/channels';
import {
  type PartnerApiSimulator,
  createPartnerApiSimulator,
  partnerRecordId,
  toPartnerSettlement,
} from '../../src/simulator/partner-api';
import { simulatePayments } from '../../src/simulator/payments';

const tokenizer = tokenizerFromConfig(loadConfig({})); // the public dev key, whatever the environment says

const settledFacts = (payments: number, seed: number, duplicateRate = 0): PaymentEvent[] =>
  splitByChannel(simulatePayments({ payments, seed, duplicateRate, runId: `pa${seed}` }).deliveries)['partner-api'];

const fact = settledFacts(3, 5)[0] as FactOf<'settled'>;
const record = toPartnerSettlement(fact);
const ccy = fact.currency;
const otherCcy = ccy === 'USD' ? 'EUR' : 'USD';

const reasonOf = (raw: unknown, region?: string): string => {
  const r = partnerSettlementToFact('acme-pay', region, raw);
  return r.ok ? '' : r.reason;
};

describe('partner settlement record → settled fact', () => {
  it('maps every simulated settlement back to its fact (money, ids, time), keyed by partner and record id', () => {
    const facts = settledFacts(40, 9);
    assert.ok(facts.length > 20);
    for (const f of facts) {
      const mapped = partnerSettlementToFact('acme-pay', undefined, toPartnerSettlement(f as FactOf<'settled'>));
      assert.ok(mapped.ok, mapped.ok ? '' : mapped.reason);
      const { idempotencyKey, source, sourceSequence, ...rest } = mapped.value;
      const { idempotencyKey: _k, source: _s, sourceSequence: _q, ...truth } = f;
      assert.deepEqual(rest, truth);
      assert.equal(idempotencyKey, `partner:acme-pay:${partnerRecordId(f)}`);
      assert.equal(source, 'partner');
      assert.equal(sourceSequence, Date.parse(f.occurredAt));
    }
  });

  it('a redelivered settlement is a second record with the same id, so the same idempotency key', () => {
    const facts = settledFacts(60, 11, 0.5);
    const ids = facts.map(partnerRecordId);
    assert.ok(new Set(ids).size < ids.length, 'the seed produced no redelivery');
    for (const f of facts) assert.equal(toPartnerSettlement(f as FactOf<'settled'>).id, partnerRecordId(f));
  });

  it('maps the tokenized record to the same fact, and the tokenized record holds no IBAN or holder name', () => {
    const tokenized = tokenizer.tokenize(record);
    assert.deepEqual(scanValue(tokenized.payload), []);
    assert.ok(
      scanValue(record).some((f) => f.kind === 'iban'),
      'the simulator sends a real-looking IBAN',
    );
    const account = (tokenized.payload as { payout_account: { iban: string; holder_name: string } }).payout_account;
    assert.match(account.iban, /^tok_iban_1_/);
    assert.match(account.holder_name, /^tok_name_1_/);
    assert.deepEqual(tokenized.vault.map((v) => v.kind).sort(), ['iban', 'name']);
    assert.deepEqual(
      partnerSettlementToFact('acme-pay', undefined, tokenized.payload),
      partnerSettlementToFact('acme-pay', undefined, record),
    );
  });

  it('uses the partner region when the record has none; no region at all is a reason', () => {
    const { region: _r, ...noRegion } = record;
    const mapped = partnerSettlementToFact('acme-pay', 'us-east', noRegion);
    assert.ok(mapped.ok && mapped.value.region === 'us-east');
    assert.match(reasonOf(noRegion), /^region: missing/);
  });

  it('names the failing field of an invalid record (quarantine reasons)', () => {
    const cases: [string, unknown, RegExp][] = [
      [
        'float money',
        { ...record, gross: { value: 19.99, currency: ccy } },
        /^gross\.value: amount must be integer minor units/,
      ],
      ['string money', { ...record, fee: { value: '10', currency: ccy } }, /^fee\.value: /],
      [
        'mixed currencies',
        { ...record, fee: { value: 1, currency: otherCcy } },
        /^fee\.currency: fee currency differs/,
      ],
      ['bad currency', { ...record, gross: { value: 100, currency: ccy.toLowerCase() } }, /^gross\.currency: ISO 4217/],
      [
        'fee above gross',
        { ...record, fee: { value: fact.amountMinor + 1, currency: ccy } },
        /^fee\.value: feeMinor exceeds amountMinor/,
      ],
      [
        'zero gross',
        { ...record, gross: { value: 0, currency: ccy }, fee: { value: 0, currency: ccy } },
        /^gross\.value: /,
      ],
      ['no payment', { ...record, payment_reference: undefined }, /^payment_reference: /],
      ['bad payment id', { ...record, payment_reference: 'p 1/2' }, /^payment_reference: id: /],
      ['no id', { ...record, id: '' }, /^id: /],
      ['bad time', { ...record, settled_at: 'yesterday' }, /^settled_at: /],
      ['not an object', 'settlement', /^\(record\): /],
    ];
    for (const [name, raw, pattern] of cases) assert.match(reasonOf(raw), pattern, name);
  });
});

describe('PARTNER_APIS', () => {
  it('parses partners and names the failing entry without showing the token', () => {
    assert.deepEqual(parsePartnerApis('[{"id":"acme-pay","url":"http://127.0.0.1:8094","token":"ptk_secret_1"}]'), [
      { id: 'acme-pay', url: 'http://127.0.0.1:8094', token: 'ptk_secret_1' },
    ]);
    assert.throws(
      () => parsePartnerApis('[{"id":"Acme Pay","url":"x","token":"short"}]'),
      (err: Error) => {
        assert.match(err.message, /0\.id: /);
        assert.match(err.message, /0\.url: /);
        assert.doesNotMatch(err.message, /short/);
        return true;
      },
    );
    assert.throws(
      () =>
        parsePartnerApis(
          '[{"id":"a","url":"http://a","token":"12345678"},{"id":"a","url":"http://b","token":"12345678"}]',
        ),
      /"a" is listed twice/,
    );
    assert.throws(() => parsePartnerApis('{'), /malformed JSON/);
  });
});

describe('Retry-After', () => {
  it('reads seconds or an HTTP date, at least one second', () => {
    assert.equal(retryAfterMs('3'), 3000);
    assert.equal(retryAfterMs('0'), 1000);
    assert.equal(retryAfterMs(null), 1000);
    assert.equal(retryAfterMs('garbage'), 1000);
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(retryAfterMs('Thu, 01 Jan 2026 00:00:05 GMT', now), 5000);
  });
});

describe('simulated partner settlement API', () => {
  let sim: PartnerApiSimulator;
  let base: string;
  const get = (query: string, token = 'ptk_unit_test'): Promise<Response> =>
    fetch(`${base}/v1/settlements?${query}`, { headers: { authorization: `Bearer ${token}` } });

  before(async () => {
    sim = createPartnerApiSimulator({
      tokens: ['ptk_unit_test'],
      rateLimit: { burst: 3, perSecond: 0.01 },
    });
    base = await sim.listen(0);
  });
  after(() => sim.close());

  it('pages through an append-only feed with an opaque cursor that never ends, and throttles per token', async () => {
    const facts = settledFacts(10, 21);
    sim.publish(facts);
    type Page = { data: { id: string }[]; next_cursor: string; has_more: boolean };
    const first = (await (await get('limit=4')).json()) as Page;
    assert.equal(first.data.length, 4);
    assert.equal(first.has_more, true);
    assert.equal(sim.cursorOffset(first.next_cursor), 4);
    const rest = (await (await get(`cursor=${first.next_cursor}&limit=500`)).json()) as Page;
    assert.equal(rest.has_more, false);
    assert.deepEqual(
      [...first.data, ...rest.data].map((r) => r.id),
      facts.map(partnerRecordId),
    );
    // Caught up: the cursor stays where it is; later records appear behind it.
    const caughtUp = (await (await get(`cursor=${rest.next_cursor}&limit=10`)).json()) as Page;
    assert.deepEqual(caughtUp, { data: [], next_cursor: rest.next_cursor, has_more: false });
    const throttled = await get(`cursor=${rest.next_cursor}&limit=10`);
    assert.equal(throttled.status, 429, 'a burst of 3 allows 3 requests');
    assert.equal(throttled.headers.get('retry-after'), '100', '1 token at 0.01/s');
    assert.equal(sim.counters.throttled, 1);
    assert.equal((await get('limit=1', 'ptk_wrong')).status, 401);
  });

  it('fails the next N requests with 500 when told to; a cursor it never issued is a 400', async () => {
    const fresh = createPartnerApiSimulator({ tokens: ['ptk_unit_test'] });
    const url = await fresh.listen(0);
    try {
      fresh.failNext(2);
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        statuses.push(
          (await fetch(`${url}/v1/settlements`, { headers: { authorization: 'Bearer ptk_unit_test' } })).status,
        );
      }
      assert.deepEqual(statuses, [500, 500, 200]);
      const bad = await fetch(`${url}/v1/settlements?cursor=c1_garbage`, {
        headers: { authorization: 'Bearer ptk_unit_test' },
      });
      assert.equal(bad.status, 400);
    } finally {
      await fresh.close();
    }
  });
});

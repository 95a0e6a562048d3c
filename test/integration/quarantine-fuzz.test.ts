import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { HEADERS } from '../../src/contracts/envelope';
import { createLogger, errorMessage } from '../../src/logger';
import { type QuarantineCounters, quarantineBatches } from '../../src/quality/quarantine-consumer';
import { readClaimedRaw } from '../../src/stores/claim-checks';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { createS3Client, ensureBucket } from '../../src/stores/s3';
import { startConsumer } from '../../src/streams/consumer-runner';
import { consumerGroupLag, createConsumer, createKafka, createProducer } from '../../src/streams/kafka';
import { CLAIM_CHECK_HEADER } from '../../src/streams/publish';
import { type Random, seededRandom } from '../../src/simulator/random';
import { testKafka } from '../support/kafka';
import { waitFor } from '../support/pipeline';
import { config, requireServices, uniqueId } from '../support/stack';

// The quarantine consumer under a seeded stream of hostile messages (real Kafka, Postgres and S3): what
// reaches the quarantine topic is by definition what something refused, so its fields are whatever a
// sender managed to put there. NUL bytes and lone surrogates, 100 KB names, amounts nested 20,000 deep or
// past 2^53, dates Postgres cannot hold, trace ids that break the ledger's check, 10 KB idempotency keys,
// 200 headers, claim checks to missing objects, to objects that are not ours, to nothing at all. Invariants:
// the group catches up (no message stalls a partition), every message is one item, an item whose money
// is readable holds exactly that money in one balanced suspense entry, and a full redelivery changes nothing.

const SEED = Number(process.env.QUARANTINE_FUZZ_SEED ?? 20261130);
const MESSAGES = 240;
const PARTITIONS = 3;
const FUZZ_ID = 'x-fuzz-id';

interface Expectation {
  fuzzId: string;
  /** The suspense entry the item must open: its amount, currency and which side suspense is on. */
  money: { amountMinor: number; currency: string; suspenseSide: 'credit' | 'debit' } | null;
}

interface Planned {
  key: string | Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
  expect: Expectation;
}

const nested = (depth: number, leaf: string): string => '['.repeat(depth) + leaf + ']'.repeat(depth);

describe('quarantine consumer under hostile messages (seeded fuzz)', { timeout: 240_000 }, () => {
  const runId = uniqueId('qfuzz').replace(/[^A-Za-z0-9-]/g, '-');
  const topic = `paylink.test.${runId}`;
  const group = `${runId}-quarantine`;
  const bucket = `qfuzz-${Date.now().toString(36)}`;
  const pool = createPool(config, 4);
  const kafka = createKafka(config, 'quarantine-fuzz-test');
  const admin = testKafka('quarantine-fuzz-admin').admin(); // kafkajs' own: topics and offsets reset
  const producer = createProducer(kafka);
  const s3 = createS3Client(config);
  const planned: Planned[] = [];

  /** One claim-check object of this run; answers its URI. */
  const putObject = async (key: string, body: string): Promise<string> => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    return `s3://${bucket}/${key}`;
  };

  /** The seeded plan: each message hostile in one or two ways, a tenth of them sent twice, byte for byte. */
  async function plan(r: Random): Promise<void> {
    const kinds = [
      'valid',
      'nul-merchant',
      'huge-merchant',
      'lone-surrogate',
      'deep-amount',
      'past-2^53',
      'amount-as-text',
      'float-amount',
      'negative',
      'bad-currency',
      'bad-trace-id',
      'huge-idempotency-key',
      'bad-received-at',
      'claim-missing',
      'claim-bad-uri',
      'claim-not-json',
      'claim-no-records',
      'claim-valid',
      'invalid-utf8',
      'not-json',
      'tombstone',
      'proto-keys',
      'many-headers',
      'refund',
      'huge-value',
    ] as const;
    for (let i = 0; i < MESSAGES; i++) {
      const kind = i < kinds.length ? kinds[i]! : r.pick(kinds);
      const fuzzId = `${runId}-${i}`;
      const paymentId = `${runId}-p${i}`;
      const amountMinor = r.int(1, 5_000_000);
      const currency = r.pick(['USD', 'EUR', 'JPY']);
      const headers: Record<string, string> = {
        [FUZZ_ID]: fuzzId,
        [HEADERS.idempotencyKey]: `${fuzzId}:k`,
        [HEADERS.source]: 'webhook',
        [HEADERS.quarantineReason]: `fuzz ${kind}`,
        [HEADERS.receivedAt]: new Date().toISOString(),
      };
      const body: Record<string, unknown> = {
        paymentId,
        merchantId: `m-${r.int(1, 9)}`,
        type: 'captured',
        amountMinor,
        currency,
      };
      let money: Expectation['money'] = { amountMinor, currency, suspenseSide: 'credit' };
      let value: Buffer | null = null;
      let key: string | Buffer | null = r.chance(0.5) ? paymentId : null;
      switch (kind) {
        case 'valid':
          break;
        case 'nul-merchant':
          body.merchantId = `m\u0000${'x'.repeat(r.int(0, 10))}`;
          headers[HEADERS.quarantineReason] = 'reason with a NUL \u0000 inside';
          break;
        case 'huge-merchant':
          body.merchantId = 'm'.repeat(100_000);
          body.type = 't'.repeat(5_000);
          break;
        case 'lone-surrogate':
          value = Buffer.from(JSON.stringify(body).replace('"m-', '"\\ud800m-'));
          key = Buffer.from([0x00, 0xff, 0xfe, 0x41]);
          break;
        case 'deep-amount':
          value = Buffer.from(
            JSON.stringify({ ...body, amountMinor: 0 }).replace(
              '"amountMinor":0',
              `"amountMinor":${nested(20_000, '1')}`,
            ),
          );
          money = null;
          break;
        case 'past-2^53':
          body.amountMinor = r.chance(0.5) ? 1e30 : 2 ** 53 + 2;
          money = null;
          break;
        case 'amount-as-text':
          body.amountMinor = String(amountMinor);
          money = null;
          break;
        case 'float-amount':
          body.amountMinor = amountMinor + 0.5;
          money = null;
          break;
        case 'negative':
          body.amountMinor = -amountMinor;
          money = null;
          break;
        case 'bad-currency':
          body.currency = r.pick(['usd', '€€€', 'US\u0000', 'USDT', '']);
          money = null;
          break;
        case 'bad-trace-id':
          headers[HEADERS.traceId] = r.pick(['zz', 'A'.repeat(32), `${'0'.repeat(31)}\u0000`, 'f'.repeat(5_000)]);
          break;
        case 'huge-idempotency-key':
          headers[HEADERS.idempotencyKey] = `${fuzzId}:\u0000${'k'.repeat(10_000)}`;
          break;
        case 'bad-received-at':
          headers[HEADERS.receivedAt] = r.pick([
            '+275760-09-13T00:00:00.000Z',
            '0000-01-01T00:00:00Z',
            '2026-13-45T99:99:99Z',
            'yesterday',
            '1969-12-31T23:59:59Z',
          ]);
          break;
        case 'claim-missing':
          headers[CLAIM_CHECK_HEADER] = `s3://${bucket}/missing/${fuzzId}.json`;
          money = null;
          break;
        case 'claim-bad-uri':
          headers[CLAIM_CHECK_HEADER] = r.pick([
            'http://example.invalid/x',
            's3://',
            `s3://${'b'.repeat(5_000)}/k`,
            's3://no-such-bucket-qfuzz/k',
          ]);
          money = null;
          break;
        case 'claim-not-json':
          headers[CLAIM_CHECK_HEADER] = await putObject(`not-json/${fuzzId}`, '\u0000not json{');
          money = null;
          break;
        case 'claim-no-records':
          headers[CLAIM_CHECK_HEADER] = await putObject(
            `no-records/${fuzzId}`,
            r.pick(['{"records":[]}', '{"records":[{"value":5}]}', 'null', '[]']),
          );
          money = null;
          break;
        case 'claim-valid':
          headers[CLAIM_CHECK_HEADER] = await putObject(
            `valid/${fuzzId}`,
            JSON.stringify({ records: [{ topic: 'raw', key: paymentId, headers: {}, value: JSON.stringify(body) }] }),
          );
          break;
        case 'invalid-utf8':
          value = Buffer.concat([
            Buffer.from(JSON.stringify(body).slice(0, -1)),
            Buffer.from([0x2c, 0x22, 0xff, 0x00, 0xc3, 0x22, 0x3a, 0x31, 0x7d]),
          ]);
          money = null; // not JSON once the bytes are decoded: no money can be read
          break;
        case 'not-json':
          value = Buffer.from(Array.from({ length: r.int(0, 2_000) }, () => r.int(0, 255)));
          money = null;
          break;
        case 'tombstone':
          money = null;
          break;
        case 'proto-keys':
          value = Buffer.from(
            `{"__proto__":{"amountMinor":7,"currency":"USD"},"constructor":{"prototype":{"x":1}},"paymentId":"${paymentId}","type":"captured"}`,
          );
          money = null; // an own __proto__ key is a key like any other: no amountMinor at the top
          break;
        case 'many-headers':
          for (let h = 0; h < 200; h++) headers[`x-h${h}-${'n'.repeat(r.int(0, 300))}`] = 'v'.repeat(r.int(0, 2_000));
          break;
        case 'refund':
          body.type = 'refunded';
          money = { amountMinor, currency, suspenseSide: 'debit' };
          break;
        case 'huge-value':
          body.padding = Array.from({ length: 800 }, (_, j) => ({ j, s: 'p'.repeat(1_000) }));
          break;
      }
      if (kind !== 'tombstone' && value === null && !(CLAIM_CHECK_HEADER in headers))
        value = Buffer.from(JSON.stringify(body));
      planned.push({ key, value, headers, expect: { fuzzId, money } });
      // A tenth go twice, byte for byte (an edge that quarantined the same event again): one item.
      if (r.chance(0.1)) planned.push({ key, value, headers, expect: { fuzzId, money } });
    }
  }

  before(async () => {
    await requireServices('kafka', 'postgres', 's3');
    await migrateAsOwner(config);
    await ensureBucket(s3, bucket);
    await admin.connect();
    await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: config.KAFKA_REPLICATION_FACTOR }],
      waitForLeaders: true,
    });
    await producer.connect();
    await plan(seededRandom(SEED));
    // One at a time: two of the ~800 KB values in one partition's batch would pass the broker's 1 MB limit.
    for (const p of planned) {
      await producer.send({ topic, acks: -1, messages: [{ key: p.key, value: p.value, headers: p.headers }] });
    }
  });

  after(async () => {
    await producer.disconnect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
    await pool.end();
  });

  /** Runs the quarantine consumer in its group until it has read everything; answers its counters. */
  async function consumeAll(what: string): Promise<QuarantineCounters> {
    const log = createLogger('quarantine-fuzz');
    const batches = quarantineBatches({ pool, readClaimedRaw: (uri) => readClaimedRaw(s3, uri), log });
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    const running = await startConsumer({
      consumer: createConsumer(kafka, group),
      topics: [topic],
      handle: batches.handle,
      log,
      stop: stopped,
    });
    let crashed: unknown;
    running.done.catch((err: unknown) => (crashed = err));
    try {
      await waitFor(
        `${what}: the quarantine group to read all ${planned.length} messages`,
        Date.now() + 120_000,
        async () => {
          const lag = await consumerGroupLag(admin, group, topic);
          return lag === 0 || `lag ${lag}, counters ${JSON.stringify(batches.counters)}`;
        },
        {
          guard: () => {
            if (crashed) throw new Error(`the quarantine consumer crashed: ${errorMessage(crashed)}`);
          },
        },
      );
    } finally {
      stop();
      await running.done.catch(() => undefined);
    }
    return batches.counters;
  }

  it('reads every hostile message without stalling; one item each; readable money held exactly once', async () => {
    const first = await consumeAll('first pass');
    const distinct = new Set(planned.map((p) => p.expect.fuzzId)).size;
    assert.equal(first.recorded, distinct, `items recorded: ${JSON.stringify(first)}`);
    assert.equal(first.alreadyRecorded, planned.length - distinct, 'a byte-for-byte resend is the same item');
    assert.ok(first.claimChecksUnreadable > 0, 'the plan has unreadable claim checks');

    const rows = await pool.query<{
      fuzz_id: string;
      n: number;
      suspense_posting_key: string | null;
      amount_status: string;
    }>(
      `select record_headers->>$2 as fuzz_id, count(*)::int as n, min(suspense_posting_key) as suspense_posting_key,
              min(amount_status) as amount_status
         from quality.quarantine where read_topic = $1 group by 1`,
      [topic, FUZZ_ID],
    );
    const byId = new Map(rows.rows.map((r) => [r.fuzz_id, r]));
    const expected = new Map(planned.map((p) => [p.expect.fuzzId, p.expect]));
    assert.equal(byId.size, expected.size, 'one item per distinct message');
    for (const [fuzzId, e] of expected) {
      const row = byId.get(fuzzId);
      assert.ok(row, `message ${fuzzId} has no item`);
      assert.equal(row.n, 1, `message ${fuzzId} recorded ${row.n} times`);
      if (e.money === null) {
        assert.equal(row.suspense_posting_key, null, `${fuzzId}: no readable money, yet a suspense entry`);
        continue;
      }
      assert.ok(
        row.suspense_posting_key,
        `${fuzzId}: money ${e.money.amountMinor} ${e.money.currency} without suspense`,
      );
      const lines = await pool.query<{ account_code: string; side: string; amount_minor: string; currency: string }>(
        `select l.account_code, l.side, l.amount_minor::text, l.currency from ledger.journal_lines l
           join ledger.journal_entries e on e.entry_id = l.entry_id where e.posting_key = $1 order by l.account_code`,
        [row.suspense_posting_key],
      );
      const other = e.money.suspenseSide === 'credit' ? 'debit' : 'credit';
      assert.deepEqual(
        lines.rows,
        [
          {
            account_code: 'gateway_clearing',
            side: other,
            amount_minor: String(e.money.amountMinor),
            currency: e.money.currency,
          },
          {
            account_code: 'suspense',
            side: e.money.suspenseSide,
            amount_minor: String(e.money.amountMinor),
            currency: e.money.currency,
          },
        ],
        `${fuzzId}: its suspense entry`,
      );
    }

    // Everything again from the start (a rewound group): nothing new recorded, nothing posted twice.
    const entriesBefore = await pool.query<{ n: number }>(
      `select count(*)::int as n from ledger.journal_entries where posting_key like 'quarantine/%/open' and payment_id like $1`,
      [`${runId}-%`],
    );
    await admin.resetOffsets({ groupId: group, topic, earliest: true });
    const again = await consumeAll('redelivery');
    assert.equal(again.recorded, 0, `a redelivery recorded anew: ${JSON.stringify(again)}`);
    assert.equal(again.alreadyRecorded, planned.length);
    const entriesAfter = await pool.query<{ n: number }>(
      `select count(*)::int as n from ledger.journal_entries where posting_key like 'quarantine/%/open' and payment_id like $1`,
      [`${runId}-%`],
    );
    assert.equal(entriesAfter.rows[0]!.n, entriesBefore.rows[0]!.n, 'a redelivery posted again');
  });
});

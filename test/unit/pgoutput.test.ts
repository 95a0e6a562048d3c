import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseDebeziumEnvelope } from '../../src/ingest/cdc/debezium';
import { normalizeChange } from '../../src/ingest/cdc/normalizer-consumer';
import {
  PG_TYPE,
  PgOutputError,
  UNAVAILABLE_VALUE,
  decodeColumn,
  formatLsn,
  parseLsn,
  parsePgOutputMessage,
  stringifyExact,
  timestamptzToIso,
} from '../../src/ingest/cdc/pgoutput';
import { type ChangeRecord, type SlotRow, type SourceContext, decodeSlotRows } from '../../src/ingest/cdc/reader';
import { topicsFor } from '../../src/streams/kafka';

const TOPICS = topicsFor({ KAFKA_TOPIC_NAMESPACE: '' });

// Fixtures are bytes captured from the real Postgres by test/fixtures/cdc/capture.ts.
const FIXTURES_DIR = join(__dirname, '..', 'fixtures', 'cdc');

function slotRows(name: string): SlotRow[] {
  const fixture = JSON.parse(readFileSync(join(FIXTURES_DIR, `${name}.json`), 'utf8')) as {
    rows: { lsn: string; xid: string; data: string }[];
  };
  return fixture.rows.map((r) => ({ lsn: r.lsn, xid: r.xid, data: Buffer.from(r.data, 'hex') }));
}

const ctx: SourceContext = {
  serverName: 'paylink.cdc.oltp',
  db: 'paylink_oltp',
  now: () => 1_767_225_600_000,
  topics: TOPICS,
};
const decode = (name: string): ChangeRecord[] => decodeSlotRows(slotRows(name), ctx, new Map(), null).records;
const lsnOf = (rows: SlotRow[], i: number): number => Number(parseLsn(rows[i]!.lsn));

describe('pgoutput messages (bytes from Postgres)', () => {
  it('parses every captured message and sees transactions as Begin … Commit', () => {
    const tags = slotRows('payment-lifecycle').map((r) => parsePgOutputMessage(r.data).tag);
    assert.deepEqual(tags, [
      ...['begin', 'relation', 'insert', 'commit'],
      ...['begin', 'update', 'relation', 'insert', 'insert', 'commit'],
      ...['begin', 'delete', 'commit'],
    ]);
    const all = ['types', 'toast-key-change-truncate'].flatMap((n) =>
      slotRows(n).map((r) => parsePgOutputMessage(r.data).tag),
    );
    for (const tag of ['truncate', 'message'] as const) assert.ok(all.includes(tag), `a '${tag}' message was captured`);
  });

  it('reads a Relation: namespace, replica identity, key flags and type OIDs', () => {
    const relation = parsePgOutputMessage(slotRows('payment-lifecycle')[1]!.data);
    assert.equal(relation.tag, 'relation');
    if (relation.tag !== 'relation') return;
    assert.equal(relation.namespace, 'cdc_fixture');
    assert.equal(relation.name, 'payments');
    assert.equal(relation.replicaIdentity, 'default');
    assert.deepEqual(
      relation.columns.map((c) => [c.name, c.isKey, c.typeOid]),
      [
        ['id', true, PG_TYPE.text],
        ['merchant_id', false, PG_TYPE.text],
        ['region', false, PG_TYPE.text],
        ['currency', false, PG_TYPE.text],
        ['amount_minor', false, PG_TYPE.int8],
        ['status', false, PG_TYPE.text],
        ['customer_email', false, PG_TYPE.text],
        ['created_at', false, PG_TYPE.timestamptz],
        ['updated_at', false, PG_TYPE.timestamptz],
      ],
    );
  });

  it('commit LSNs agree with the slot rows that carry them', () => {
    const rows = slotRows('payment-lifecycle');
    const begin = parsePgOutputMessage(rows[0]!.data);
    const commit = parsePgOutputMessage(rows[3]!.data);
    assert.ok(begin.tag === 'begin' && commit.tag === 'commit');
    assert.equal(begin.finalLsn, commit.commitLsn);
    assert.equal(formatLsn(commit.endLsn), rows[3]!.lsn); // the SQL interface reports a commit at its end
    assert.equal(begin.xid, Number(rows[0]!.xid));
  });

  it('rejects truncated and unknown messages, naming where', () => {
    const insert = slotRows('payment-lifecycle')[2]!.data;
    assert.throws(
      () => parsePgOutputMessage(insert.subarray(0, insert.length - 3)),
      (err: unknown) => {
        assert.ok(err instanceof PgOutputError);
        assert.match(err.message, /truncated message: column 8 text needs \d+ bytes/);
        return true;
      },
    );
    assert.throws(() => parsePgOutputMessage(Buffer.from('Z')), /unknown message tag 'Z'/);
    assert.throws(() => parsePgOutputMessage(Buffer.concat([insert, Buffer.from([0])])), /1 trailing bytes/);
  });
});

describe('Debezium envelopes from pgoutput', () => {
  it('insert, update and delete under REPLICA IDENTITY DEFAULT, as Debezium writes them', () => {
    const rows = slotRows('payment-lifecycle');
    const records = decode('payment-lifecycle');
    assert.deepEqual(
      records.map((r) => [r.topic, r.value.op, r.key]),
      [
        [TOPICS.cdcPayments, 'c', { id: 'pay_fx_0001' }],
        [TOPICS.cdcPayments, 'u', { id: 'pay_fx_0001' }],
        [TOPICS.cdcLedgerEntries, 'c', { id: 1 }],
        [TOPICS.cdcLedgerEntries, 'c', { id: 2 }],
        [TOPICS.cdcPayments, 'd', { id: 'pay_fx_0001' }],
      ],
    );
    const [created, updated, debit, , deleted] = records as [
      ChangeRecord,
      ChangeRecord,
      ChangeRecord,
      ChangeRecord,
      ChangeRecord,
    ];
    assert.deepEqual(created.value.after, {
      id: 'pay_fx_0001',
      merchant_id: 'm-7',
      region: 'eu-west',
      currency: 'EUR',
      amount_minor: 12500,
      status: 'created',
      customer_email: 'jane.doe@example.com',
      created_at: '2026-01-01T10:00:00.123456Z',
      updated_at: '2026-01-01T10:00:00.123456Z',
    });
    assert.equal(created.value.before, null);
    assert.equal(created.value.source.lsn, lsnOf(rows, 2));
    assert.equal(created.value.source.txId, Number(rows[0]!.xid));
    assert.equal(created.value.source.snapshot, 'false');
    assert.equal(updated.value.before, null, 'DEFAULT identity sends no old row on update');
    assert.equal(updated.value.after?.status, 'captured');
    assert.equal(updated.value.after?.updated_at, '2026-01-01T10:05:00Z');
    // Both ledger rows share a transaction, so txId and the sequence's last commit, but not the LSN.
    assert.equal(debit.value.source.txId, updated.value.source.txId);
    assert.notEqual(debit.value.source.lsn, records[3]!.value.source.lsn);
    assert.deepEqual(deleted.value.before, {
      id: 'pay_fx_0001',
      merchant_id: null,
      region: null,
      currency: null,
      amount_minor: null,
      status: null,
      customer_email: null,
      created_at: null,
      updated_at: null,
    });
    assert.equal(deleted.value.after, null);
    const previousCommit = parsePgOutputMessage(rows[9]!.data);
    assert.ok(previousCommit.tag === 'commit');
    // source.sequence = [last commit LSN, this change's LSN], as Debezium writes it.
    assert.deepEqual(JSON.parse(deleted.value.source.sequence), [
      String(previousCommit.commitLsn),
      String(lsnOf(rows, 11)),
    ]);
  });

  it('every envelope passes the Debezium normalizer with the same idempotency key (table + pk + LSN)', () => {
    for (const name of ['payment-lifecycle', 'types', 'toast-key-change-truncate']) {
      for (const record of decode(name)) {
        const parsed = parseDebeziumEnvelope(
          record.key === null ? null : Buffer.from(stringifyExact(record.key)),
          Buffer.from(stringifyExact(record.value)),
        );
        if (record.value.op === 't') {
          assert.equal(parsed.ok, 'ignored');
          continue;
        }
        assert.equal(parsed.ok, true, parsed.ok === true ? '' : parsed.reason);
        if (parsed.ok !== true) continue;
        assert.equal(parsed.change.idempotencyKey, record.idempotencyKey);
        assert.equal(parsed.change.lsn, String(record.value.source.lsn));
      }
    }
  });

  it('types values as Debezium does, keeping 64-bit integers exact', () => {
    const [full, extremes] = decode('types') as [ChangeRecord, ChangeRecord];
    assert.deepEqual(full.value.after, {
      id: 1,
      i2: -32768,
      i4: 2147483647,
      big: 9007199254740993n,
      amount: '12345678901234567890.1234',
      flag: true,
      at: '2026-03-14T09:31:12.0045Z', // decoded in an Asia/Kolkata session: converted back to UTC
      local_at: 1_773_480_672_500_000, // MicroTimestamp
      day: 20_526, // io.debezium.time.Date
      doc: '{"k": [1, 2]}',
      note: 'plain text',
      blob: '3q2+7w==',
      uid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      ratio: 0.25,
    });
    assert.equal(extremes.value.after?.big, -9223372036854775808n);
    assert.equal(extremes.value.after?.amount, '-0.5000');
    assert.equal(extremes.value.after?.flag, false);
    assert.equal(extremes.value.after?.i2, null);
    // On the wire the integer is exact, and the normalizer reads it back exactly (as a decimal string).
    const json = stringifyExact(full.value);
    assert.match(json, /"big":9007199254740993,/);
    const parsed = parseDebeziumEnvelope(Buffer.from('{"id":1}'), Buffer.from(json));
    assert.ok(parsed.ok === true);
    assert.equal(parsed.change.after?.big, '9007199254740993');
  });

  it('unchanged TOAST gets the placeholder, a key change is delete + create, truncate is op t', () => {
    const records = decode('toast-key-change-truncate');
    assert.deepEqual(
      records.map((r) => [r.value.op, r.key]),
      [
        ['c', { id: 10 }],
        ['u', { id: 10 }],
        ['d', { id: 10 }],
        ['c', { id: 11 }],
        ['t', null],
      ],
    );
    assert.equal(typeof records[0]!.value.after?.note, 'string');
    assert.ok(String(records[0]!.value.after?.note).length > 2000);
    assert.equal(records[1]!.value.after?.note, UNAVAILABLE_VALUE);
    assert.equal(records[1]!.value.after?.i4, 2);
    assert.equal(records[2]!.value.source.lsn, records[3]!.value.source.lsn, 'one WAL record, two events');
    assert.notEqual(records[2]!.idempotencyKey, records[3]!.idempotencyKey);
    assert.equal(records[4]!.topic, 'paylink.cdc.oltp.cdc_fixture.type_probe');
  });

  it('a second peek of the same WAL yields the same keys and LSNs (what makes re-emission harmless)', () => {
    const first = decode('payment-lifecycle').map((r) => [r.idempotencyKey, r.value.source.sequence]);
    const again = decode('payment-lifecycle').map((r) => [r.idempotencyKey, r.value.source.sequence]);
    assert.deepEqual(again, first);
  });
});

describe('type mapping', () => {
  it('timestamptz text in any offset becomes UTC ISO with the microseconds kept', () => {
    assert.equal(timestamptzToIso('2026-03-14 15:01:12.0045+05:30'), '2026-03-14T09:31:12.0045Z');
    assert.equal(timestamptzToIso('2026-03-14 09:31:12+00'), '2026-03-14T09:31:12Z');
    assert.equal(timestamptzToIso('2026-01-01 00:00:00.000001-03'), '2026-01-01T03:00:00.000001Z');
    assert.equal(timestamptzToIso('2025-12-31 23:30:00.5+00:30'), '2025-12-31T23:00:00.5Z');
    assert.equal(timestamptzToIso('infinity'), 'infinity');
  });

  it('integers stay exact, numeric stays a string, floats never become NaN', () => {
    assert.equal(decodeColumn(PG_TYPE.int8, '9007199254740991'), 9007199254740991);
    assert.equal(decodeColumn(PG_TYPE.int8, '9223372036854775807'), 9223372036854775807n);
    assert.equal(decodeColumn(PG_TYPE.numeric, '0.10'), '0.10');
    assert.equal(decodeColumn(PG_TYPE.float8, 'NaN'), 'NaN');
    assert.equal(decodeColumn(PG_TYPE.bool, 'f'), false);
    assert.equal(decodeColumn(99999, 'an-enum-label'), 'an-enum-label');
    assert.equal(stringifyExact({ a: -9223372036854775808n, b: 'x' }), '{"a":-9223372036854775808,"b":"x"}');
  });

  it('LSNs round-trip between pg_lsn text and 64-bit numbers', () => {
    assert.equal(parseLsn('16/B374D848'), 0x16b374d848n);
    assert.equal(formatLsn(0x16b374d848n), '16/B374D848');
    assert.throws(() => parseLsn('16-B374D848'), /not a WAL position/);
  });
});

describe('CDC normalizer mapping', () => {
  const bytes = (json: unknown): Buffer => Buffer.from(stringifyExact(json));
  const [created, updated] = decode('payment-lifecycle') as [ChangeRecord, ChangeRecord];

  it('a created payment row is a created fact keyed by table + pk + LSN', () => {
    const result = normalizeChange(bytes(created.key), bytes(created.value));
    assert.equal(result.kind, 'fact', result.kind === 'fact' ? '' : result.reason);
    if (result.kind !== 'fact') return;
    assert.deepEqual(result.fact, {
      version: 1,
      type: 'created',
      idempotencyKey: created.idempotencyKey,
      paymentId: 'pay_fx_0001',
      merchantId: 'm-7',
      region: 'eu-west',
      currency: 'EUR',
      amountMinor: 12500,
      occurredAt: '2026-01-01T10:00:00.123456Z',
      source: 'cdc',
      sourceSequence: 0,
    });
  });

  it('snapshot reads are created facts too; updates, deletes and ledger rows are not facts', () => {
    const read = { ...created.value, op: 'r', source: { ...created.value.source, snapshot: 'last' } };
    assert.equal(normalizeChange(bytes(created.key), bytes(read)).kind, 'fact');
    assert.equal(normalizeChange(bytes(updated.key), bytes(updated.value)).kind, 'skip');
    const [, , debit, , deleted] = decode('payment-lifecycle');
    assert.equal(normalizeChange(bytes(debit!.key), bytes(debit!.value)).kind, 'skip');
    assert.equal(normalizeChange(bytes(deleted!.key), bytes(deleted!.value)).kind, 'skip');
  });

  it('an unusable envelope or row is quarantined with a reason naming the field', () => {
    const broken = { ...created.value, source: { ...created.value.source, lsn: undefined } };
    const noLsn = normalizeChange(bytes(created.key), bytes(broken));
    assert.equal(noLsn.kind, 'quarantine');
    assert.match(noLsn.kind === 'quarantine' ? noLsn.reason : '', /value\.source\.lsn: required/);
    const huge = { ...created.value, after: { ...created.value.after, amount_minor: 2n ** 60n } };
    const tooBig = normalizeChange(bytes(created.key), bytes(huge));
    assert.equal(tooBig.kind, 'quarantine');
    assert.match(tooBig.kind === 'quarantine' ? tooBig.reason : '', /after\.amount_minor: /);
    assert.equal(normalizeChange(bytes(created.key), Buffer.from('{not json')).kind, 'quarantine');
  });
});

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type ChangeEvent, type DebeziumParseResult, parseDebeziumEnvelope } from '../../src/ingest/cdc/debezium';

const FIXTURES_DIR = join(__dirname, '..', 'fixtures', 'debezium');

type Fixture = { key: unknown; value: unknown };

function fixture(name: string): Fixture {
  return JSON.parse(readFileSync(join(FIXTURES_DIR, `${name}.json`), 'utf8')) as Fixture;
}

// Kafka hands the consumer bytes, or null for a null key/value.
const bytes = (json: unknown): Buffer | null => (json === null ? null : Buffer.from(JSON.stringify(json)));

function parseFixture(name: string): DebeziumParseResult {
  const { key, value } = fixture(name);
  return parseDebeziumEnvelope(bytes(key), bytes(value));
}

function change(result: DebeziumParseResult): ChangeEvent {
  assert.equal(result.ok, true, result.ok === true ? '' : result.reason);
  if (result.ok !== true) throw new Error('unreachable');
  return result.change;
}

const payment = (id: string, status: string, amountMinor: number, updatedAt: string): Record<string, unknown> => ({
  id,
  merchant_id: 'm-eu-0042',
  amount_minor: amountMinor,
  currency: 'EUR',
  status,
  updated_at: updatedAt,
});
const capture = (state: string): Record<string, unknown> => ({
  payment_id: 'pay_01JPD0B1XW',
  capture_seq: 1,
  amount_minor: 8900,
  currency: 'EUR',
  state,
  captured_at: '2025-03-14T09:32:01.250117Z',
});

const expectedChanges: Record<string, ChangeEvent> = {
  'snapshot-read': {
    op: 'snapshot',
    table: 'public.payments',
    primaryKey: { id: 'pay_01JPCZ4S7Q' },
    lsn: '3892315584',
    txId: 9171,
    tsMs: 1741944401212,
    snapshot: true,
    before: null,
    after: payment('pay_01JPCZ4S7Q', 'captured', 12500, '2025-03-14T09:21:07.118204Z'),
    idempotencyKey: 'cdc:paylink.public.payments:id=pay_01JPCZ4S7Q:3892315584',
  },
  'snapshot-read-last': {
    op: 'snapshot',
    table: 'public.payments',
    primaryKey: { id: 'pay_01JPCZ9K2D' },
    lsn: '3892315584',
    txId: 9171,
    tsMs: 1741944401212,
    snapshot: true,
    before: null,
    after: payment('pay_01JPCZ9K2D', 'authorized', 4999, '2025-03-14T09:25:44.570031Z'),
    idempotencyKey: 'cdc:paylink.public.payments:id=pay_01JPCZ9K2D:3892315584',
  },
  'snapshot-boolean': {
    op: 'snapshot',
    table: 'public.payments',
    primaryKey: { id: 'pay_01JPCZ2M8F' },
    lsn: '3892315584',
    txId: 9171,
    tsMs: 1741944401212,
    snapshot: true,
    before: null,
    after: payment('pay_01JPCZ2M8F', 'settled', 31000, '2025-03-13T17:02:51.330871Z'),
    idempotencyKey: 'cdc:paylink.public.payments:id=pay_01JPCZ2M8F:3892315584',
  },
  create: {
    op: 'create',
    table: 'public.payments',
    primaryKey: { id: 'pay_01JPD0B1XW' },
    lsn: '3892320536',
    txId: 9184,
    tsMs: 1741944672004,
    snapshot: false,
    before: null,
    after: payment('pay_01JPD0B1XW', 'created', 8900, '2025-03-14T09:31:12.004512Z'),
    idempotencyKey: 'cdc:paylink.public.payments:id=pay_01JPD0B1XW:3892320536',
  },
  'update-default-identity': {
    op: 'update',
    table: 'public.payments',
    primaryKey: { id: 'pay_01JPD0B1XW' },
    lsn: '3892321992',
    txId: 9186,
    tsMs: 1741944675883,
    snapshot: false,
    before: null,
    after: payment('pay_01JPD0B1XW', 'authorized', 8900, '2025-03-14T09:31:15.882930Z'),
    idempotencyKey: 'cdc:paylink.public.payments:id=pay_01JPD0B1XW:3892321992',
  },
  'update-full-identity': {
    op: 'update',
    table: 'public.payment_captures',
    primaryKey: { payment_id: 'pay_01JPD0B1XW', capture_seq: 1 },
    lsn: '3892325016',
    txId: 9191,
    tsMs: 1741944730611,
    snapshot: false,
    before: capture('pending'),
    after: capture('confirmed'),
    idempotencyKey: 'cdc:paylink.public.payment_captures:capture_seq=1,payment_id=pay_01JPD0B1XW:3892325016',
  },
  'delete-default-identity': {
    op: 'delete',
    table: 'public.payments',
    primaryKey: { id: 'pay_01JPCZ9K2D' },
    lsn: '3892327272',
    txId: 9197,
    tsMs: 1741944802150,
    snapshot: false,
    before: {
      id: 'pay_01JPCZ9K2D',
      merchant_id: null,
      amount_minor: null,
      currency: null,
      status: null,
      updated_at: null,
    },
    after: null,
    idempotencyKey: 'cdc:paylink.public.payments:id=pay_01JPCZ9K2D:3892327272',
  },
  'create-schema-wrapped': {
    op: 'create',
    table: 'public.payments',
    primaryKey: { id: 'pay_01JPD1F6RA' },
    lsn: '3892330384',
    txId: 9210,
    tsMs: 1741945470917,
    snapshot: false,
    before: null,
    after: payment('pay_01JPD1F6RA', 'created', 150000, '2025-03-14T09:44:30.917366Z'),
    idempotencyKey: 'cdc:paylink.public.payments:id=pay_01JPD1F6RA:3892330384',
  },
  'delete-schema-wrapped': {
    op: 'delete',
    table: 'public.payment_captures',
    primaryKey: { payment_id: 'pay_01JPD0B1XW', capture_seq: 1 },
    lsn: '3892331712',
    txId: 9214,
    tsMs: 1741945533408,
    snapshot: false,
    before: capture('confirmed'),
    after: null,
    idempotencyKey: 'cdc:paylink.public.payment_captures:capture_seq=1,payment_id=pay_01JPD0B1XW:3892331712',
  },
};

const expectedOutcomes: Record<string, Exclude<DebeziumParseResult, { ok: true }>> = {
  tombstone: { ok: 'ignored', reason: 'tombstone: null value after a delete, kept for log compaction' },
  truncate: { ok: 'ignored', reason: 'truncate (op "t") of public.payments: not a row change' },
  message: { ok: 'ignored', reason: 'logical decoding message (op "m", prefix "paylink.audit"): not a row change' },
  'malformed-missing-lsn': {
    ok: false,
    reason: 'value.source.lsn: required',
  },
};

describe('parseDebeziumEnvelope: fixtures', () => {
  it('every fixture has an expectation and every expectation a fixture', () => {
    const files = readdirSync(FIXTURES_DIR)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -'.json'.length))
      .sort();
    assert.deepEqual(files, [...Object.keys(expectedChanges), ...Object.keys(expectedOutcomes)].sort());
  });

  for (const [name, expected] of Object.entries(expectedChanges)) {
    it(`${name} normalizes to the expected change`, () => {
      assert.deepEqual(change(parseFixture(name)), expected);
    });
  }

  for (const [name, expected] of Object.entries(expectedOutcomes)) {
    it(`${name} is ${expected.ok === 'ignored' ? 'ignored' : 'rejected'} with its reason`, () => {
      assert.deepEqual(parseFixture(name), expected);
    });
  }
});

describe('parseDebeziumEnvelope: identity', () => {
  it('the same envelope delivered twice (consumer restart) keeps its idempotency key', () => {
    const { key, value } = fixture('create');
    const first = change(parseDebeziumEnvelope(bytes(key), bytes(value)));
    const redelivered = change(parseDebeziumEnvelope(JSON.stringify(key), JSON.stringify(value)));
    assert.equal(redelivered.idempotencyKey, first.idempotencyKey);
    assert.deepEqual(redelivered, first);
  });

  it('a snapshot re-read of the same row at the same LSN keeps its idempotency key', () => {
    const { key, value } = fixture('snapshot-read') as { key: unknown; value: Record<string, unknown> };
    const source = value.source as Record<string, unknown>;
    // A restarted snapshot has new timestamps and may mark the row differently; the LSN and row are the same.
    const reread = { ...value, ts_ms: 1741948000123, source: { ...source, ts_ms: 1741948000001, snapshot: 'first' } };
    const first = change(parseDebeziumEnvelope(bytes(key), bytes(value)));
    const second = change(parseDebeziumEnvelope(bytes(key), bytes(reread)));
    assert.equal(second.idempotencyKey, first.idempotencyKey);
    assert.notEqual(second.tsMs, first.tsMs);
  });

  it('rows read in one snapshot share the LSN but not the idempotency key', () => {
    const a = change(parseFixture('snapshot-read'));
    const b = change(parseFixture('snapshot-read-last'));
    assert.equal(a.lsn, b.lsn);
    assert.notEqual(a.idempotencyKey, b.idempotencyKey);
  });

  it('an LSN above 2^53 stays exact, also in source.sequence', () => {
    const { key, value } = fixture('create');
    const big = '9007199254740993'; // 2^53 + 1: JSON.parse would read it as ...992
    assert.equal(String(JSON.parse(big)), '9007199254740992');
    const text = JSON.stringify(value)
      .replace('"lsn":3892320536', `"lsn":${big}`)
      .replace('\\"3892320536\\"', `\\"${big}\\"`);
    assert.ok(text.includes(`"lsn":${big}`), 'the fixture text was rewritten');
    const parsed = change(parseDebeziumEnvelope(bytes(key), text));
    assert.equal(parsed.lsn, big);
    assert.equal(parsed.idempotencyKey, `cdc:paylink.public.payments:id=pay_01JPD0B1XW:${big}`);
  });

  it('composite keys are canonical whatever the column order in the key', () => {
    const { value } = fixture('update-full-identity');
    const a = change(parseDebeziumEnvelope('{"payment_id":"pay_01JPD0B1XW","capture_seq":1}', bytes(value)));
    const b = change(parseDebeziumEnvelope('{"capture_seq":1,"payment_id":"pay_01JPD0B1XW"}', bytes(value)));
    assert.equal(a.idempotencyKey, b.idempotencyKey);
  });

  it('separators inside key values cannot make two keys collide', () => {
    const { value } = fixture('create');
    const a = change(parseDebeziumEnvelope('{"id":"a,b=c"}', bytes(value)));
    const b = change(parseDebeziumEnvelope('{"id":"a","b":"c"}', bytes(value)));
    assert.equal(a.idempotencyKey, 'cdc:paylink.public.payments:id=a%2Cb%3Dc:3892320536');
    assert.notEqual(a.idempotencyKey, b.idempotencyKey);
  });
});

describe('parseDebeziumEnvelope: primary key without a message key', () => {
  const primaryKeyColumns = { 'public.payments': ['id'], 'public.payment_captures': ['payment_id', 'capture_seq'] };

  it('reads the configured columns from after, and from before for a delete', () => {
    const created = change(parseDebeziumEnvelope(null, bytes(fixture('create').value), { primaryKeyColumns }));
    assert.deepEqual(created, expectedChanges.create);
    const deleted = change(
      parseDebeziumEnvelope(null, bytes(fixture('delete-schema-wrapped').value), { primaryKeyColumns }),
    );
    assert.deepEqual(deleted, expectedChanges['delete-schema-wrapped']);
  });

  it('a JSON null key, or a schema-wrapped null key payload, counts as absent', () => {
    const value = bytes(fixture('create').value);
    for (const key of ['null', '{"schema":null,"payload":null}']) {
      assert.deepEqual(change(parseDebeziumEnvelope(key, value, { primaryKeyColumns })), expectedChanges.create);
    }
  });

  it('without a key or configured columns the record is rejected, naming the table', () => {
    assert.deepEqual(parseDebeziumEnvelope(null, bytes(fixture('create').value)), {
      ok: false,
      reason: 'key: absent and options.primaryKeyColumns has no columns for public.payments',
    });
  });

  it('a configured column missing from the row is named', () => {
    const result = parseDebeziumEnvelope(null, bytes(fixture('create').value), {
      primaryKeyColumns: { 'public.payments': ['payment_ref'] },
    });
    assert.deepEqual(result, {
      ok: false,
      reason: 'value.after.payment_ref: primary key column missing or not a string/number',
    });
  });
});

describe('parseDebeziumEnvelope: rejections name the field', () => {
  const create = fixture('create') as { key: unknown; value: Record<string, unknown> };
  const source = create.value.source as Record<string, unknown>;
  const reason = (value: unknown, key: unknown = create.key): string => {
    const result = parseDebeziumEnvelope(bytes(key), bytes(value));
    assert.equal(result.ok, false);
    return result.ok === false ? result.reason : '';
  };

  it('malformed JSON', () => {
    const result = parseDebeziumEnvelope(bytes(create.key), '{"before":');
    assert.equal(result.ok, false);
    assert.match(result.ok === false ? result.reason : '', /^value: malformed JSON/);
  });

  it('unknown op', () => {
    assert.match(reason({ ...create.value, op: 'x' }), /^value\.op: /);
  });

  it('create without after', () => {
    assert.equal(reason({ ...create.value, after: null }), 'value.after: null for op "c"');
  });

  it('unknown snapshot marker', () => {
    assert.match(reason({ ...create.value, source: { ...source, snapshot: 'maybe' } }), /^value\.source\.snapshot: /);
  });

  it('sequence that disagrees with lsn', () => {
    assert.equal(
      reason({ ...create.value, source: { ...source, sequence: '["3892320264","3892320999"]' } }),
      'value.source.sequence: current LSN 3892320999 differs from source.lsn 3892320536',
    );
  });

  it('sequence that is not a JSON array of two LSN strings', () => {
    assert.match(
      reason({ ...create.value, source: { ...source, sequence: '[1,2]' } }),
      /^value\.source\.sequence\.0: /,
    );
  });

  it('a missing field inside a schema-wrapped envelope is named with its payload path', () => {
    const wrapped = fixture('create-schema-wrapped') as { key: unknown; value: { schema: unknown; payload: object } };
    const payload = wrapped.value.payload as Record<string, unknown>;
    const { txId: _txId, ...sourceWithBadTx } = payload.source as Record<string, unknown>;
    const value = { ...wrapped.value, payload: { ...payload, source: { ...sourceWithBadTx, txId: 'x' } } };
    assert.match(reason(value, wrapped.key), /^value\.payload\.source\.txId: /);
  });

  it('a key column that is neither string nor number', () => {
    assert.match(reason(create.value, { id: true }), /^key\.id: /);
  });
});

describe('parseDebeziumEnvelope: other non-changes', () => {
  it('a schema-wrapped null payload is a tombstone', () => {
    const result = parseDebeziumEnvelope('{"id":"pay_1"}', '{"schema":null,"payload":null}');
    assert.equal(result.ok, 'ignored');
  });

  it('a truncate without txId (or with an unreadable source) is still only ignored', () => {
    const result = parseDebeziumEnvelope(null, '{"op":"t","source":{}}');
    assert.deepEqual(result, { ok: 'ignored', reason: 'truncate (op "t") of an unnamed table: not a row change' });
  });

  it('a streamed row without txId normalizes without the field', () => {
    const { key, value } = fixture('create') as { key: unknown; value: Record<string, unknown> };
    const source = { ...(value.source as Record<string, unknown>), txId: null };
    const parsed = change(parseDebeziumEnvelope(bytes(key), bytes({ ...value, source })));
    assert.equal('txId' in parsed, false);
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type SnowflakeSession, SnowflakeQueryError, connectSnowflake } from '../../src/stores/snowflake';
import { config, requireServices, uniqueId } from '../support/stack';

// Runs against whatever SNOWFLAKE_ACCESS_URL points at (locally: tools/snowflake/server.py) through
// the production client, so the snowflake-sdk code path is the real one.

interface PaymentRow {
  ID: number;
  AMOUNT_MINOR: number | null;
  CURRENCY: string | null;
  SETTLED: boolean | null;
  VALUE_DATE: Date | null;
  BOOKED_AT: Date | null;
  NOTE: string | null;
}

describe('Snowflake finance store', () => {
  let session: SnowflakeSession;
  const table = uniqueId('payments_test')
    .replace(/[^A-Za-z0-9]/g, '_')
    .toUpperCase();
  const count = async (s: SnowflakeSession = session): Promise<number> =>
    (await s.query<{ N: number }>(`SELECT COUNT(*) AS n FROM ${table}`))[0]?.N ?? -1;
  const byId = async (id: number): Promise<PaymentRow | undefined> =>
    (await session.query<PaymentRow>(`SELECT * FROM ${table} WHERE id = ?`, [id]))[0];

  before(async () => {
    await requireServices('snowflake');
    session = await connectSnowflake(config);
    await session.query(`
      CREATE TABLE ${table} (
        id NUMBER(38,0) NOT NULL,
        amount_minor NUMBER(38,0),
        currency VARCHAR(3),
        settled BOOLEAN,
        value_date DATE,
        booked_at TIMESTAMP_NTZ,
        note VARCHAR
      )`);
  });
  after(async () => {
    await session?.query(`DROP TABLE IF EXISTS ${table}`);
    await session?.close();
  });

  it('inserts with ? binds and reads every type back exactly', async () => {
    const inserted = await session.query(
      `INSERT INTO ${table} (id, amount_minor, currency, settled, value_date, booked_at, note) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      [1, 123456789012, 'EUR', true, '2026-01-31', '2026-01-31 23:59:58.123', 'café ☕'],
    );
    assert.deepEqual(inserted, [{ 'number of rows inserted': 1 }]);
    await session.query(`INSERT INTO ${table} (id, amount_minor, currency, settled) VALUES (?, ?, ?, ?)`, [
      2,
      -250,
      'USD',
      false,
    ]);

    const row = await byId(1);
    assert.ok(row);
    assert.equal(row.AMOUNT_MINOR, 123456789012);
    assert.equal(row.CURRENCY, 'EUR');
    assert.equal(row.SETTLED, true);
    assert.ok(row.VALUE_DATE instanceof Date);
    assert.equal(row.VALUE_DATE.toISOString(), '2026-01-31T00:00:00.000Z');
    assert.ok(row.BOOKED_AT instanceof Date);
    assert.equal(row.BOOKED_AT.toISOString(), '2026-01-31T23:59:58.123Z');
    assert.equal(row.NOTE, 'café ☕');
    const negative = await byId(2);
    assert.equal(negative?.AMOUNT_MINOR, -250);
    assert.equal(negative?.SETTLED, false);

    const [sums] = await session.query<{ TOTAL: number; SETTLED_COUNT: number }>(
      `SELECT SUM(amount_minor) AS total, COUNT_IF(settled) AS settled_count FROM ${table} WHERE id IN (1, 2)`,
    );
    assert.deepEqual(sums, { TOTAL: 123456789012 - 250, SETTLED_COUNT: 1 });
  });

  it('keeps integers beyond 2^53 exact: bigint binds, and reads that would round reject', async () => {
    const big = 9007199254740993n; // 2^53 + 1: not representable as a JS number
    await session.query(`INSERT INTO ${table} (id, amount_minor) VALUES (?, ?)`, [3, big]);
    const [asText] = await session.query<{ A: string }>(`SELECT amount_minor::VARCHAR AS a FROM ${table} WHERE id = 3`);
    assert.equal(asText?.A, big.toString());
    await assert.rejects(byId(3), /AMOUNT_MINOR value 9007199254740993 exceeds the safe integer range/);
  });

  it('returns NULL as null for every type', async () => {
    await session.query(`INSERT INTO ${table} (id) VALUES (?)`, [4]);
    await session.query(`UPDATE ${table} SET note = ? WHERE id = ?`, [null, 4]);
    assert.deepEqual(await byId(4), {
      ID: 4,
      AMOUNT_MINOR: null,
      CURRENCY: null,
      SETTLED: null,
      VALUE_DATE: null,
      BOOKED_AT: null,
      NOTE: null,
    });
  });

  it('MERGE upserts: inserts a new key, updates an existing one', async () => {
    const upsert = (id: number, amount: number): Promise<Record<string, unknown>[]> =>
      session.query(
        `MERGE INTO ${table} t
         USING (SELECT ? AS id, ? AS amount_minor) s ON t.id = s.id
         WHEN MATCHED THEN UPDATE SET amount_minor = s.amount_minor
         WHEN NOT MATCHED THEN INSERT (id, amount_minor, currency) VALUES (s.id, s.amount_minor, 'EUR')`,
        [id, amount],
      );
    const before = await count();
    assert.deepEqual(await upsert(10, 500), [{ 'number of rows inserted': 1, 'number of rows updated': 0 }]);
    assert.deepEqual(await upsert(10, 750), [{ 'number of rows inserted': 0, 'number of rows updated': 1 }]);
    assert.equal(await count(), before + 1);
    assert.equal((await byId(10))?.AMOUNT_MINOR, 750);
  });

  it('a transaction commits all its statements', async () => {
    const before = await count();
    const result = await session.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${table} (id, amount_minor) VALUES (?, ?)`, [20, 100]);
      await tx.query(`UPDATE ${table} SET amount_minor = amount_minor + ? WHERE id = ?`, [1, 20]);
      return 'done';
    });
    assert.equal(result, 'done');
    assert.equal(await count(), before + 1);
    assert.equal((await byId(20))?.AMOUNT_MINOR, 101);
  });

  it('a transaction that throws rolls back: its insert is gone, and was never visible to others', async () => {
    const other = await connectSnowflake(config);
    try {
      const before = await count();
      await assert.rejects(
        session.transaction(async (tx) => {
          await tx.query(`INSERT INTO ${table} (id, amount_minor) VALUES (?, ?)`, [30, 999]);
          const inside = await tx.query<{ N: number }>(`SELECT COUNT(*) AS n FROM ${table} WHERE id = 30`);
          assert.equal(inside[0]?.N, 1, 'the transaction sees its own insert');
          assert.equal(await count(other), before, 'another session does not see uncommitted rows');
          throw new Error('posting failed');
        }),
        /posting failed/,
      );
      assert.equal(await count(), before);
      assert.equal(await byId(30), undefined);
    } finally {
      await other.close();
    }
  });

  it('refuses session.query() inside transaction() instead of deadlocking', async () => {
    await assert.rejects(
      session.transaction(() => session.query('SELECT 1')),
      /inside transaction\(\): use the tx argument/,
    );
    assert.deepEqual(await session.query('SELECT 1 AS one'), [{ ONE: 1 }]);
  });

  it('bad SQL rejects with an error that names the SQL, and the session stays usable', async () => {
    const sql = `SELEC amount_minor FROM ${table}`;
    await assert.rejects(session.query(sql), (err: unknown) => {
      assert.ok(err instanceof SnowflakeQueryError);
      assert.ok(err.message.includes(sql), err.message);
      assert.equal(err.sql, sql);
      assert.ok(err.code, 'carries the Snowflake error code');
      return true;
    });
    await assert.rejects(session.query(`SELECT * FROM ${table}_missing WHERE id = ?`, [1]), /_missing WHERE id = \?/);
    assert.equal((await byId(1))?.CURRENCY, 'EUR');
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Pool } from 'pg';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { type CdcReader, createCdcReader } from '../../src/ingest/cdc/reader';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { type Logger, createLogger } from '../../src/logger';
import { createOltpPool, ensureOltpSchema, recordInOltp } from '../../src/simulator/oltp';
import { simulatePayments } from '../../src/simulator/payments';
import { type Vault, openVault } from '../../src/stores/vault';
import { type TopicOffsets, createKafka, readTopics } from '../../src/streams/kafka';
import { testPublisher } from '../support/edge';
import { type PrivatePostgres, startPrivatePostgres } from '../support/private-postgres';
import { topicEnds } from '../support/kafka';
import { topics as TOPICS, config, requireServices, uniqueId } from '../support/stack';

// A slot that max_slot_wal_keep_size invalidated (wal_status 'lost') for real, on a throwaway cluster with
// 1 MB WAL segments and a 1 MB limit: the setting is cluster-wide, and on the shared stack it would
// invalidate the main slot and every other test's lagging slot too. The reader must drop the lost slot,
// create a new one and snapshot again, both in a running poll loop and at start, and keep streaming.

type Change = {
  key: string;
  idempotencyKey: string;
  op: string;
  id: string;
  snapshot: string;
  lsn: number;
};

describe(
  'CDC: a slot invalidated by max_slot_wal_keep_size is replaced and re-snapshotted',
  { timeout: 120_000 },
  () => {
    const runId = uniqueId('cdclost').replace(/_/g, '-');
    const name = runId.replace(/[^a-z0-9]/g, '_');
    const schema = `t_${name}`;
    const slot = `s_${name}`;
    const created = simulatePayments({
      payments: 7,
      seed: 1313,
      duplicateRate: 0,
      runId,
      happyPathOnly: true,
    }).deliveries.filter((e): e is Extract<PaymentEvent, { type: 'created' }> => e.type === 'created');
    const ids = created.map((e) => e.paymentId);
    const kafka = createKafka(config, 'cdc-slot-lost-test');
    // Error lines are kept for the assertions; the rest goes to stderr as usual.
    const errors: Record<string, unknown>[] = [];
    const log: Logger = {
      ...createLogger('cdc-slot-lost-test'),
      error: (msg, fields = {}) => errors.push({ msg, ...fields }),
    };
    const publisher = testPublisher('cdc-slot-lost-test', log);
    let cluster: PrivatePostgres;
    let pool: Pool;
    let vault: Vault;
    let from: TopicOffsets;

    const newReader = (): CdcReader =>
      createCdcReader({
        pool,
        publisher,
        topics: TOPICS,
        tokenizer: tokenizerFromConfig(config),
        vault,
        log,
        slot,
        publication: `p_${name}`,
        schema,
        serverName: config.CDC_SERVER_NAME,
        batchSize: 500,
      });

    const slotRow = async (): Promise<{ status: string | null; restart: string | null } | undefined> =>
      (
        await pool.query<{ status: string | null; restart: string | null }>(
          'select wal_status as status, restart_lsn::text as restart from pg_replication_slots where slot_name = $1',
          [slot],
        )
      ).rows[0];

    /** Writes WAL past the 1 MB limit and checkpoints until Postgres invalidates the (unread) slot. */
    const invalidateSlot = async (): Promise<void> => {
      await pool.query(`create table if not exists ${schema}.wal_filler (v text)`); // not published: no changes
      for (let round = 0; round < 10; round += 1) {
        for (let segment = 0; segment < 3; segment += 1) {
          await pool.query(
            `insert into ${schema}.wal_filler select repeat(md5(g::text), 32) from generate_series(1, 800) g`,
          );
          await pool.query('select pg_switch_wal()');
        }
        await pool.query('checkpoint');
        if ((await slotRow())?.status === 'lost') return;
      }
      assert.fail(`slot ${slot} was not invalidated: ${JSON.stringify(await slotRow())} (see ${cluster.logFile})`);
    };

    /** This test's payment changes on the shared cdc topic, from where it ended at the start. */
    const changes = async (done: (seen: Change[]) => boolean): Promise<Change[]> => {
      const seen: Change[] = [];
      const finished = await readTopics(
        kafka,
        new Map([[TOPICS.cdcPayments, from]]),
        (_topic, _partition, m) => {
          try {
            const v = JSON.parse(String(m.value)) as {
              op: string;
              after: { id?: string } | null;
              source: { schema: string; snapshot: string; lsn: number };
            };
            if (v.source?.schema !== schema) return false;
            seen.push({
              key: m.key?.toString() ?? '',
              idempotencyKey: m.headers['idempotency-key'] ?? '',
              op: v.op,
              id: String(v.after?.id),
              snapshot: v.source.snapshot,
              lsn: v.source.lsn,
            });
          } catch {
            return false; // another writer's message on the shared topic
          }
          return done(seen);
        },
        60_000,
      );
      assert.ok(finished, `read ${seen.length} changes of ${schema}: ${JSON.stringify(seen)}`);
      return seen;
    };
    const snapshotOf = (seen: Change[], lsn: number): Change[] => seen.filter((c) => c.op === 'r' && c.lsn === lsn);

    before(async () => {
      await requireServices('kafka', 'postgres');
      cluster = startPrivatePostgres({
        initdb: ['--wal-segsize=1'],
        settings: {
          wal_level: 'logical',
          max_replication_slots: '4',
          max_wal_senders: '4',
          max_slot_wal_keep_size: '1MB',
          wal_keep_size: '0',
        },
      });
      const admin = createOltpPool({ ...config, OLTP_DATABASE_URL: cluster.url('postgres') }, 1);
      await admin.query('create database paylink_oltp');
      await admin.end();
      pool = createOltpPool({ ...config, OLTP_DATABASE_URL: cluster.url('paylink_oltp') });
      await ensureOltpSchema(pool, schema);
      vault = await openVault(config);
      const kafkaAdmin = kafka.admin();
      await kafkaAdmin.connect();
      from = await topicEnds(kafkaAdmin, TOPICS.cdcPayments);
      await kafkaAdmin.disconnect();
    });

    after(async () => {
      await publisher.close().catch(() => undefined);
      await vault?.close();
      await pool?.end();
      cluster?.stop();
    });

    it('a running reader drops the lost slot, re-snapshots under new keys and keeps streaming', async () => {
      await recordInOltp(pool, created.slice(0, 3), schema);
      const reader = newReader();
      const opened = await reader.start();
      assert.equal(opened.snapshotRows, 3);
      await recordInOltp(pool, created.slice(3, 4), schema);
      assert.equal((await reader.poll()).records, 1, 'the stream works before the slot is lost');

      await invalidateSlot();
      await recordInOltp(pool, created.slice(4, 5), schema); // written while the slot is lost: only a snapshot has it

      const recovered = await reader.poll();
      assert.equal(recovered.records, 5, 'every row again, as a snapshot');
      assert.equal(reader.counters.resnapshots, 1);
      const slotNow = await slotRow();
      assert.equal(slotNow?.status, 'reserved', 'a new, usable slot');
      assert.notEqual(slotNow?.restart, null);
      const state = (
        await pool.query<{ lsn: string; done: boolean }>(
          'select snapshot_lsn::text as lsn, snapshot_completed_at is not null as done from paylink_cdc.reader_state where slot_name = $1',
          [slot],
        )
      ).rows[0];
      assert.deepEqual(state, { lsn: recovered.confirmedLsn, done: true });
      const logged = errors.filter((e) => e.slot === slot);
      assert.equal(logged.length, 1, 'one error-level line names the slot');
      assert.equal(logged[0]!.resnapshots, 1);

      // No crash loop and no snapshot loop: the next polls stream from the new slot.
      await recordInOltp(pool, created.slice(5, 6), schema);
      let streamed = 0;
      for (let i = 0; i < 3; i += 1) streamed += (await reader.poll()).records;
      assert.equal(streamed, 1);
      assert.equal(reader.counters.resnapshots, 1);

      // Partitions interleave: done once both snapshots (3 + 5 rows) and the row streamed last arrived.
      const seen = await changes(
        (s) => s.filter((c) => c.op === 'r').length >= 8 && s.some((c) => c.op === 'c' && c.id === ids[5]),
      );
      const lsns = [...new Set(seen.filter((c) => c.op === 'r').map((c) => c.lsn))].sort((a, b) => a - b);
      assert.equal(lsns.length, 2, 'two snapshots, each with its own LSN');
      const [first, again] = [snapshotOf(seen, lsns[0]!), snapshotOf(seen, lsns[1]!)];
      assert.deepEqual(first.map((c) => c.id).sort(), ids.slice(0, 3).sort());
      assert.deepEqual(again.map((c) => c.id).sort(), ids.slice(0, 5).sort(), 'the row written while lost is there');
      assert.deepEqual(again.map((c) => c.snapshot).sort(), ['last', 'true', 'true', 'true', 'true']);
      for (const old of first) {
        const twin = again.find((c) => c.id === old.id)!;
        assert.equal(twin.key, old.key, 'same Kafka key (the primary key)');
        assert.notEqual(twin.idempotencyKey, old.idempotencyKey, 'a new idempotency key: the LSN is new');
      }
      const streamedRow = seen.find((c) => c.op === 'c' && c.id === ids[5])!;
      assert.ok(streamedRow.lsn > lsns[1]!, 'streamed after the new snapshot');
    });

    it('a reader that starts on a lost slot replaces it before reading', async () => {
      await invalidateSlot(); // nobody polls: as if the reader were down while WAL piled up
      const restarted = newReader();
      const opened = await restarted.start();
      assert.deepEqual(
        {
          slotCreated: opened.slotCreated,
          snapshotRows: opened.snapshotRows,
          resnapshots: restarted.counters.resnapshots,
        },
        { slotCreated: true, snapshotRows: 6, resnapshots: 1 },
      );
      assert.equal((await slotRow())?.status, 'reserved');
      await recordInOltp(pool, created.slice(6, 7), schema);
      assert.equal((await restarted.poll()).records, 1);
    });
  },
);

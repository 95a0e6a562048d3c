import type { Pool, PoolClient } from 'pg';
import type { Config } from '../../config';
import { type EdgeMessage, type SchemaRef, cdcIdempotencyKey, rawMessage } from '../../contracts/envelope';
import { type Logger, errorMessage } from '../../logger';
import { CURRENT_SCHEMAS, type RegisteredSchemaName } from '../../quality/schema-registry';
import { OLTP_TABLES, assertSchemaName } from '../../stores/oltp';
import type { Vault } from '../../stores/vault';
import { type TopicSet, topicsFor } from '../../streams/kafka';
import type { Publisher } from '../../streams/publish';
import { type Tokenizer, tokenizerFromConfig } from '../tokenize';
import {
  type ColumnValue,
  type PgOutputMessage,
  type RelationColumn,
  decodeColumn,
  decodeTuple,
  formatLsn,
  parseLsn,
  parsePgOutputMessage,
  pgTimeToUnixMs,
  stringifyExact,
} from './pgoutput';

// The CDC reader, PayLink's stand-in for Debezium's PostgreSQL connector: a logical slot (pgoutput)
// read through the SQL interface, Debezium-format envelopes on Kafka, and only then the slot advanced.
// At-least-once: a crash between produce and advance re-emits the same changes with the same LSNs.

/** source.version: says which producer wrote the envelope (Debezium writes e.g. "2.7.3.Final"). */
export const CDC_READER_VERSION = 'paylink-pgoutput-reader/1';

/** Changes per Kafka transaction (~1–4 KB each; the publisher splits requests under the broker's limit). */
const PRODUCE_CHUNK = 200;
/** A chunk's transaction may take this long before the round fails (a commit in flight is waited out). */
const PUBLISH_TIMEOUT_MS = 30_000;

/** Exit code of the crash-test fault (PAYLINK_FAULT_CDC_EXIT_BEFORE_ADVANCE): produced, slot not advanced. */
export const CDC_FAULT_EXIT_CODE = 86;

/** The registered schema of each captured table's rows (the `schema` header). */
const SCHEMA_OF_TABLE: Readonly<Record<string, RegisteredSchemaName>> = {
  payments: 'debezium-oltp-payments',
  ledger_entries: 'debezium-oltp-ledger-entries',
};

function schemaOfTable(table: string): SchemaRef {
  const name = SCHEMA_OF_TABLE[table];
  if (name === undefined) {
    throw new Error(`CDC: table ${table} has no registered schema; register it in src/quality/schema-registry.ts`);
  }
  return CURRENT_SCHEMAS[name];
}

export type Row = Record<string, ColumnValue>;
export type SnapshotMarker = 'true' | 'last' | 'false';

/** One Debezium-format change event, before tokenization. */
export interface ChangeRecord {
  topic: string;
  /** `schema.table` */
  table: string;
  /** Debezium's message key: the primary-key columns; null for truncate. */
  key: Row | null;
  value: DebeziumValue;
  idempotencyKey: string;
}

export interface DebeziumValue {
  before: Row | null;
  after: Row | null;
  source: {
    version: string;
    connector: 'postgresql';
    name: string;
    ts_ms: number;
    snapshot: SnapshotMarker;
    db: string;
    sequence: string;
    schema: string;
    table: string;
    txId: number;
    lsn: number | bigint;
    xmin: null;
  };
  transaction: null;
  op: 'r' | 'c' | 'u' | 'd' | 't';
  ts_ms: number;
}

export interface SourceContext {
  /** Debezium's topic.prefix / logical server name. */
  serverName: string;
  db: string;
  /** Envelope ts_ms: when the reader processed the change. */
  now: () => number;
  /** Where our tables' changes go. */
  topics: Pick<TopicSet, 'cdcPayments' | 'cdcLedgerEntries'>;
}

const lsnValue = (lsn: bigint): number | bigint => (lsn <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(lsn) : lsn);

export function buildEnvelope(
  ctx: SourceContext,
  change: {
    op: DebeziumValue['op'];
    schema: string;
    table: string;
    before: Row | null;
    after: Row | null;
    tsMs: number;
    snapshot: SnapshotMarker;
    txId: number;
    lsn: bigint;
    lastCommitLsn: bigint | null;
  },
): DebeziumValue {
  return {
    before: change.before,
    after: change.after,
    source: {
      version: CDC_READER_VERSION,
      connector: 'postgresql',
      name: ctx.serverName,
      ts_ms: change.tsMs,
      snapshot: change.snapshot,
      db: ctx.db,
      // Debezium's [lastCommitLsn, lsn] as decimal strings: lets consumers order and dedup across restarts.
      sequence: JSON.stringify([
        change.lastCommitLsn === null ? null : String(change.lastCommitLsn),
        String(change.lsn),
      ]),
      schema: change.schema,
      table: change.table,
      txId: change.txId,
      lsn: lsnValue(change.lsn),
      xmin: null,
    },
    transaction: null,
    op: change.op,
    ts_ms: ctx.now(),
  };
}

/** Our two tables have the project's topics (whatever their schema); any other follows Debezium's prefix.schema.table. */
function topicOf(ctx: SourceContext, schema: string, table: string): string {
  const ours: Record<string, string> = {
    payments: ctx.topics.cdcPayments,
    ledger_entries: ctx.topics.cdcLedgerEntries,
  };
  return ours[table] ?? `${ctx.serverName}.${schema}.${table}`;
}

function keyOf(row: Row, keyColumns: readonly string[], what: string): Row {
  if (keyColumns.length === 0) throw new Error(`CDC: ${what} has no primary key; Debezium keys need one`);
  const key: Row = {};
  for (const c of keyColumns) key[c] = row[c] ?? null;
  return key;
}

function changeRecord(ctx: SourceContext, value: DebeziumValue, key: Row | null): ChangeRecord {
  const table = `${value.source.schema}.${value.source.table}`;
  const lsn = String(value.source.lsn);
  return {
    topic: topicOf(ctx, value.source.schema, value.source.table),
    table,
    key,
    value,
    idempotencyKey: cdcIdempotencyKey(ctx.db, table, key, lsn),
  };
}

interface Relation {
  namespace: string;
  name: string;
  columns: RelationColumn[];
  keyColumns: string[];
}

/** Peek output rows: the WAL position of each message, its transaction id and the pgoutput bytes. */
export interface SlotRow {
  lsn: string;
  xid: string;
  data: Buffer;
}

export interface DecodedBatch {
  records: ChangeRecord[];
  transactions: number;
  /** End of the last complete transaction: where the slot may be advanced to. */
  lastCommitEndLsn: bigint | null;
  /** Commit LSN of the last transaction, for the next batch's source.sequence. */
  lastCommitLsn: bigint | null;
}

/**
 * Turns one peek's pgoutput messages into Debezium envelopes. `relations` persists across calls
 * (pgoutput sends a Relation before a table's first change in each decoding session).
 */
export function decodeSlotRows(
  rows: readonly SlotRow[],
  ctx: SourceContext,
  relations: Map<number, Relation>,
  lastCommitLsn: bigint | null,
): DecodedBatch {
  const records: ChangeRecord[] = [];
  let transactions = 0;
  let lastCommitEndLsn: bigint | null = null;
  let txn: { xid: number; tsMs: number; records: ChangeRecord[] } | undefined;
  const relation = (id: number, message: string): Relation => {
    const r = relations.get(id);
    if (!r) throw new Error(`pgoutput: ${message} for relation ${id} before its Relation message`);
    return r;
  };

  for (const row of rows) {
    let message: PgOutputMessage;
    try {
      message = parsePgOutputMessage(row.data);
    } catch (err) {
      throw new Error(`slot row at ${row.lsn} (xid ${row.xid}): ${errorMessage(err)}`);
    }
    const lsn = parseLsn(row.lsn);
    const emit = (op: DebeziumValue['op'], rel: Relation, before: Row | null, after: Row | null): void => {
      if (!txn) throw new Error(`pgoutput: ${op} change at ${row.lsn} outside a transaction`);
      const value = buildEnvelope(ctx, {
        op,
        schema: rel.namespace,
        table: rel.name,
        before,
        after,
        tsMs: txn.tsMs,
        snapshot: 'false',
        txId: txn.xid,
        lsn,
        lastCommitLsn,
      });
      // A truncate has neither row, so no key.
      const keyRow = op === 'd' ? before : after;
      txn.records.push(
        changeRecord(
          ctx,
          value,
          keyRow === null ? null : keyOf(keyRow, rel.keyColumns, `${rel.namespace}.${rel.name}`),
        ),
      );
    };

    switch (message.tag) {
      case 'begin':
        txn = { xid: message.xid, tsMs: pgTimeToUnixMs(message.commitTimeUs), records: [] };
        break;
      case 'commit':
        if (txn) records.push(...txn.records);
        txn = undefined;
        transactions += 1;
        lastCommitLsn = message.commitLsn;
        lastCommitEndLsn = message.endLsn;
        break;
      case 'relation':
        relations.set(message.relationId, {
          namespace: message.namespace,
          name: message.name,
          columns: message.columns,
          keyColumns: message.columns.filter((c) => c.isKey).map((c) => c.name),
        });
        break;
      case 'insert': {
        const rel = relation(message.relationId, 'insert');
        emit('c', rel, null, decodeTuple(rel.columns, message.newTuple));
        break;
      }
      case 'update': {
        const rel = relation(message.relationId, 'update');
        const after = decodeTuple(rel.columns, message.newTuple);
        const old = message.oldTuple ? decodeTuple(rel.columns, message.oldTuple.values) : null;
        // Column values are primitives (bigint included), so !== compares them by value.
        const keyChanged = old !== null && rel.keyColumns.some((c) => old[c] !== after[c]);
        if (keyChanged) {
          // As Debezium does for a primary-key change: a delete under the old key, a create under the new one.
          emit('d', rel, old, null);
          emit('c', rel, null, after);
        } else {
          // REPLICA IDENTITY DEFAULT sends no old row: before is null, as in Debezium.
          emit('u', rel, message.oldTuple?.kind === 'full' ? old : null, after);
        }
        break;
      }
      case 'delete': {
        const rel = relation(message.relationId, 'delete');
        // Under DEFAULT only the key columns are set; the others are null (Debezium's before).
        emit('d', rel, decodeTuple(rel.columns, message.oldTuple.values), null);
        break;
      }
      case 'truncate':
        for (const id of message.relationIds) emit('t', relation(id, 'truncate'), null, null);
        break;
      case 'type':
      case 'origin':
      case 'message':
        // Custom types decode as text; origins and logical messages are not row changes.
        break;
    }
  }
  return { records, transactions, lastCommitEndLsn, lastCommitLsn };
}

export interface CdcReaderOptions {
  pool: Pool;
  /** The edge's publish step: a change too large to produce is quarantined with a claim check, never stalls the slot. */
  publisher: Pick<Publisher, 'publish'>;
  topics: Pick<TopicSet, 'cdcPayments' | 'cdcLedgerEntries'>;
  tokenizer: Tokenizer;
  vault: Pick<Vault, 'store'>;
  log: Logger;
  slot: string;
  publication: string;
  schema: string;
  serverName: string;
  /** Changes per peek (a peek ends on a transaction boundary, so it may return more). */
  batchSize: number;
  /** Called after Kafka acknowledged a batch and before the slot advances (crash tests hook in here). */
  afterProduce?: (batch: { records: number; advanceTo: string }) => void | Promise<void>;
}

export interface PollResult {
  records: number;
  transactions: number;
  /** Where the slot now stands (confirmed_flush_lsn), e.g. "0/16B3748". */
  confirmedLsn: string;
}

export interface SlotOpened {
  snapshotRows: number;
  slotCreated: boolean;
  /** The LSN the snapshot rows carry: the slot's consistent point. */
  snapshotLsn: string;
}

export interface CdcReader {
  /** Tables, publication, slot; the initial snapshot (op r) if the slot is new, was lost or it never completed. */
  start(): Promise<SlotOpened>;
  /** One peek → produce → advance round; or, if Postgres invalidated the slot, a new slot and its snapshot. */
  poll(): Promise<PollResult>;
  /** Since start: slots found invalidated (wal_status 'lost'), dropped, recreated and snapshotted again. */
  readonly counters: { resnapshots: number };
}

/**
 * The reader as its process builds it: topics, tokenizer, slot, publication, schema, server name and batch
 * size from `config`; the clients from the caller (a test passes a config naming a slot of its own).
 */
export function cdcReaderFromConfig(
  config: Config,
  deps: Pick<CdcReaderOptions, 'pool' | 'publisher' | 'vault' | 'log' | 'afterProduce'>,
): CdcReader {
  return createCdcReader({
    ...deps,
    topics: topicsFor(config),
    tokenizer: tokenizerFromConfig(config),
    slot: config.CDC_SLOT,
    publication: config.CDC_PUBLICATION,
    schema: config.CDC_SCHEMA,
    serverName: config.CDC_SERVER_NAME,
    batchSize: config.CDC_BATCH_SIZE,
  });
}

/** Postgres removed WAL the slot still needed (max_slot_wal_keep_size): it can never be read again. */
const SLOT_LOST = 'lost';
/** SQLSTATE object_not_in_prerequisite_state: what a peek on an invalidated slot fails with. */
const SLOT_NOT_USABLE = '55000';

const STATE_DDL = `
  create schema if not exists paylink_cdc;
  create table if not exists paylink_cdc.reader_state (
    slot_name             text primary key,
    snapshot_lsn          pg_lsn not null,
    snapshot_completed_at timestamptz
  );`;

/** Every column as Postgres' text output, typed by OID like the stream: snapshot and stream values agree. */
const AS_TEXT = { getTypeParser: () => (value: string) => value };

export function createCdcReader(options: CdcReaderOptions): CdcReader {
  const { pool, publisher, tokenizer, vault, log, slot, publication, batchSize } = options;
  const schema = assertSchemaName(options.schema);
  const relations = new Map<number, Relation>();
  let ctx: SourceContext | undefined;

  const context = async (): Promise<SourceContext> => {
    if (!ctx) {
      const db = (await pool.query<{ db: string }>('select current_database() as db')).rows[0]!.db;
      ctx = { serverName: options.serverName, db, now: Date.now, topics: options.topics };
    }
    return ctx;
  };

  /** Tokenizes row values (PII such as customer_email), stores originals in the vault, then produces with acks=all. */
  const produceChanges = async (records: ChangeRecord[]): Promise<void> => {
    if (records.length === 0) return;
    const vaultEntries: Parameters<Vault['store']>[0] = [];
    const messages: EdgeMessage[] = [];
    const receivedAt = new Date().toISOString();
    for (const record of records) {
      // The key and the idempotency key are tokenized with the rows: a primary key can hold a card number.
      const tokenized = tokenizer.tokenize({
        before: record.value.before,
        after: record.value.after,
        key: record.key,
        idempotencyKey: record.idempotencyKey,
      });
      vaultEntries.push(...tokenized.vault);
      const rows = tokenized.payload as {
        before: Row | null;
        after: Row | null;
        key: Row | null;
        idempotencyKey: string;
      };
      const value = { ...record.value, before: rows.before, after: rows.after };
      const region = (rows.after ?? rows.before)?.region;
      messages.push(
        rawMessage(
          record.topic,
          rows.key === null ? null : stringifyExact(rows.key),
          Buffer.from(stringifyExact(value)),
          {
            source: 'cdc',
            idempotencyKey: rows.idempotencyKey,
            receivedAt,
            ...(typeof region === 'string' && { region }),
          },
          schemaOfTable(record.value.source.table),
        ),
      );
    }
    // Originals reach the vault before any token reaches Kafka: a token on Kafka can always be resolved.
    await vault.store(vaultEntries);
    // One Postgres transaction can hold thousands of changes: a Kafka transaction per chunk. A change too
    // large to produce once tokenized is quarantined with a claim check; one that could be neither fails the
    // round, so the slot does not advance past it (the next round re-reads it).
    for (let k = 0; k < messages.length; k += PRODUCE_CHUNK) {
      const chunk = messages.slice(k, k + PRODUCE_CHUNK).map((m) => ({ records: [m] }));
      const outcomes = await publisher.publish(chunk, { timeoutMs: PUBLISH_TIMEOUT_MS });
      const deferred = outcomes.find((o) => o.kind === 'deferred');
      if (deferred) throw new Error(`a change could be neither produced nor claim-checked: ${deferred.error}`);
      for (const o of outcomes) {
        if (o.kind === 'quarantined') log.warn('cdc change quarantined with a claim check', { ...o });
      }
    }
  };

  const snapshot = async (snapshotLsn: bigint): Promise<number> => {
    const c = await context();
    const client = await pool.connect();
    let produced = 0;
    try {
      // Started after the slot: a row committed in between is in both (at-least-once), never in neither.
      await client.query('begin isolation level repeatable read read only');
      const txId = Number((await client.query<{ x: string }>('select txid_current()::text as x')).rows[0]!.x);
      const tsMs = Date.now();
      const counts = new Map<string, number>();
      for (const table of OLTP_TABLES) {
        const n = await client.query<{ n: string }>(`select count(*)::text as n from ${schema}.${table}`);
        counts.set(table, Number(n.rows[0]!.n));
      }
      const total = [...counts.values()].reduce((a, b) => a + b, 0);
      for (const table of OLTP_TABLES) {
        const keyColumns = await primaryKeyColumns(client, `${schema}.${table}`);
        await client.query(
          `declare snapshot_${table} no scroll cursor for select * from ${schema}.${table} order by ${keyColumns.join(', ')}`,
        );
        for (;;) {
          const page = await client.query({
            text: `fetch 1000 from snapshot_${table}`,
            rowMode: 'array',
            types: AS_TEXT,
          });
          if (page.rows.length === 0) break;
          const records = (page.rows as (string | null)[][]).map((values) => {
            const after: Row = {};
            page.fields.forEach((f, i) => {
              const v = values[i];
              after[f.name] = v === null || v === undefined ? null : decodeColumn(f.dataTypeID, v);
            });
            produced += 1;
            const value = buildEnvelope(c, {
              op: 'r',
              schema,
              table,
              before: null,
              after,
              tsMs,
              snapshot: produced === total ? 'last' : 'true',
              txId,
              lsn: snapshotLsn,
              lastCommitLsn: null,
            });
            return changeRecord(c, value, keyOf(after, keyColumns, `${schema}.${table}`));
          });
          await produceChanges(records);
        }
      }
      await client.query('commit');
    } catch (err) {
      await client.query('rollback').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
    return produced;
  };

  const counters = { resnapshots: 0 };
  /** True from a lost slot's drop until its replacement's snapshot completed: the stream is not read meanwhile. */
  let snapshotPending = false;

  const walStatus = async (): Promise<string | undefined> =>
    (
      await pool.query<{ status: string | null }>(
        'select wal_status as status from pg_replication_slots where slot_name = $1',
        [slot],
      )
    ).rows[0]?.status ?? undefined;

  /** The WAL between the slot's position and now is gone: only a new slot plus a snapshot resumes without a gap. */
  const dropLostSlot = async (why: string): Promise<void> => {
    snapshotPending = true;
    counters.resnapshots += 1;
    log.error('replication slot invalidated (wal_status lost): dropping it, recreating it and re-snapshotting', {
      slot,
      why,
      resnapshots: counters.resnapshots,
    });
    await pool.query('select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1', [
      slot,
    ]);
    await pool.query('delete from paylink_cdc.reader_state where slot_name = $1', [slot]);
    relations.clear();
  };

  /** The slot (created if missing, replaced if lost) and its snapshot unless one already completed at its LSN. */
  const openSlot = async (): Promise<SlotOpened> => {
    const existing = await pool.query<{ lsn: string; status: string | null }>(
      'select confirmed_flush_lsn::text as lsn, wal_status as status from pg_replication_slots where slot_name = $1',
      [slot],
    );
    if (existing.rows[0]?.status === SLOT_LOST) {
      await dropLostSlot(`found invalidated at ${existing.rows[0].lsn}`);
      return openSlot();
    }
    let slotCreated = false;
    let state = (
      await pool.query<{ lsn: string; done: boolean }>(
        'select snapshot_lsn::text as lsn, snapshot_completed_at is not null as done from paylink_cdc.reader_state where slot_name = $1',
        [slot],
      )
    ).rows[0];
    if (existing.rowCount === 0) {
      // A new (or dropped) slot starts at its consistent point: everything before it must come from a snapshot.
      const created = await pool.query<{ lsn: string }>(
        `select lsn::text as lsn from pg_create_logical_replication_slot($1, 'pgoutput')`,
        [slot],
      );
      slotCreated = true;
      state = { lsn: created.rows[0]!.lsn, done: false };
      log.info('replication slot created', { slot, consistentPoint: state.lsn });
    } else if (!state) {
      // Slot created but the reader died before recording it: it has not advanced, so its position is the start.
      state = { lsn: existing.rows[0]!.lsn, done: false };
    }
    await pool.query(
      `insert into paylink_cdc.reader_state (slot_name, snapshot_lsn) values ($1, $2::pg_lsn)
       on conflict (slot_name) do update set snapshot_lsn = excluded.snapshot_lsn,
         snapshot_completed_at = case when excluded.snapshot_lsn = reader_state.snapshot_lsn then reader_state.snapshot_completed_at end`,
      [slot, state.lsn],
    );
    if (state.done) {
      snapshotPending = false;
      return { snapshotRows: 0, slotCreated, snapshotLsn: state.lsn };
    }
    const snapshotRows = await snapshot(parseLsn(state.lsn));
    await pool.query('update paylink_cdc.reader_state set snapshot_completed_at = now() where slot_name = $1', [slot]);
    snapshotPending = false;
    log.info('snapshot complete', {
      slot,
      rows: snapshotRows,
      snapshotLsn: state.lsn,
      resnapshots: counters.resnapshots,
    });
    return { snapshotRows, slotCreated, snapshotLsn: state.lsn };
  };

  /** A poll that replaces the stream by a snapshot: its rows are the records produced. */
  const snapshotRound = async (): Promise<PollResult> => {
    const opened = await openSlot();
    return { records: opened.snapshotRows, transactions: 0, confirmedLsn: opened.snapshotLsn };
  };

  return {
    counters,

    async start() {
      // The tables are PayLink's (its API creates them): the reader only checks they are there.
      const missing = (
        await pool.query<{ table: string }>(
          `select t as table from unnest($1::text[]) t where to_regclass($2 || '.' || t) is null`,
          [OLTP_TABLES, schema],
        )
      ).rows.map((r) => `${schema}.${r.table}`);
      if (missing.length > 0) {
        throw new Error(
          `CDC: PayLink's OLTP tables ${missing.join(', ')} do not exist in ${options.serverName}; the reader captures, it never creates them`,
        );
      }
      await pool.query(STATE_DDL);
      const published = await pool.query('select 1 from pg_publication where pubname = $1', [publication]);
      if (published.rowCount === 0) {
        await pool
          .query(`create publication ${publication} for table ${OLTP_TABLES.map((t) => `${schema}.${t}`).join(', ')}`)
          .catch((err: unknown) => {
            if ((err as { code?: string }).code !== '42710') throw err; // created concurrently: fine
          });
      }
      return openSlot();
    },

    async poll() {
      if (snapshotPending) return snapshotRound(); // the replacement's snapshot failed midway: finish it first
      const c = await context();
      const position = await pool.query<{ confirmed: string; flushed: string; status: string | null }>(
        `select confirmed_flush_lsn::text as confirmed, pg_current_wal_flush_lsn()::text as flushed, wal_status as status
         from pg_replication_slots where slot_name = $1`,
        [slot],
      );
      const at = position.rows[0];
      if (!at)
        throw new Error(`replication slot "${slot}" does not exist (dropped?); restart the reader to re-snapshot`);
      if (at.status === SLOT_LOST) {
        await dropLostSlot(`wal_status lost at ${at.confirmed}`);
        return snapshotRound();
      }
      const confirmed = parseLsn(at.confirmed);
      const flushed = parseLsn(at.flushed);
      let peeked;
      try {
        peeked = await pool.query<SlotRow>(
          `select lsn::text as lsn, xid::text as xid, data
           from pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, $3, 'proto_version', '1', 'publication_names', $4)`,
          [slot, at.flushed, batchSize, publication],
        );
      } catch (err) {
        // Invalidated since the position was read; judged by wal_status, not by the (localisable) message.
        if ((err as { code?: string }).code !== SLOT_NOT_USABLE || (await walStatus()) !== SLOT_LOST) throw err;
        await dropLostSlot(`peek refused: ${errorMessage(err)}`);
        return snapshotRound();
      }
      // The slot's position stands in for the previous commit: a re-read after a crash writes the same sequence.
      const batch = decodeSlotRows(peeked.rows, c, relations, confirmed);
      // A short peek decoded all WAL up to `flushed`: advancing there keeps an idle slot from pinning WAL.
      const reachedFlushed = peeked.rows.length < batchSize;
      let target = batch.lastCommitEndLsn ?? confirmed;
      if (reachedFlushed && flushed > target) target = flushed;
      await produceChanges(batch.records);
      await options.afterProduce?.({ records: batch.records.length, advanceTo: formatLsn(target) });
      if (target > confirmed) {
        await pool.query('select pg_replication_slot_advance($1, $2::pg_lsn)', [slot, formatLsn(target)]);
      }
      return {
        records: batch.records.length,
        transactions: batch.transactions,
        confirmedLsn: formatLsn(target > confirmed ? target : confirmed),
      };
    },
  };
}

async function primaryKeyColumns(client: PoolClient, table: string): Promise<string[]> {
  const result = await client.query<{ name: string }>(
    `select a.attname as name
     from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
     where i.indrelid = $1::regclass and i.indisprimary
     order by array_position(i.indkey::int2[], a.attnum)`,
    [table],
  );
  return result.rows.map((r) => r.name);
}

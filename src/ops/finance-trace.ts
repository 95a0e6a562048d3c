import type { S3Client } from '@aws-sdk/client-s3';
import type { Client } from '@temporalio/client';
import type { Pool } from 'pg';
import { type KafkaCoordinates, traceIdOf } from '../contracts/envelope';
import { manifestEntryHolding } from '../stores/archive';
import type { SnowflakeQueries } from '../stores/snowflake';
import {
  type FactCoordinateRow,
  factCoordinateColumns,
  factCoordinates,
  kafkaCoordinates,
} from '../stores/payment-inbox';

// `npm run trace -- <paymentId | journal entry id | idempotency key>`: one payment's money trail, hop by
// hop — the source events (trace id; the raw record and the fact's message on the facts topic by topic,
// partition and offset, with the archive object holding each), the facts and their idempotency keys, the workflow, the journal
// entries and lines, the Snowflake rows with their load id, window and seal. Each hop says whether it
// was found, so a missing link shows as a missing link.

export interface TraceHop {
  hop:
    'source event' | 'fact message' | 'fact' | 'workflow' | 'journal entry' | 'journal line' | 'snowflake row' | 'seal';
  /** What identifies it in its store (a key, an id, a link). */
  ref: string;
  exists: boolean;
  detail: Record<string, unknown>;
}

export interface MoneyTrail {
  query: string;
  paymentId: string | null;
  hops: TraceHop[];
}

/** The payment a trace argument names: a journal entry id, an idempotency key, or a payment id. */
async function paymentOf(pool: Pool, query: string): Promise<string | null> {
  if (/^\d+$/.test(query)) {
    const r = await pool.query<{ payment_id: string }>(
      'select payment_id from ledger.journal_entries where entry_id = $1',
      [query],
    );
    if (r.rows[0]) return r.rows[0].payment_id;
  }
  const byKey = await pool.query<{ payment_id: string }>(
    `select payment_id from payments.facts where idempotency_key = $1
     union select payment_id from ledger.journal_entries where idempotency_key = $1 limit 1`,
    [query],
  );
  if (byKey.rows[0]) return byKey.rows[0].payment_id;
  const byPayment = await pool.query(
    'select 1 from payments.facts where payment_id = $1 union select 1 from ledger.journal_entries where payment_id = $1',
    [query],
  );
  return byPayment.rows.length > 0 ? query : null;
}

export interface TraceDeps {
  pool: Pool;
  snowflake: SnowflakeQueries;
  /** Temporal, for the workflow hop; without it the hop is reported unchecked. */
  client?: Client;
  uiUrl: string;
  namespace: string;
  /** The raw archive, to name the object holding each record; without it only the coordinates print. */
  archive?: { s3: S3Client; bucket: string };
}

/** `<topic>[<partition>]@<offset>`: how trace names a Kafka record. */
export const recordRef = (at: KafkaCoordinates): string => `${at.topic}[${at.partition}]@${at.offset}`;

/** The archive object holding a record (s3 URL and version), or why none is named. */
async function archivedAt(deps: TraceDeps, at: KafkaCoordinates): Promise<Record<string, unknown>> {
  if (!deps.archive) return { archive: 'not looked up (no S3 configured)' };
  const { s3, bucket } = deps.archive;
  const entry = await manifestEntryHolding(s3, bucket, at.topic, at.partition, at.offset);
  if (!entry) return { archive: 'not in the archive (not archived yet, or expired)' };
  return { archive: { object: `s3://${bucket}/${entry.key}`, versionId: entry.versionId, manifestSeq: entry.seq } };
}

/** The SOURCE_* columns of a Snowflake row as trace names a record, or null when they are null. */
function snowflakeRecord(r: {
  SOURCE_TOPIC: string | null;
  SOURCE_PARTITION: number | null;
  SOURCE_OFFSET: string | null;
}): string | null {
  const at = kafkaCoordinates(
    r.SOURCE_TOPIC,
    r.SOURCE_PARTITION === null ? null : Number(r.SOURCE_PARTITION),
    r.SOURCE_OFFSET,
  );
  return at ? recordRef(at) : null;
}

export async function traceMoney(deps: TraceDeps, query: string): Promise<MoneyTrail> {
  const { pool, snowflake } = deps;
  const paymentId = await paymentOf(pool, query);
  if (!paymentId) return { query, paymentId: null, hops: [] };
  const hops: TraceHop[] = [];

  const facts = await pool.query<
    {
      idempotency_key: string;
      fact_type: string;
      received_at: Date;
      signalled_at: Date | null;
      absorbed: boolean;
      source: string | null;
      source_sequence: string | null;
      region: string | null;
      trace_id: string | null;
    } & FactCoordinateRow
  >(
    `select idempotency_key, fact_type, received_at, signalled_at, absorbed, body->>'source' as source,
            body->>'sourceSequence' as source_sequence, body->>'region' as region, body->>'traceId' as trace_id,
            ${factCoordinateColumns('f')}
       from payments.facts f where payment_id = $1 order by received_at`,
    [paymentId],
  );
  for (const f of facts.rows) {
    const traceId = f.trace_id ?? traceIdOf(f.idempotency_key);
    // The raw record by its coordinates where the path names them (CDC, backfill), else by its `trace-id` header.
    const { rawRecord: raw, sourceRecord: message } = factCoordinates(f);
    hops.push({
      hop: 'source event',
      ref: `trace-id ${traceId}`,
      exists: true,
      detail: {
        source: f.source,
        sourceSequence: f.source_sequence,
        region: f.region,
        ...(raw ? { record: recordRef(raw), ...(await archivedAt(deps, raw)) } : {}),
      },
    });
    if (message) {
      hops.push({
        hop: 'fact message',
        ref: recordRef(message),
        exists: true,
        detail: await archivedAt(deps, message),
      });
    }
    hops.push({
      hop: 'fact',
      ref: f.idempotency_key,
      exists: true,
      detail: {
        type: f.fact_type,
        receivedAt: f.received_at.toISOString(),
        handled: f.absorbed ? 'absorbed' : f.signalled_at ? 'signalled' : 'pending',
      },
    });
  }

  const workflowId = `payment/${paymentId}`;
  const link = `${deps.uiUrl}/namespaces/${deps.namespace}/workflows/${encodeURIComponent(workflowId)}`;
  let workflowExists = false;
  let status: string | undefined;
  if (deps.client) {
    try {
      status = (await deps.client.workflow.getHandle(workflowId).describe()).status.name;
      workflowExists = true;
    } catch {
      workflowExists = false;
    }
  }
  hops.push({ hop: 'workflow', ref: workflowId, exists: workflowExists, detail: { link, ...(status && { status }) } });

  const entries = await pool.query<{
    entry_id: number;
    xid: string;
    fact_type: string;
    idempotency_key: string;
    trace_id: string | null;
    posted_at: Date;
  }>(
    `select entry_id, xid::text as xid, fact_type, idempotency_key, trace_id, posted_at from ledger.journal_entries
      where payment_id = $1 order by entry_id`,
    [paymentId],
  );
  const lines = await pool.query<{
    line_id: number;
    entry_id: number;
    account_code: string;
    side: string;
    amount_minor: string;
    currency: string;
  }>(
    `select l.line_id, l.entry_id, l.account_code, l.side, l.amount_minor::text as amount_minor, l.currency::text as currency
       from ledger.journal_lines l join ledger.journal_entries e on e.entry_id = l.entry_id
      where e.payment_id = $1 order by l.line_id`,
    [paymentId],
  );
  const ids = entries.rows.map((e) => e.entry_id);
  type WarehouseRow = {
    ENTRY_ID: number;
    LOAD_ID: string;
    XID: number;
    ROW_HASH: string;
    SOURCE_TOPIC: string | null;
    SOURCE_PARTITION: number | null;
    SOURCE_OFFSET: string | null;
  };
  const warehouse = new Map<number, WarehouseRow>();
  const seals: { LO: string; HI: string; SEAL: string; PUBLISHED_AT: string }[] = [];
  if (ids.length > 0) {
    const rows = await snowflake.query<WarehouseRow>(
      `SELECT ENTRY_ID, LOAD_ID, XID, ROW_HASH, SOURCE_TOPIC, SOURCE_PARTITION, TO_VARCHAR(SOURCE_OFFSET) AS SOURCE_OFFSET
         FROM FINANCE.JOURNAL_ENTRIES WHERE ENTRY_ID IN (${ids.map(() => '?').join(', ')})`,
      ids,
    );
    for (const r of rows) warehouse.set(r.ENTRY_ID, r);
    seals.push(
      ...(await snowflake.query<{ LO: string; HI: string; SEAL: string; PUBLISHED_AT: string }>(
        `SELECT TO_VARCHAR(LO_XID) AS LO, TO_VARCHAR(HI_XID) AS HI, SEAL, TO_VARCHAR(PUBLISHED_AT) AS PUBLISHED_AT
           FROM FINANCE.SEALS ORDER BY LO_XID`,
      )),
    );
  }
  for (const e of entries.rows) {
    hops.push({
      hop: 'journal entry',
      ref: String(e.entry_id),
      exists: true,
      detail: {
        fact: e.fact_type,
        idempotencyKey: e.idempotency_key,
        traceId: e.trace_id,
        xid: e.xid,
        postedAt: e.posted_at.toISOString(),
      },
    });
    for (const l of lines.rows.filter((x) => x.entry_id === e.entry_id)) {
      hops.push({
        hop: 'journal line',
        ref: String(l.line_id),
        exists: true,
        detail: { account: l.account_code, side: l.side, amountMinor: l.amount_minor, currency: l.currency },
      });
    }
    const row = warehouse.get(e.entry_id);
    hops.push({
      hop: 'snowflake row',
      ref: `FINANCE.JOURNAL_ENTRIES ENTRY_ID=${e.entry_id}`,
      exists: row !== undefined,
      detail: row ? { loadId: row.LOAD_ID, rowHash: row.ROW_HASH, sourceRecord: snowflakeRecord(row) } : {},
    });
    const xid = BigInt(e.xid);
    const seal = seals.find((s) => BigInt(s.LO) <= xid && xid < BigInt(s.HI));
    hops.push({
      hop: 'seal',
      ref: seal ? `window ${seal.LO}-${seal.HI}` : `window containing xid ${e.xid}`,
      exists: seal !== undefined,
      detail: seal ? { seal: seal.SEAL, publishedAt: seal.PUBLISHED_AT } : { note: 'not published yet' },
    });
  }
  return { query, paymentId, hops };
}

import type { Pool } from 'pg';
import type { QuarantineItem, QuarantinedAmount } from '../quality/quarantine';

// quality.quarantine and quality.quarantine_releases (migration 011): what was quarantined, the money it
// carries, and its releases. Insert-only, like the ledger: a redelivered item or a repeated release step is
// `on conflict do nothing`, and the caller reads what is there.

/** Records the item once; answers whether this call inserted it (false: a redelivery, already recorded). */
export async function recordQuarantined(
  pool: Pool,
  item: QuarantineItem,
  suspensePostingKey: string | null,
): Promise<boolean> {
  const a = item.amount;
  const r = await pool.query(
    `insert into quality.quarantine (quarantine_id, idempotency_key, source, schema_ref, reason, payment_id,
            merchant_id, event_type, amount_status, amount_minor, currency, amount_raw, suspense_posting_key,
            read_topic, read_partition, read_offset, record_key, record_headers, record_value, claim_check, received_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
     on conflict (quarantine_id) do nothing`,
    [
      item.quarantineId,
      item.idempotencyKey,
      item.source,
      item.schema,
      item.reason,
      item.paymentId,
      item.merchantId,
      item.eventType,
      a.status,
      a.status === 'parsed' ? a.amountMinor : null,
      a.status === 'parsed' ? a.currency : null,
      a.status === 'unparseable' ? a.raw : null,
      suspensePostingKey,
      item.read.topic,
      item.read.partition,
      item.read.offset,
      item.key,
      JSON.stringify(item.headers),
      item.value,
      item.claimCheck,
      item.receivedAt !== null && !Number.isNaN(Date.parse(item.receivedAt)) ? item.receivedAt : null,
    ],
  );
  return (r.rowCount ?? 0) > 0;
}

export interface QuarantineRelease {
  step: 'routed' | 'suspense_closed';
  actor: string;
  at: string;
  factIdempotencyKey: string;
  factPostingKey: string | null;
  correction: string | null;
  detail: string | null;
}

/** An item as recorded, with its releases so far. */
export interface QuarantinedRecord extends QuarantineItem {
  suspensePostingKey: string | null;
  quarantinedAt: string;
  releases: QuarantineRelease[];
  /** released: routed and its suspense (if any) closed. */
  state: 'open' | 'routed' | 'released';
}

interface Row {
  quarantine_id: string;
  idempotency_key: string;
  source: string;
  schema_ref: string | null;
  reason: string;
  payment_id: string | null;
  merchant_id: string | null;
  event_type: string | null;
  amount_status: QuarantinedAmount['status'];
  amount_minor: string | null;
  currency: string | null;
  amount_raw: string | null;
  suspense_posting_key: string | null;
  read_topic: string;
  read_partition: number;
  read_offset: string;
  record_key: string | null;
  record_headers: Record<string, string>;
  record_value: string | null;
  claim_check: string | null;
  received_at: Date | null;
  quarantined_at: Date;
  releases: {
    step: QuarantineRelease['step'];
    actor: string;
    at: string;
    fact_idempotency_key: string;
    fact_posting_key: string | null;
    correction: string | null;
    detail: string | null;
  }[];
}

const SELECT = `select q.quarantine_id, q.idempotency_key, q.source, q.schema_ref, q.reason, q.payment_id, q.merchant_id,
       q.event_type, q.amount_status, q.amount_minor::text, q.currency, q.amount_raw, q.suspense_posting_key,
       q.read_topic, q.read_partition, q.read_offset::text, q.record_key, q.record_headers, q.record_value,
       q.claim_check, q.received_at, q.quarantined_at,
       coalesce((select json_agg(json_build_object('step', r.step, 'actor', r.actor, 'at', r.at,
                   'fact_idempotency_key', r.fact_idempotency_key, 'fact_posting_key', r.fact_posting_key,
                   'correction', r.correction, 'detail', r.detail) order by r.release_id)
                   from quality.quarantine_releases r where r.quarantine_id = q.quarantine_id), '[]') as releases
  from quality.quarantine q`;

function recordOf(r: Row): QuarantinedRecord {
  const amount: QuarantinedAmount =
    r.amount_status === 'parsed'
      ? { status: 'parsed', amountMinor: Number(r.amount_minor), currency: r.currency! }
      : r.amount_status === 'unparseable'
        ? { status: 'unparseable', raw: r.amount_raw ?? '' }
        : { status: 'none' };
  const releases = r.releases.map((x) => ({
    step: x.step,
    actor: x.actor,
    at: new Date(x.at).toISOString(),
    factIdempotencyKey: x.fact_idempotency_key,
    factPostingKey: x.fact_posting_key,
    correction: x.correction,
    detail: x.detail,
  }));
  const steps = new Set(releases.map((x) => x.step));
  const closed = steps.has('suspense_closed') || (steps.has('routed') && r.suspense_posting_key === null);
  return {
    quarantineId: r.quarantine_id,
    idempotencyKey: r.idempotency_key,
    source: r.source,
    schema: r.schema_ref,
    reason: r.reason,
    paymentId: r.payment_id,
    merchantId: r.merchant_id,
    eventType: r.event_type,
    amount,
    receivedAt: r.received_at?.toISOString() ?? null,
    traceId: r.record_headers['trace-id'] ?? null,
    read: { topic: r.read_topic, partition: r.read_partition, offset: r.read_offset },
    key: r.record_key,
    headers: r.record_headers,
    value: r.record_value,
    claimCheck: r.claim_check,
    suspensePostingKey: r.suspense_posting_key,
    quarantinedAt: r.quarantined_at.toISOString(),
    releases,
    state: closed ? 'released' : steps.has('routed') ? 'routed' : 'open',
  };
}

export async function readQuarantined(pool: Pool, quarantineId: string): Promise<QuarantinedRecord | undefined> {
  const { rows } = await pool.query<Row>(`${SELECT} where q.quarantine_id = $1`, [quarantineId]);
  return rows[0] ? recordOf(rows[0]) : undefined;
}

/** Items newest first; `open` keeps those not yet released; `paymentIdPrefix` scopes (tests, drills). */
export async function listQuarantined(
  pool: Pool,
  filter: { open?: boolean; paymentIdPrefix?: string; limit?: number } = {},
): Promise<QuarantinedRecord[]> {
  const { rows } = await pool.query<Row>(
    `${SELECT}
      where ($1::text is null or starts_with(coalesce(q.payment_id, q.idempotency_key), $1))
      order by q.quarantined_at desc, q.quarantine_id
      limit $2`,
    [filter.paymentIdPrefix ?? null, filter.limit ?? 1000],
  );
  const all = rows.map(recordOf);
  return filter.open ? all.filter((r) => r.state !== 'released') : all;
}

/** Appends one release step; false when that step was already recorded (a repeated release). */
export async function recordReleaseStep(
  pool: Pool,
  quarantineId: string,
  step: Omit<QuarantineRelease, 'at'>,
): Promise<boolean> {
  const r = await pool.query(
    `insert into quality.quarantine_releases (quarantine_id, step, actor, fact_idempotency_key, fact_posting_key,
            correction, detail)
     values ($1, $2, $3, $4, $5, $6, $7) on conflict (quarantine_id, step) do nothing`,
    [quarantineId, step.step, step.actor, step.factIdempotencyKey, step.factPostingKey, step.correction, step.detail],
  );
  return (r.rowCount ?? 0) > 0;
}

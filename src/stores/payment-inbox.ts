import type { Pool } from 'pg';
import type { KafkaCoordinates } from '../contracts/envelope';
import { PaymentEvent } from '../contracts/payment-event';
import { factKey } from '../ledger/posting-rules';
import { recordDeliveries } from './data-quality';
import { likePrefix } from './postgres';

// payments.facts: the router's durable inbox of accepted facts (see migration 002).

export interface InboxAdmission {
  fact: PaymentEvent;
  /** False when this idempotency key was already signalled to Temporal: nothing to do. */
  mustSignal: boolean;
}

/** Where a fact was read: its message on the facts topic, and the raw record it was derived from when that is known. */
export interface FactReadFrom {
  fact?: KafkaCoordinates;
  raw?: KafkaCoordinates;
}

/**
 * Records facts (idempotent by idempotency key; the first arrival keeps its `readFrom`, parallel to `facts`) and tells which are not handled yet, plus which payments
 * Temporal may hold facts of from before this batch (a new workflow run for them must load their history).
 * A payment whose earlier facts were all absorbed (never signalled) has none there.
 */
export async function admitFacts(
  pool: Pool,
  facts: PaymentEvent[],
  readFrom: readonly (FactReadFrom | undefined)[] = [],
): Promise<{ admissions: InboxAdmission[]; paymentsWithHistory: Set<string> }> {
  if (facts.length === 0) return { admissions: [], paymentsWithHistory: new Set() };
  // Every delivery with its content hash: the inbox below keeps the first per key (data-quality duplicates).
  await recordDeliveries(pool, facts);
  const paymentIds = [...new Set(facts.map((f) => f.paymentId))];
  const previously = await pool.query<{ payment_id: string }>(
    'select distinct payment_id from payments.facts where payment_id = any($1) and not absorbed',
    [paymentIds],
  );
  await pool.query(
    `insert into payments.facts (idempotency_key, payment_id, fact_key, fact_type, occurred_at, body,
       source_topic, source_partition, source_offset, raw_topic, raw_partition, raw_offset)
     select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[],
       $7::text[], $8::int[], $9::int8[], $10::text[], $11::int[], $12::int8[])
     on conflict (idempotency_key) do nothing`,
    [
      facts.map((f) => f.idempotencyKey),
      facts.map((f) => f.paymentId),
      facts.map((f) => factKey(f)),
      facts.map((f) => f.type),
      facts.map((f) => f.occurredAt),
      facts.map((f) => JSON.stringify(f)),
      ...coordinateColumns(facts.map((_, i) => readFrom[i]?.fact)),
      ...coordinateColumns(facts.map((_, i) => readFrom[i]?.raw)),
    ],
  );
  const signalled = await pool.query<{ idempotency_key: string }>(
    'select idempotency_key from payments.facts where idempotency_key = any($1) and signalled_at is not null',
    [facts.map((f) => f.idempotencyKey)],
  );
  const done = new Set(signalled.rows.map((r) => r.idempotency_key));
  const seen = new Set<string>();
  const admissions = facts.map((fact) => {
    const mustSignal = !done.has(fact.idempotencyKey) && !seen.has(fact.idempotencyKey);
    seen.add(fact.idempotencyKey);
    return { fact, mustSignal };
  });
  return { admissions, paymentsWithHistory: new Set(previously.rows.map((r) => r.payment_id)) };
}

/** A fact row's Kafka coordinates (migration 010) as `factCoordinateColumns` selects them. */
export interface FactCoordinateRow {
  source_topic: string | null;
  source_partition: number | null;
  source_offset: string | null;
  raw_topic: string | null;
  raw_partition: number | null;
  raw_offset: string | null;
}

/** The select list for FactCoordinateRow from payments.facts under `alias` (offsets as text: int8). */
export function factCoordinateColumns(alias: string): string {
  return ['source', 'raw']
    .map((c) => `${alias}.${c}_topic, ${alias}.${c}_partition, ${alias}.${c}_offset::text as ${c}_offset`)
    .join(', ');
}

/** Coordinates, or null when any part is null (a fact that came by a path that names none). */
export function kafkaCoordinates(
  topic: string | null,
  partition: number | null,
  offset: string | null,
): KafkaCoordinates | null {
  return topic === null || partition === null || offset === null ? null : { topic, partition, offset };
}

/** Where a fact was read: its message on the facts topic and the raw record behind it, where known. */
export function factCoordinates(row: FactCoordinateRow): {
  sourceRecord: KafkaCoordinates | null;
  rawRecord: KafkaCoordinates | null;
} {
  return {
    sourceRecord: kafkaCoordinates(row.source_topic, row.source_partition, row.source_offset),
    rawRecord: kafkaCoordinates(row.raw_topic, row.raw_partition, row.raw_offset),
  };
}

/** Topic, partition and offset columns for unnest (null where a fact has no coordinates). */
function coordinateColumns(
  at: readonly (KafkaCoordinates | undefined)[],
): [(string | null)[], (number | null)[], (string | null)[]] {
  return [at.map((c) => c?.topic ?? null), at.map((c) => c?.partition ?? null), at.map((c) => c?.offset ?? null)];
}

/** Marks facts handled: signalled to Temporal, or (absorbedKeys) recorded as inert without a signal. */
export async function markSignalled(pool: Pool, idempotencyKeys: string[], absorbedKeys: string[] = []): Promise<void> {
  if (idempotencyKeys.length + absorbedKeys.length === 0) return;
  await pool.query(
    `update payments.facts set signalled_at = now(), absorbed = idempotency_key = any($2)
      where idempotency_key = any($1::text[] || $2::text[]) and signalled_at is null`,
    [idempotencyKeys, absorbedKeys],
  );
}

/**
 * The facts of these payments in the order they were received: 'accepted' is every one (what a reopened
 * workflow run must know; a signal still to come is deduplicated), 'handled' those the router dealt with
 * (signalled or absorbed), 'signalled' only those Temporal has.
 */
export async function paymentFacts(
  pool: Pool,
  paymentIds: string[],
  which: 'accepted' | 'handled' | 'signalled',
): Promise<Map<string, PaymentEvent[]>> {
  const out = new Map(paymentIds.map((id) => [id, [] as PaymentEvent[]]));
  const where = {
    accepted: 'true',
    handled: 'signalled_at is not null',
    signalled: 'signalled_at is not null and not absorbed',
  }[which];
  const rows = await pool.query<{ payment_id: string; body: unknown }>(
    `select payment_id, body from payments.facts
      where payment_id = any($1) and ${where}
      order by received_at, idempotency_key`,
    [paymentIds],
  );
  for (const r of rows.rows) out.get(r.payment_id)?.push(PaymentEvent.parse(r.body));
  return out;
}

export interface IdlePayment {
  paymentId: string;
  /** When its latest handled fact was received (ISO). */
  since: string;
  /** How long ago that was, by the database's clock. */
  idleMs: number;
  /** Whether Temporal holds any of its facts (false: all absorbed, no workflow run yet). */
  signalled: boolean;
}

/** Payments whose latest handled fact is older than `idleForMs`, longest idle first (only ids with the prefix, if given). */
export async function idlePayments(pool: Pool, idleForMs: number, paymentIdPrefix = ''): Promise<IdlePayment[]> {
  const rows = await pool.query<{ payment_id: string; since: Date; idle_ms: number; signalled: boolean }>(
    `select payment_id, max(received_at) as since,
            (extract(epoch from now() - max(received_at)) * 1000)::float8 as idle_ms,
            bool_or(not absorbed) as signalled
       from payments.facts where signalled_at is not null and payment_id like $2
      group by payment_id
     having max(received_at) < now() - $1 * interval '1 millisecond'
      order by since, payment_id`,
    [idleForMs, likePrefix(paymentIdPrefix)],
  );
  return rows.rows.map((r) => ({
    paymentId: r.payment_id,
    since: r.since.toISOString(),
    idleMs: r.idle_ms,
    signalled: r.signalled,
  }));
}

/** Distinct facts of the payments with this id prefix, per path they came by (webhook, gateway, cdc, partner). */
export async function factsByPath(
  pool: Pool,
  paymentIdPrefix: string,
): Promise<{ total: number; bySource: Record<string, number> }> {
  const r = await pool.query<{ source: string; n: number }>(
    `select body->>'source' as source, count(distinct (payment_id, fact_key))::int as n
       from payments.facts where payment_id like $1 group by 1 order by 1`,
    [likePrefix(paymentIdPrefix)],
  );
  const bySource = Object.fromEntries(r.rows.map((row) => [row.source, row.n]));
  return { total: r.rows.reduce((n, row) => n + row.n, 0), bySource };
}

/** Distinct gateway facts of the payments with this id prefix, per region. */
export async function gatewayFactsByRegion(pool: Pool, paymentIdPrefix: string): Promise<Record<string, number>> {
  const r = await pool.query<{ region: string; n: number }>(
    `select body->>'region' as region, count(distinct (payment_id, fact_key))::int as n from payments.facts
      where payment_id like $1 and body->>'source' = 'gateway' group by 1 order by 1`,
    [likePrefix(paymentIdPrefix)],
  );
  return Object.fromEntries(r.rows.map((row) => [row.region, row.n]));
}

/** Of these idempotency keys, those the router has not handled yet (read only: what a dry-run backfill would route). */
export async function unhandledKeys(pool: Pool, idempotencyKeys: string[]): Promise<Set<string>> {
  if (idempotencyKeys.length === 0) return new Set();
  const handled = await pool.query<{ idempotency_key: string }>(
    'select idempotency_key from payments.facts where idempotency_key = any($1) and signalled_at is not null',
    [idempotencyKeys],
  );
  const done = new Set(handled.rows.map((r) => r.idempotency_key));
  return new Set(idempotencyKeys.filter((k) => !done.has(k)));
}

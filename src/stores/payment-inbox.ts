import type { Pool } from 'pg';
import { PaymentEvent } from '../contracts/payment-event';
import { factKey } from '../ledger/posting-rules';

// payments.facts: the router's durable inbox of accepted facts (see migration 002).

export interface InboxAdmission {
  fact: PaymentEvent;
  /** False when this idempotency key was already signalled to Temporal: nothing to do. */
  mustSignal: boolean;
}

/**
 * Records facts (idempotent by idempotency key) and tells which still need a signal, plus which
 * payments had facts before this batch (a new workflow run for them must load their history).
 */
export async function admitFacts(
  pool: Pool,
  facts: PaymentEvent[],
): Promise<{ admissions: InboxAdmission[]; paymentsWithHistory: Set<string> }> {
  if (facts.length === 0) return { admissions: [], paymentsWithHistory: new Set() };
  const paymentIds = [...new Set(facts.map((f) => f.paymentId))];
  const previously = await pool.query<{ payment_id: string }>(
    'select distinct payment_id from payments.facts where payment_id = any($1)',
    [paymentIds],
  );
  await pool.query(
    `insert into payments.facts (idempotency_key, payment_id, fact_key, fact_type, occurred_at, body)
     select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
     on conflict (idempotency_key) do nothing`,
    [
      facts.map((f) => f.idempotencyKey),
      facts.map((f) => f.paymentId),
      facts.map((f) => factKey(f)),
      facts.map((f) => f.type),
      facts.map((f) => f.occurredAt),
      facts.map((f) => JSON.stringify(f)),
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

export async function markSignalled(pool: Pool, idempotencyKeys: string[]): Promise<void> {
  if (idempotencyKeys.length === 0) return;
  await pool.query(
    'update payments.facts set signalled_at = now() where idempotency_key = any($1) and signalled_at is null',
    [idempotencyKeys],
  );
}

/**
 * Every accepted fact of one payment (what a reopened workflow run must know). Facts not signalled
 * yet are included: they were accepted, and their signal, when it comes, is deduplicated.
 */
export async function paymentFacts(pool: Pool, paymentId: string): Promise<PaymentEvent[]> {
  const rows = await pool.query<{ body: unknown }>(
    'select body from payments.facts where payment_id = $1 order by received_at, idempotency_key',
    [paymentId],
  );
  return rows.rows.map((r) => PaymentEvent.parse(r.body));
}

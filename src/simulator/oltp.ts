import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import type { PaymentEvent } from '../contracts/payment-event';
import { assertSchemaName } from '../stores/oltp';

export { createOltpPool } from '../stores/oltp';

// PayLink's own OLTP database as its payments API writes it: one row per payment (status updated in
// place) and the legacy ledger rows. CDC reads these tables; the simulator plays the API that writes them.

/** Creates the OLTP tables in `schema` if missing (idempotent). REPLICA IDENTITY DEFAULT: the key only. */
export async function ensureOltpSchema(pool: Pool, schema = 'public'): Promise<void> {
  const s = assertSchemaName(schema);
  await pool.query(`
    create schema if not exists ${s};
    create table if not exists ${s}.payments (
      id             text primary key,
      merchant_id    text not null,
      region         text not null,
      currency       text not null check (currency ~ '^[A-Z]{3}$'),
      amount_minor   bigint not null check (amount_minor >= 0),
      status         text not null,
      customer_email text,
      created_at     timestamptz not null,
      updated_at     timestamptz not null,
      description    text
    );
    -- Free text the merchant attached (an order note): unbounded, and it can hold PII the reader tokenizes.
    -- Added after the table first shipped, so older databases get it here.
    alter table ${s}.payments add column if not exists description text;
    create table if not exists ${s}.ledger_entries (
      id           bigserial primary key,
      payment_id   text not null,
      account      text not null,
      direction    text not null check (direction in ('debit', 'credit')),
      amount_minor bigint not null check (amount_minor > 0),
      currency     text not null check (currency ~ '^[A-Z]{3}$'),
      -- one row per business fact and side: a redelivered capture cannot book twice
      entry_ref    text not null unique,
      created_at   timestamptz not null
    );
    alter table ${s}.payments replica identity default;
    alter table ${s}.ledger_entries replica identity default;
  `);
}

/** A stable, fake customer address per payment: PII the CDC path must tokenize. */
export function customerEmailOf(paymentId: string): string {
  return `customer.${createHash('sha256').update(paymentId).digest('hex').slice(0, 10)}@example.com`;
}

const STATUS: Record<PaymentEvent['type'], string> = {
  created: 'created',
  authorized: 'authorized',
  captured: 'captured',
  voided: 'voided',
  refunded: 'refunded',
  settled: 'settled',
  chargeback_opened: 'disputed',
  chargeback_won: 'dispute_won',
  chargeback_lost: 'dispute_lost',
  failed: 'failed',
};

export interface OltpWriteResult {
  paymentsInserted: number;
  paymentsUpdated: number;
  ledgerRowsInserted: number;
}

/**
 * Writes deliveries as PayLink's API would, in one transaction of three batched statements:
 * created → payment row (a duplicate delivery inserts nothing), later facts → status of the newest
 * fact (never moved back by a late one), captured/refunded → two legacy ledger rows each.
 */
export async function recordInOltp(
  pool: Pool,
  deliveries: PaymentEvent[],
  schema = 'public',
): Promise<OltpWriteResult> {
  const s = assertSchemaName(schema);
  const created = new Map<string, Extract<PaymentEvent, { type: 'created' }>>();
  const latest = new Map<string, PaymentEvent>();
  const ledger = new Map<
    string,
    { paymentId: string; account: string; direction: string; amountMinor: number; currency: string; at: string }
  >();
  for (const e of deliveries) {
    if (e.type === 'created') {
      if (!created.has(e.paymentId)) created.set(e.paymentId, e);
      continue;
    }
    const seen = latest.get(e.paymentId);
    if (!seen || seen.occurredAt <= e.occurredAt) latest.set(e.paymentId, e);
    const book = (ref: string, debit: string, credit: string, amountMinor: number): void => {
      const row = { paymentId: e.paymentId, amountMinor, currency: e.currency, at: e.occurredAt };
      ledger.set(`${e.paymentId}/${ref}/debit`, { ...row, account: debit, direction: 'debit' });
      ledger.set(`${e.paymentId}/${ref}/credit`, { ...row, account: credit, direction: 'credit' });
    };
    if (e.type === 'captured') book(`captured:${e.captureId}`, 'customer_funds', 'merchant_payable', e.amountMinor);
    if (e.type === 'refunded') book(`refunded:${e.refundId}`, 'merchant_payable', 'customer_funds', e.amountMinor);
  }
  const inserts = [...created.values()];
  const updates = [...latest.values()];
  const rows = [...ledger.entries()];
  const client = await pool.connect();
  try {
    await client.query('begin');
    const inserted = await client.query(
      `insert into ${s}.payments (id, merchant_id, region, currency, amount_minor, status, customer_email, created_at, updated_at)
       select id, merchant_id, region, currency, amount_minor, 'created', customer_email, at, at
       from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::timestamptz[])
         as t(id, merchant_id, region, currency, amount_minor, customer_email, at)
       on conflict (id) do nothing`,
      [
        inserts.map((e) => e.paymentId),
        inserts.map((e) => e.merchantId),
        inserts.map((e) => e.region),
        inserts.map((e) => e.currency),
        inserts.map((e) => e.amountMinor),
        inserts.map((e) => customerEmailOf(e.paymentId)),
        inserts.map((e) => e.occurredAt),
      ],
    );
    const updated = await client.query(
      `update ${s}.payments p set status = t.status, updated_at = t.at
       from unnest($1::text[], $2::text[], $3::timestamptz[]) as t(id, status, at)
       where p.id = t.id and p.updated_at <= t.at`,
      [updates.map((e) => e.paymentId), updates.map((e) => STATUS[e.type]), updates.map((e) => e.occurredAt)],
    );
    const booked = await client.query(
      `insert into ${s}.ledger_entries (payment_id, account, direction, amount_minor, currency, entry_ref, created_at)
       select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::timestamptz[])
       on conflict (entry_ref) do nothing`,
      [
        rows.map(([, r]) => r.paymentId),
        rows.map(([, r]) => r.account),
        rows.map(([, r]) => r.direction),
        rows.map(([, r]) => r.amountMinor),
        rows.map(([, r]) => r.currency),
        rows.map(([ref]) => ref),
        rows.map(([, r]) => r.at),
      ],
    );
    await client.query('commit');
    return {
      paymentsInserted: inserted.rowCount ?? 0,
      paymentsUpdated: updated.rowCount ?? 0,
      ledgerRowsInserted: booked.rowCount ?? 0,
    };
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

-- Full payment lifecycle: more accounts, audited manual actions, anomaly/stuck flags, and the
-- router's fact inbox (durable record of every accepted fact, and the SLA sweep's source).

insert into ledger.accounts (code, name, kind, normal_side) values
  ('platform_fee_revenue', 'PayLink fees kept from captures',                        'revenue',   'credit'),
  ('refunds_payable',      'Refunds owed to cardholders, netted by the gateway',      'liability', 'credit'),
  ('chargebacks_disputed', 'Funds withheld by the gateway while a chargeback is open', 'asset',     'debit'),
  ('suspense',             'Manual adjustments awaiting their counter-entry',        'asset',     'debit');

-- Manual entries name who posted them and why; automatic ones leave these null.
alter table ledger.journal_entries add column actor text, add column memo text;

-- Anomalies, stuck marks, resolutions and adjustments: append-only audit trail per payment.
create table ledger.payment_flags (
  flag_id    bigserial primary key,
  payment_id text not null,
  flag_key   text not null,
  kind       text not null check (kind in ('anomaly', 'stuck', 'resolved', 'adjustment')),
  stage      text,
  reason     text not null,
  actor      text,
  created_at timestamptz not null default now(),
  unique (payment_id, flag_key)
);
create trigger payment_flags_append_only before update or delete on ledger.payment_flags
  for each row execute function ledger.reject_mutation();

create schema if not exists payments;

-- Every fact the router accepted, before it signalled the workflow. signalled_at is set once
-- Temporal accepted the signal, so a redelivered fact is re-signalled only if that never happened.
create table payments.facts (
  idempotency_key text primary key,
  payment_id      text not null,
  fact_key        text not null,
  fact_type       text not null,
  occurred_at     timestamptz not null,
  received_at     timestamptz not null default now(),
  signalled_at    timestamptz,
  body            jsonb not null
);
create index facts_payment on payments.facts (payment_id);
create index facts_unsignalled on payments.facts (received_at) where signalled_at is null;

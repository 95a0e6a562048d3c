-- Quarantine never drops money (issue 15 item 4, docs/data-quality.md "Quarantine and suspense"): every item
-- read from the quarantine topic, with its reason, its record (tokenized) or claim check, and the money it
-- carries; and every release of one, audited. Both append-only: a release is a new row, never an update.

create table quality.quarantine (
  quarantine_id    text primary key check (quarantine_id ~ '^q[a-p]{24}$'),
  idempotency_key  text not null,
  source           text not null,
  schema_ref       text,
  reason           text not null,
  -- null: no usable payment id; its suspense entry is the named record quarantine-<id>
  payment_id       text,
  merchant_id      text,
  event_type       text,
  amount_status    text not null check (amount_status in ('parsed', 'unparseable', 'none')),
  amount_minor     bigint check (amount_minor >= 0),
  currency         text check (currency ~ '^[A-Z]{3}$'),
  -- what the record said when it is not integer minor units (never converted)
  amount_raw       text,
  -- the suspense entry holding the money (null: none, e.g. no amount or an authorization)
  suspense_posting_key text,
  read_topic       text not null,
  read_partition   integer not null,
  read_offset      bigint not null,
  record_key       text,
  record_headers   jsonb not null,
  record_value     text,
  claim_check      text,
  received_at      timestamptz,
  quarantined_at   timestamptz not null default now(),
  check ((amount_status = 'parsed') = (amount_minor is not null and currency is not null))
);
create index quarantine_payment on quality.quarantine (payment_id);
create index quarantine_idempotency_key on quality.quarantine (idempotency_key);

-- A release: routed through the normal path once (step 'routed'), and its suspense closed once the fact's
-- posting is in the ledger (step 'suspense_closed'). Who, when, and the corrected record when one was given.
create table quality.quarantine_releases (
  release_id      bigserial primary key,
  quarantine_id   text not null references quality.quarantine (quarantine_id),
  step            text not null check (step in ('routed', 'suspense_closed')),
  actor           text not null,
  at              timestamptz not null default now(),
  fact_idempotency_key text not null,
  fact_posting_key     text,
  correction      text,
  detail          text,
  unique (quarantine_id, step)
);

create trigger quarantine_append_only before update or delete on quality.quarantine
  for each row execute function ledger.reject_mutation();
create trigger quarantine_releases_append_only before update or delete on quality.quarantine_releases
  for each row execute function ledger.reject_mutation();

grant select, insert on quality.quarantine, quality.quarantine_releases to paylink_app;
grant usage on sequence quality.quarantine_releases_release_id_seq to paylink_app;

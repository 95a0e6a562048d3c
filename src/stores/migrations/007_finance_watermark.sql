-- The finance load's watermark (docs/finance.md). Entry ids come from a sequence and commit out of
-- order, so "entry_id > last loaded" skips late commits. The writing transaction's id does not: every
-- transaction below pg_snapshot_xmin(pg_current_snapshot()) has ended, so rows with xid below it are
-- final. Lines are written in their entry's transaction and are windowed through it.
-- Rows from before this migration get the migration's own xid: they all fall into the first window.
alter table ledger.journal_entries add column xid xid8 not null default pg_current_xact_id();
create index journal_entries_xid on ledger.journal_entries (xid);

-- 004's table grants cover the column; the application never names it, the default sets it.

create schema if not exists finance;

-- Windows published to Snowflake: loaded, verified and sealed. Contiguous from xid 0 (each lo is the
-- previous hi), and each seal chains the previous one: SHA-256 over the window's canonical entries.
create table finance.windows (
  lo           xid8 primary key,
  hi           xid8 not null unique check (hi > lo),
  load_id      text not null unique,
  entries      bigint not null check (entries >= 0),
  lines        bigint not null check (lines >= 0),
  -- per currency: {"EUR": {"lines": 4, "debitMinor": "2000", "creditMinor": "2000"}}; amounts as strings
  totals       jsonb not null,
  prev_seal    text not null check (prev_seal ~ '^[0-9a-f]{64}$'),
  seal         text not null unique check (seal ~ '^[0-9a-f]{64}$'),
  loaded_at    timestamptz not null,
  published_at timestamptz not null default now()
);
create trigger windows_append_only before update or delete on finance.windows
  for each row execute function ledger.reject_mutation();
create trigger windows_no_truncate before truncate on finance.windows
  for each statement execute function ledger.reject_mutation();

-- Loads that failed verification: what status reports as the last failure (the window stays unpublished).
create table finance.load_failures (
  failure_id bigserial primary key,
  load_id    text not null,
  lo         xid8 not null,
  hi         xid8 not null,
  reason     text not null,
  failed_at  timestamptz not null default now()
);

grant usage on schema finance to paylink_app;
grant select, insert on finance.windows, finance.load_failures to paylink_app;
grant usage on sequence finance.load_failures_failure_id_seq to paylink_app;

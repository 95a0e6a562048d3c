-- Reconciliation results (docs/reconciliation.md). One run per ReconciliationWorkflow execution and
-- window; a re-run of a window supersedes the earlier run (status 'superseded') and keeps it: history is
-- never deleted. Breaks belong to their run; break_key is stable across runs, so a break found again
-- keeps the window and time it was first seen (aging).
create schema if not exists reconciliation;

create table reconciliation.runs (
  run_id         bigserial primary key,
  -- the workflow execution that wrote it (workflow id + run id): a retried activity finds its run again
  run_key        text not null unique,
  window_day     date not null,
  -- payment-id prefix the run covered ('' = every payment)
  scope          text not null default '',
  workflow_id    text not null,
  status         text not null check (status in ('current', 'superseded')),
  superseded_by  bigint references reconciliation.runs (run_id),
  matched        integer not null check (matched >= 0),
  partially_matched integer not null check (partially_matched >= 0),
  unmatched      integer not null check (unmatched >= 0),
  breaks         integer not null check (breaks >= 0),
  -- breaks and money at stake per type and currency, clearing differences per currency (minor units)
  summary        jsonb not null,
  started_at     timestamptz not null,
  finished_at    timestamptz not null default now()
);
-- one current run per window and scope
create unique index runs_current on reconciliation.runs (window_day, scope) where status = 'current';

create table reconciliation.breaks (
  run_id            bigint not null references reconciliation.runs (run_id),
  break_key         text not null,
  window_day        date not null,
  scope             text not null,
  break_type        text not null,
  provider          text,
  payment_id        text not null,
  merchant_id       text,
  kind              text not null,
  reference         text not null,
  line_reference    text,
  amount_minor      bigint not null check (amount_minor >= 0),
  currency          char(3) not null check (currency ~ '^[A-Z]{3}$'),
  direction         smallint not null check (direction in (-1, 0, 1)),
  expected          jsonb,
  reported          jsonb,
  -- open until a later run no longer finds it (resolved_by names that run)
  status            text not null check (status in ('open', 'resolved')),
  first_seen_window date not null,
  first_seen_at     timestamptz not null,
  resolved_at       timestamptz,
  resolved_by       bigint references reconciliation.runs (run_id),
  -- the suspense journal entry holding the money while the break is open (null: no money at stake)
  suspense_posting_key text,
  primary key (run_id, break_key)
);
create index breaks_open on reconciliation.breaks (status, break_type) where status = 'open';
create index breaks_key on reconciliation.breaks (break_key);

grant usage on schema reconciliation to paylink_app;
grant select, insert, update on reconciliation.runs, reconciliation.breaks to paylink_app;
grant usage on sequence reconciliation.runs_run_id_seq to paylink_app;

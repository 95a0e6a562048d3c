-- Data quality (docs/data-quality.md): every delivery of a fact with its content hash, and one result
-- row per DQ check, window and run.

-- The inbox keeps the first delivery of an idempotency key only; this counts every delivery per
-- content, so a repeated key (at-least-once) and a repeated key with other content (a conflict) show.
create table quality.fact_deliveries (
  idempotency_key text not null,
  content_hash    text not null check (content_hash ~ '^[0-9a-f]{64}$'),
  payment_id      text not null,
  source          text not null,
  deliveries      bigint not null check (deliveries > 0),
  first_seen      timestamptz not null default now(),
  last_seen       timestamptz not null default now(),
  primary key (idempotency_key, content_hash)
);
create index fact_deliveries_last_seen on quality.fact_deliveries (last_seen);
create index fact_deliveries_payment on quality.fact_deliveries (payment_id);

-- Results are appended: a re-run of a window supersedes by ran_at and keeps the history.
-- scope '' is the whole pipeline (what gates finance); a payment-id prefix scopes a run (tests, drills).
create table quality.dq_results (
  result_id    bigserial primary key,
  run_id       text not null,
  dq_window    text not null,
  window_start timestamptz not null,
  window_end   timestamptz not null check (window_end > window_start),
  scope        text not null default '',
  check_name   text not null,
  severity     text not null check (severity in ('critical', 'warning')),
  money        boolean not null,
  passed       boolean not null,
  measured     numeric not null,
  threshold    numeric not null,
  summary      text not null,
  details      jsonb not null,
  ran_at       timestamptz not null default now(),
  unique (run_id, check_name)
);
create index dq_results_latest on quality.dq_results (scope, dq_window, check_name, ran_at desc);
create trigger dq_results_append_only before update or delete on quality.dq_results
  for each row execute function ledger.reject_mutation();

grant select, insert on quality.fact_deliveries, quality.dq_results to paylink_app;
grant update (deliveries, last_seen) on quality.fact_deliveries to paylink_app;
grant usage on sequence quality.dq_results_result_id_seq to paylink_app;

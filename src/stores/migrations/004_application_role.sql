-- The application role: the pipeline's processes connect as paylink_app (or a login role that is a
-- member of it), which owns nothing. Only an owner may ALTER, DISABLE TRIGGER, DROP or TRUNCATE, so a
-- leaked application credential can append to the ledger but never rewrite it.
-- No ALTER DEFAULT PRIVILEGES: every later migration grants exactly what its new objects need.
do $$
begin
  if not exists (select from pg_roles where rolname = 'paylink_app') then
    raise exception 'role paylink_app does not exist: create it before migrating (docs/architecture.md, "Database roles")'
      using errcode = '42704';
  end if;
  execute format('grant connect on database %I to paylink_app', current_database());
end $$;

-- Before Postgres 15 every role may create tables in public; the application must not own anything.
revoke create on schema public from public;

grant usage on schema ledger, payments, quality to paylink_app;

-- Ledger: read and append, nothing else; the append-only triggers stay as the second line.
grant select on ledger.accounts, ledger.account_balances, ledger.merchant_balances to paylink_app;
grant select, insert on ledger.journal_entries, ledger.journal_lines, ledger.payment_flags to paylink_app;
grant usage on sequence ledger.journal_entries_entry_id_seq, ledger.journal_lines_line_id_seq,
  ledger.payment_flags_flag_id_seq to paylink_app;

-- The router's inbox: admit facts, then mark them signalled; workers, the SLA sweep and the demo read it.
grant select, insert on payments.facts to paylink_app;
grant update (signalled_at) on payments.facts to paylink_app;

-- The quality consumer: drift counts and its per-partition offsets, upserted in one transaction.
grant select, insert on quality.schema_drift, quality.consumed_offsets to paylink_app;
grant update (count, first_seen, last_seen) on quality.schema_drift to paylink_app;
grant update (next_offset, updated_at) on quality.consumed_offsets to paylink_app;

-- The trace id of the fact behind each automatic entry (the Kafka `trace-id` header, src/contracts/envelope.ts):
-- from a ledger row back to the raw, fact and quarantine messages of its event. Entries posted before it,
-- and manual adjustments, have none.
alter table ledger.journal_entries add column trace_id text check (trace_id ~ '^[0-9a-f]{32}$');

-- The application appends it with the entry (004 grants on the table; stated here for the new column).
grant select (trace_id), insert (trace_id) on ledger.journal_entries to paylink_app;

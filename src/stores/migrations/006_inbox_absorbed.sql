-- Facts the router handled without a signal (inert: a `created`, or the same fact with the same content
-- from a second path). signalled_at stays the time the router handled a fact; absorbed says no signal
-- went with it, so Temporal holds none of a payment whose facts are all absorbed: the first real signal
-- starts its workflow without loading history, and the SLA sweep judges it from the inbox.
-- Rows handled before this migration count as signalled (some were absorbed; the difference only costs
-- a history load).
alter table payments.facts add column absorbed boolean not null default false;

grant update (absorbed) on payments.facts to paylink_app;

-- Double-entry ledger. The database itself enforces the money invariants:
-- balanced entries (per entry and currency), one posting per key, append-only.
create schema if not exists ledger;

create table ledger.accounts (
  code        text primary key,
  name        text not null,
  kind        text not null check (kind in ('asset', 'liability', 'revenue', 'expense')),
  -- debit-normal (asset, expense) or credit-normal (liability, revenue)
  normal_side text not null check (normal_side in ('debit', 'credit'))
);

insert into ledger.accounts (code, name, kind, normal_side) values
  ('gateway_clearing',  'Gateway clearing: captured, not yet settled by the gateway', 'asset',     'debit'),
  ('settlement_cash',   'Cash received from gateway settlements',                     'asset',     'debit'),
  ('merchant_payable',  'Owed to merchants for captured payments',                    'liability', 'credit'),
  ('gateway_fee_expense','Fees charged by gateways on settlement',                    'expense',   'debit');

create table ledger.journal_entries (
  entry_id        bigserial primary key,
  -- payment/<paymentId>/<fact key>: derived from the workflow id, unique forever
  posting_key     text not null unique,
  payment_id      text not null,
  merchant_id     text not null,
  fact_type       text not null,
  idempotency_key text not null,
  -- sha256 of the canonical lines: a re-post with other lines is an integrity error, not a posting
  lines_hash      text not null,
  occurred_at     timestamptz not null,
  posted_at       timestamptz not null default now()
);
create index journal_entries_payment on ledger.journal_entries (payment_id);

create table ledger.journal_lines (
  line_id      bigserial primary key,
  entry_id     bigint not null references ledger.journal_entries (entry_id),
  account_code text not null references ledger.accounts (code),
  merchant_id  text not null,
  side         text not null check (side in ('debit', 'credit')),
  amount_minor bigint not null check (amount_minor > 0),
  currency     char(3) not null check (currency ~ '^[A-Z]{3}$')
);
create index journal_lines_entry on ledger.journal_lines (entry_id);
create index journal_lines_account on ledger.journal_lines (account_code, currency);

-- Balanced per entry and currency, checked at commit so an entry's lines can be inserted one by one.
create function ledger.assert_entry_balanced() returns trigger language plpgsql as $$
declare
  bad record;
begin
  select currency,
         sum(case when side = 'debit' then amount_minor else 0 end) as debits,
         sum(case when side = 'credit' then amount_minor else 0 end) as credits
    into bad
    from ledger.journal_lines
   where entry_id = new.entry_id
   group by currency
  having sum(case when side = 'debit' then amount_minor else -amount_minor end) <> 0
   limit 1;
  if found then
    raise exception 'unbalanced journal entry %: % debits % <> credits %', new.entry_id, bad.currency, bad.debits, bad.credits
      using errcode = '23514';
  end if;
  if not exists (select 1 from ledger.journal_lines where entry_id = new.entry_id) then
    raise exception 'journal entry % has no lines', new.entry_id using errcode = '23514';
  end if;
  return null;
end $$;

create constraint trigger journal_lines_balanced
  after insert on ledger.journal_lines
  deferrable initially deferred
  for each row execute function ledger.assert_entry_balanced();

create constraint trigger journal_entries_have_lines
  after insert on ledger.journal_entries
  deferrable initially deferred
  for each row execute function ledger.assert_entry_balanced();

-- Append-only: corrections are reversing entries, never edits.
create function ledger.reject_mutation() returns trigger language plpgsql as $$
begin
  raise exception 'ledger.% is append-only: % rejected (post a reversing entry instead)', tg_table_name, tg_op
    using errcode = '42501';
end $$;

create trigger journal_entries_append_only before update or delete on ledger.journal_entries
  for each row execute function ledger.reject_mutation();
create trigger journal_lines_append_only before update or delete on ledger.journal_lines
  for each row execute function ledger.reject_mutation();
create trigger journal_entries_no_truncate before truncate on ledger.journal_entries
  for each statement execute function ledger.reject_mutation();
create trigger journal_lines_no_truncate before truncate on ledger.journal_lines
  for each statement execute function ledger.reject_mutation();

-- Balances per account and per merchant, in integer minor units, signed by the account's normal side.
create view ledger.account_balances as
select l.account_code, l.currency,
       sum(case when l.side = a.normal_side then l.amount_minor else -l.amount_minor end) as balance_minor
  from ledger.journal_lines l join ledger.accounts a on a.code = l.account_code
 group by l.account_code, l.currency;

create view ledger.merchant_balances as
select l.merchant_id, l.account_code, l.currency,
       sum(case when l.side = a.normal_side then l.amount_minor else -l.amount_minor end) as balance_minor
  from ledger.journal_lines l join ledger.accounts a on a.code = l.account_code
 group by l.merchant_id, l.account_code, l.currency;

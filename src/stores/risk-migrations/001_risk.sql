-- The risk store: the fraud-views consumer's aggregates, de-duplication keys, alerts and per-partition
-- offsets. Its own schema and migration set (risk.schema_migrations), so production can move it to its
-- own instance (RISK_DATABASE_URL). Rows are keyed by time and swept by age (risk.sweep).
create schema if not exists risk;

-- Counters per view, key and event-time window. `key` is the JSON of the grouping key, keys sorted.
create table risk.window_counts (
  view text not null,
  key text not null,
  size text not null check (size in ('1m', '5m', '1h', 'mtd')),
  window_start timestamptz not null,
  window_end timestamptz not null,
  attempts bigint not null default 0,
  authorized bigint not null default 0,
  declined bigint not null default 0,
  small_attempts bigint not null default 0,
  small_declined bigint not null default 0,
  -- Distinct members: card tokens per merchant, merchants per card token.
  distinct_members bigint not null default 0,
  -- Events of any type (events/s per region); captures, refunds, chargebacks (merchant ratios).
  events bigint not null default 0,
  captures bigint not null default 0,
  refunds bigint not null default 0,
  chargebacks bigint not null default 0,
  updated_at timestamptz not null default now(),
  primary key (view, size, window_start, key)
);
create index window_counts_newest on risk.window_counts (view, size, window_start desc);
create index window_counts_updated on risk.window_counts (updated_at);

-- Which members a window has seen, so distinct counts stay exact under duplicates and redelivery.
create table risk.window_members (
  view text not null,
  size text not null,
  window_start timestamptz not null,
  key text not null,
  member text not null,
  seen_at timestamptz not null default now(),
  primary key (view, size, window_start, key, member)
);
create index window_members_seen on risk.window_members (seen_at);

-- First time a card token was seen on a merchant (event time), for the new-card view.
create table risk.merchant_cards (
  merchant_id text not null,
  card_token text not null,
  bin text not null,
  last_four text not null,
  first_seen timestamptz not null,
  seen_at timestamptz not null default now(),
  primary key (merchant_id, card_token)
);
create index merchant_cards_first_seen on risk.merchant_cards (first_seen desc);
create index merchant_cards_seen on risk.merchant_cards (seen_at);

-- Amount statistics per merchant, currency and month (minor units): count, running mean and population σ
-- (Welford; stored rounded to 4 decimals: never a long digit run a PAN scan could mistake for a card), max.
create table risk.amount_stats (
  merchant_id text not null,
  currency text not null,
  month_start timestamptz not null,
  n bigint not null default 0,
  mean_minor double precision not null default 0,
  sigma_minor double precision not null default 0,
  max_minor bigint not null default 0,
  outliers bigint not null default 0,
  updated_at timestamptz not null default now(),
  primary key (merchant_id, currency, month_start)
);
create index amount_stats_updated on risk.amount_stats (updated_at);

-- Every counted event's identity: an event delivered twice (the sources redeliver) counts once.
create table risk.seen_events (
  event_id text primary key,
  event_time timestamptz not null,
  seen_at timestamptz not null default now()
);
create index seen_events_seen on risk.seen_events (seen_at);

-- Rule hits. The id is rule + key + window start: a redelivered event never raises twice.
create table risk.alerts (
  id text primary key,
  rule text not null,
  key text not null,
  window_start timestamptz not null,
  value double precision not null,
  threshold double precision not null,
  event_time timestamptz not null,
  raised_at timestamptz not null default now(),
  message text not null,
  published_at timestamptz
);
create index alerts_raised on risk.alerts (raised_at desc);
create index alerts_unpublished on risk.alerts (raised_at) where published_at is null;

-- The next offset to count per partition, written in the same transaction as the counts; the watermark
-- (newest event time seen in the partition) and the events that came after their window closed.
create table risk.consumed_offsets (
  consumer_group text not null,
  topic text not null,
  partition int not null,
  next_offset bigint not null,
  watermark timestamptz,
  late_events bigint not null default 0,
  updated_at timestamptz not null default now(),
  primary key (consumer_group, topic, partition)
);

-- Freshness: store-visible time minus the edge's received-at, per event, as a histogram of ms buckets.
create table risk.freshness (
  consumer_group text not null,
  bucket_ms bigint not null,
  count bigint not null default 0,
  primary key (consumer_group, bucket_ms)
);

-- The application role reads and writes the risk store (it owns nothing; the owner sweeps too).
do $$
begin
  if exists (select from pg_roles where rolname = 'paylink_app') then
    grant usage on schema risk to paylink_app;
    grant select, insert, update, delete on all tables in schema risk to paylink_app;
  end if;
end $$;

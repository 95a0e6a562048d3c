-- Data quality: schema drift seen on the raw topics, counted exactly once per message.
create schema if not exists quality;

-- One row per (source, schema version, kind, field path): how often and since when it was seen,
-- and where to find an example. kind 'unknown field' has the dotted path (arrays as []);
-- 'unregistered schema' and 'malformed payload' have path ''.
create table quality.schema_drift (
  source            text not null,
  schema_name       text not null,
  schema_version    integer not null,
  kind              text not null check (kind in ('unknown field', 'unregistered schema', 'malformed payload')),
  field_path        text not null,
  first_seen        timestamptz not null,
  last_seen         timestamptz not null,
  count             bigint not null check (count > 0),
  example_topic     text not null,
  example_partition integer not null,
  example_offset    bigint not null,
  detail            text,
  primary key (source, schema_name, schema_version, kind, field_path)
);
create index schema_drift_last_seen on quality.schema_drift (last_seen desc);

-- Next offset to count per consumer group and partition, written in the same transaction as the
-- counts: a redelivered message (rebalance, crash before the Kafka commit) is skipped, not recounted.
create table quality.consumed_offsets (
  consumer_group text not null,
  topic          text not null,
  partition      integer not null,
  next_offset    bigint not null,
  updated_at     timestamptz not null default now(),
  primary key (consumer_group, topic, partition)
);

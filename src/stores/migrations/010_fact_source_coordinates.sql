-- Where each fact was read (docs/finance.md, "Tracing a number to its events"), so a finance row leads
-- back to the Kafka records behind it and to the archive object that keeps them (the archiver keeps
-- the facts topic and the raw topics, keyed by topic/partition/offsets).
-- source_*: the message on the payment facts topic the router admitted (the first to arrive: a
-- redelivered or replayed duplicate keeps the first's). raw_*: the raw record the fact was derived
-- from, when the fact's message names it (the CDC normalizer's source-topic/partition/offset headers).
-- Null for facts admitted before this migration and for facts routed without a Kafka record.
alter table payments.facts
  add column source_topic     text,
  add column source_partition integer check (source_partition >= 0),
  add column source_offset    bigint check (source_offset >= 0),
  add column raw_topic        text,
  add column raw_partition    integer check (raw_partition >= 0),
  add column raw_offset       bigint check (raw_offset >= 0);

-- 004's `grant select, insert on payments.facts` covers the new columns: the router only inserts them.

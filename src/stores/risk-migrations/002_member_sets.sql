-- Distinct sets at a third of the rows (issue 13, throughput): one row per member and hour instead of one per
-- member and window. The hour's row is the 1-hour set; its minutes and five-minute windows are bit masks.
-- `added_*` hold what the last upsert newly set (the old row is not visible to RETURNING in PG 15): the
-- flush turns them into the windows' distinct-count increments in the same statement.
create table risk.window_member_sets (
  view text not null,
  hour_start timestamptz not null,
  key text not null,
  member text not null,
  -- bit i: seen in minute i (minutes_low) or 30 + i (minutes_high) of the hour. Two 30-bit ints, not one
  -- bigint: a 13–19 digit number in a column could pass for a card number in the PII scan.
  minutes_low int not null,
  minutes_high int not null,
  -- bit i: seen in the hour's five-minute window i (0–11)
  fives int not null,
  added_low int not null default 0,
  added_high int not null default 0,
  added_fives int not null default 0,
  -- the last upsert inserted the row: a new member of the hour's set
  added_hour boolean not null default false,
  seen_at timestamptz not null default now(),
  primary key (view, hour_start, key, member)
);
create index window_member_sets_seen on risk.window_member_sets (seen_at);

-- The sets so far, folded per hour (epoch arithmetic: windows are aligned to UTC, whatever the session's zone).
insert into risk.window_member_sets (view, hour_start, key, member, minutes_low, minutes_high, fives, seen_at)
select view, hour_start, key, member,
       coalesce(bit_or(1 << minute) filter (where size = '1m' and minute < 30), 0),
       coalesce(bit_or(1 << (minute - 30)) filter (where size = '1m' and minute >= 30), 0),
       coalesce(bit_or(1 << (minute / 5)) filter (where size = '5m'), 0),
       max(seen_at)
  from (select view, key, member, size, seen_at,
               to_timestamp(floor(extract(epoch from window_start) / 3600) * 3600) as hour_start,
               (floor(extract(epoch from window_start) / 60)::bigint % 60)::int as minute
          from risk.window_members) w
 group by view, hour_start, key, member;
drop table risk.window_members;

-- Counter rows are swept hourly by a scan instead: without an index on updated_at, an update that only adds to
-- counters is a HOT update (no index entries), and an insert writes two index entries instead of three.
drop index risk.window_counts_updated;
alter table risk.window_counts set (fillfactor = 80);

do $$
begin
  if exists (select from pg_roles where rolname = 'paylink_app') then
    grant select, insert, update, delete on risk.window_member_sets to paylink_app;
  end if;
end $$;

import type { Pool, PoolClient } from 'pg';
import { HEADERS } from '../contracts/envelope';
import { type Logger, errorMessage } from '../logger';
import type { BatchHandler, ConsumedBatch, ConsumedMessage, TopicSet } from '../streams/kafka';
import { documentsOf, unknownFieldPaths } from './schema-drift';
import type { SchemaRegistry } from './schema-registry';

// The quality consumer: its own group on the raw topics. For each message it looks up the schema
// named by the `schema` header and records unknown field paths in quality.schema_drift. Counts are
// exact under redelivery: the partition's next offset is stored in the same transaction as the
// counts, and Kafka offsets are committed only after that transaction.

export type DriftKind = 'unknown field' | 'unregistered schema' | 'malformed payload';

export interface DriftObservation {
  source: string;
  schemaName: string;
  schemaVersion: number;
  kind: DriftKind;
  /** Dotted path, arrays as `[]`; '' for kinds about the whole message. */
  fieldPath: string;
  detail?: string;
}

export interface QualityCounters {
  /** Messages counted into the drift table. */
  counted: number;
  /** Redelivered messages skipped because their offset was already counted. */
  alreadyCounted: number;
  /** Drift observations recorded (a message may carry several unknown paths). */
  observations: number;
}

/** The source a raw topic implies, for messages without a `source` header (a real Debezium's). */
function sourceOfTopic(topics: TopicSet, topic: string): string | undefined {
  const sources: Record<string, string> = {
    [topics.rawWebhooks]: 'webhook',
    [topics.rawGateways]: 'gateway',
    [topics.rawPartnerApi]: 'partner',
    [topics.cdcPayments]: 'cdc',
    [topics.cdcLedgerEntries]: 'cdc',
  };
  return sources[topic];
}

/** Marks the row of a message that had more unknown paths than QUALITY_MAX_UNKNOWN_PATHS. */
export const TRUNCATED_PATH = '(more unknown paths than the limit)';

/** When PayLink received the message: the edge's `received-at`, else the Kafka timestamp. */
function seenAt(message: Pick<ConsumedMessage, 'headers' | 'timestamp'>): Date {
  const received = message.headers[HEADERS.receivedAt];
  const at = received === undefined ? NaN : Date.parse(received);
  return Number.isNaN(at) ? new Date(Number(message.timestamp)) : new Date(at);
}

/** What one raw message tells about drift; [] when it matches its schema. */
export function observeMessage(
  registry: SchemaRegistry,
  topics: TopicSet,
  topic: string,
  message: Pick<ConsumedMessage, 'headers' | 'value'>,
  maxPaths: number,
): DriftObservation[] {
  const source = (message.headers[HEADERS.source] ?? sourceOfTopic(topics, topic) ?? topic).slice(0, 60);
  const header = message.headers[HEADERS.schema];
  const found = registry.lookup(header);
  if (!found.ok) {
    const m = /^(.{1,100})@(\d{1,6})$/.exec(header?.trim() ?? '');
    return [
      {
        source,
        schemaName: m ? m[1]! : (header?.trim().slice(0, 100) ?? '') || '(none)',
        schemaVersion: m ? Number(m[2]) : 0,
        kind: 'unregistered schema',
        fieldPath: '',
        detail: found.reason,
      },
    ];
  }
  const base = { source, schemaName: found.name, schemaVersion: found.version };
  // A CDC tombstone (null value) follows every delete: expected, not drift.
  if (message.value === null) {
    return topic === topics.cdcPayments || topic === topics.cdcLedgerEntries
      ? []
      : [malformed(base, 'empty message value')];
  }
  let value: unknown;
  try {
    value = JSON.parse(message.value.toString('utf8'));
  } catch (err) {
    return [malformed(base, `not JSON: ${errorMessage(err)}`)];
  }
  const paths = new Set<string>();
  let truncated = false;
  for (const doc of documentsOf(found.documents, value)) {
    const result = unknownFieldPaths(doc, found.schema, { resolve: registry.resolve, maxPaths });
    result.paths.forEach((p) => paths.add(p));
    truncated ||= result.truncated;
  }
  if (truncated) paths.add(TRUNCATED_PATH);
  return [...paths].map((fieldPath) => ({ ...base, kind: 'unknown field' as const, fieldPath }));
}

function malformed(base: Omit<DriftObservation, 'kind' | 'fieldPath'>, detail: string): DriftObservation {
  return { ...base, kind: 'malformed payload', fieldPath: '', detail };
}

interface DriftRow {
  observation: DriftObservation;
  count: number;
  firstSeen: Date;
  lastSeen: Date;
  exampleOffset: string;
}

const rowKey = (o: DriftObservation): string =>
  JSON.stringify([o.source, o.schemaName, o.schemaVersion, o.kind, o.fieldPath]);

type Observe = (message: ConsumedMessage) => DriftObservation[];

/** Counts one partition's batch exactly once: returns how many messages were new and how many seen. */
async function countBatch(pool: Pool, group: string, batch: ConsumedBatch, observe: Observe): Promise<QualityCounters> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      await client.query('begin');
      const result = await countInTransaction(client, group, batch, observe);
      await client.query('commit');
      return result;
    } catch (err) {
      await client.query('rollback').catch(() => undefined);
      // Two partitions' batches may upsert the same drift rows: retry a deadlock or serialization loss.
      const code = (err as { code?: string }).code;
      if (attempt < 5 && (code === '40P01' || code === '40001')) continue;
      throw err;
    } finally {
      client.release();
    }
  }
}

async function countInTransaction(
  client: PoolClient,
  group: string,
  { topic, partition, messages }: ConsumedBatch,
  observe: Observe,
): Promise<QualityCounters> {
  // One round trip: creates the partition's row if new and locks it until commit.
  const { rows } = await client.query<{ next_offset: string }>(
    `insert into quality.consumed_offsets (consumer_group, topic, partition, next_offset) values ($1, $2, $3, 0)
     on conflict (consumer_group, topic, partition) do update set next_offset = quality.consumed_offsets.next_offset
     returning next_offset::text`,
    [group, topic, partition],
  );
  const next = BigInt(rows[0]!.next_offset);
  const fresh = messages.filter((m) => BigInt(m.offset) >= next);
  const byKey = new Map<string, DriftRow>();
  let observations = 0;
  for (const message of fresh) {
    const observed = observe(message);
    if (observed.length === 0) continue; // most messages: no drift, so no need to read their time
    const at = seenAt(message);
    for (const observation of observed) {
      observations += 1;
      const key = rowKey(observation);
      const row = byKey.get(key);
      if (!row) byKey.set(key, { observation, count: 1, firstSeen: at, lastSeen: at, exampleOffset: message.offset });
      else {
        row.count += 1;
        if (at < row.firstSeen) row.firstSeen = at;
        if (at > row.lastSeen) row.lastSeen = at;
      }
    }
  }
  // Sorted by key so concurrent batches lock shared rows in the same order.
  const drift = [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, r]) => r);
  if (drift.length > 0) {
    await client.query(
      `insert into quality.schema_drift (source, schema_name, schema_version, kind, field_path, first_seen,
              last_seen, count, example_topic, example_partition, example_offset, detail)
       select * from unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::timestamptz[],
                            $7::timestamptz[], $8::bigint[], $9::text[], $10::int[], $11::bigint[], $12::text[])
       on conflict (source, schema_name, schema_version, kind, field_path) do update set
         count = quality.schema_drift.count + excluded.count,
         first_seen = least(quality.schema_drift.first_seen, excluded.first_seen),
         last_seen = greatest(quality.schema_drift.last_seen, excluded.last_seen)`,
      [
        drift.map((r) => r.observation.source),
        drift.map((r) => r.observation.schemaName),
        drift.map((r) => r.observation.schemaVersion),
        drift.map((r) => r.observation.kind),
        drift.map((r) => r.observation.fieldPath),
        drift.map((r) => r.firstSeen.toISOString()),
        drift.map((r) => r.lastSeen.toISOString()),
        drift.map((r) => r.count),
        drift.map(() => topic),
        drift.map(() => partition),
        drift.map((r) => r.exampleOffset),
        drift.map((r) => r.observation.detail ?? null),
      ],
    );
  }
  const after = BigInt(messages[messages.length - 1]!.offset) + 1n;
  await client.query(
    `update quality.consumed_offsets set next_offset = greatest(next_offset, $4::bigint), updated_at = now()
      where consumer_group = $1 and topic = $2 and partition = $3`,
    [group, topic, partition, after.toString()],
  );
  return { counted: fresh.length, alreadyCounted: messages.length - fresh.length, observations };
}

export interface QualityConsumerDeps {
  pool: Pool;
  registry: SchemaRegistry;
  topics: TopicSet;
  group: string;
  log: Logger;
  maxUnknownPaths: number;
}

/**
 * The quality consumer's batch (run by runConsumer on the raw topics) and its counters since start.
 * Counted in Postgres first; a crash before the Kafka commit only causes a redelivery that is skipped.
 */
export function qualityBatches(deps: QualityConsumerDeps): { handle: BatchHandler; counters: QualityCounters } {
  const { pool, registry, topics, group, log, maxUnknownPaths } = deps;
  const counters: QualityCounters = { counted: 0, alreadyCounted: 0, observations: 0 };
  const handle: BatchHandler = async (batch) => {
    const result = await countBatch(pool, group, batch, (m) =>
      observeMessage(registry, topics, batch.topic, m, maxUnknownPaths),
    );
    counters.counted += result.counted;
    counters.alreadyCounted += result.alreadyCounted;
    counters.observations += result.observations;
    if (result.alreadyCounted > 0)
      log.info('skipped redelivered messages', { topic: batch.topic, partition: batch.partition, ...result });
    return 'commit';
  };
  return { handle, counters };
}

export interface DriftReportRow {
  source: string;
  schema: string;
  kind: DriftKind;
  fieldPath: string;
  count: number;
  firstSeen: string;
  lastSeen: string;
  example: { topic: string; partition: number; offset: string };
  detail: string | null;
}

export interface DriftReportFilter {
  source?: string;
  /** `<name>@<version>`, or a name for every version. */
  schema?: string;
  fieldPathPrefix?: string;
  limit?: number;
}

/** The drift table, newest first; source and schema match exactly, the path by prefix. */
export async function readDriftReport(pool: Pool, filter: DriftReportFilter = {}): Promise<DriftReportRow[]> {
  const ref = filter.schema === undefined ? undefined : /^(.+)@(\d+)$/.exec(filter.schema);
  const { rows } = await pool.query<{
    source: string;
    schema_name: string;
    schema_version: number;
    kind: DriftKind;
    field_path: string;
    count: string;
    first_seen: Date;
    last_seen: Date;
    example_topic: string;
    example_partition: number;
    example_offset: string;
    detail: string | null;
  }>(
    `select source, schema_name, schema_version, kind, field_path, count::text, first_seen, last_seen,
            example_topic, example_partition, example_offset::text, detail
       from quality.schema_drift
      where ($1::text is null or source = $1)
        and ($2::text is null or (schema_name = $2 and ($3::int is null or schema_version = $3)))
        and ($4::text is null or starts_with(field_path, $4))
      order by last_seen desc, source, schema_name, schema_version, kind, field_path
      limit $5`,
    [
      filter.source ?? null,
      ref ? ref[1] : (filter.schema ?? null),
      ref ? Number(ref[2]) : null,
      filter.fieldPathPrefix ?? null,
      filter.limit ?? 1000,
    ],
  );
  return rows.map((r) => ({
    source: r.source,
    schema: `${r.schema_name}@${r.schema_version}`,
    kind: r.kind,
    fieldPath: r.field_path,
    count: Number(r.count),
    firstSeen: r.first_seen.toISOString(),
    lastSeen: r.last_seen.toISOString(),
    example: { topic: r.example_topic, partition: r.example_partition, offset: r.example_offset },
    detail: r.detail,
  }));
}

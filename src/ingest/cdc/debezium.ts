import { z } from 'zod';
import { cdcIdempotencyKey } from '../../contracts/envelope';
import { describeIssues } from '../../contracts/issues';
import { errorMessage } from '../../logger';

// Normalizes change events of Debezium's PostgreSQL connector (pgoutput, 2.x/3.x) read from Kafka.
// Field set and semantics: https://debezium.io/documentation/reference/stable/connectors/postgresql.html#postgresql-events
// (keys #postgresql-change-events-key, REPLICA IDENTITY #postgresql-replica-identity, tombstones
// #postgresql-tombstone-events, truncate #postgresql-truncate-events, messages #postgresql-message-events).
// Identity follows ../shared/BRIEF.md §5: CDC key = table + primary key + LSN.

/** `op` codes Debezium writes: read (snapshot), create, update, delete, truncate, message. */
export const DebeziumOp = z.enum(['r', 'c', 'u', 'd', 't', 'm']);
export type DebeziumOp = z.infer<typeof DebeziumOp>;

/** `source.snapshot`: an io.debezium.data.Enum string since 1.x; legacy releases and the docs' examples use a boolean. */
const SNAPSHOT_MARKERS = [
  'true',
  'false',
  'first',
  'first_in_data_collection',
  'last_in_data_collection',
  'last',
  'incremental',
] as const;
export const DebeziumSnapshotMarker = z.union([z.boolean(), z.enum(SNAPSHOT_MARKERS)], {
  error: `expected a boolean or one of ${SNAPSHOT_MARKERS.join('|')}`,
});
export type DebeziumSnapshotMarker = z.infer<typeof DebeziumSnapshotMarker>;

const DecimalDigits = z.string().regex(/^\d+$/, 'expected a decimal integer');

/** A WAL position: a JSON number, or a decimal string once it is beyond 2^53 (see parseJsonExactly). */
const Lsn = z.union([z.number().int().nonnegative(), DecimalDigits], {
  error: (issue) => (issue.input === undefined ? 'required' : 'expected a non-negative integer WAL position'),
});

/** `source.sequence`: a JSON-encoded string array [lastCommitLsn, lsn]; either may be null. */
export const DebeziumLsnSequence = z
  .string()
  .transform((text): unknown => {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  })
  .pipe(z.tuple([DecimalDigits.nullable(), DecimalDigits.nullable()]));
export type DebeziumLsnSequence = z.infer<typeof DebeziumLsnSequence>;

/** The `source` block of io.debezium.connector.postgresql.Source; unknown fields (ts_us, ts_ns, xmin…) pass. */
export const DebeziumSource = z.looseObject({
  version: z.string(),
  connector: z.literal('postgresql'),
  name: z.string(),
  ts_ms: z.number().int().nonnegative(),
  snapshot: DebeziumSnapshotMarker.nullish(),
  db: z.string().min(1),
  sequence: DebeziumLsnSequence.nullish(),
  schema: z.string(),
  table: z.string(),
  txId: z.number().int().nonnegative().nullish(),
  lsn: Lsn,
});
export type DebeziumSource = z.infer<typeof DebeziumSource>;

const Row = z.record(z.string(), z.unknown());

/** The value payload; truncate and message events carry no before/after. */
export const DebeziumEnvelope = z.looseObject({
  before: Row.nullish(),
  after: Row.nullish(),
  source: DebeziumSource,
  op: DebeziumOp,
  ts_ms: z.number().int().nullish(),
  message: z.looseObject({ prefix: z.string() }).nullish(),
});
export type DebeziumEnvelope = z.infer<typeof DebeziumEnvelope>;

/** JsonConverter with schemas.enable=true wraps every key and value as {schema, payload}. */
export const JsonConverterWrapper = z.object({
  schema: z.looseObject({ type: z.string() }).nullable(),
  payload: z.unknown(),
});
export type JsonConverterWrapper = z.infer<typeof JsonConverterWrapper>;

/** The message key's payload: one field per primary-key column (or message.key.columns). */
export const DebeziumKey = z
  .record(z.string(), z.union([z.string(), z.number()]))
  .refine((key) => Object.keys(key).length > 0, 'expected at least one key column');
export type DebeziumKey = z.infer<typeof DebeziumKey>;

export const ChangeOp = z.enum(['snapshot', 'create', 'update', 'delete']);
export type ChangeOp = z.infer<typeof ChangeOp>;

/** One row change, normalized; `lsn` is a decimal string because WAL positions are 64-bit. */
export const ChangeEvent = z.object({
  op: ChangeOp,
  table: z.string().min(1),
  primaryKey: z.record(z.string(), z.union([z.string(), z.number()])),
  lsn: DecimalDigits,
  txId: z.number().int().nonnegative().optional(),
  tsMs: z.number().int().nonnegative(),
  snapshot: z.boolean(),
  before: Row.nullable(),
  after: Row.nullable(),
  idempotencyKey: z.string().min(1),
});
export type ChangeEvent = z.infer<typeof ChangeEvent>;

export type DebeziumParseResult =
  { ok: true; change: ChangeEvent } | { ok: false; reason: string } | { ok: 'ignored'; reason: string };

export type DebeziumParseOptions = {
  /** Per `schema.table`, the primary-key columns to read from after/before when the message key is absent. */
  primaryKeyColumns?: Readonly<Record<string, readonly string[]>>;
};

const ROW_OPS: Record<Exclude<DebeziumOp, 't' | 'm'>, ChangeOp> = {
  r: 'snapshot',
  c: 'create',
  u: 'update',
  d: 'delete',
};

/**
 * Parses one Kafka record (key and value as delivered) of a Debezium PostgreSQL topic.
 * Tombstones, truncates and logical-decoding messages are `ignored` with a reason; malformed
 * records are `ok: false` with a reason naming the failing field path, for quarantine.
 */
export function parseDebeziumEnvelope(
  key: Buffer | string | null,
  value: Buffer | string | null,
  options: DebeziumParseOptions = {},
): DebeziumParseResult {
  if (value === null) return ignored('tombstone: null value after a delete, kept for log compaction');
  const json = parseJsonExactly(value, 'value');
  if (!json.ok) return json;
  if (json.value === null) return ignored('tombstone: JSON null value after a delete, kept for log compaction');

  const unwrapped = unwrap(json.value, 'value');
  if (!unwrapped.ok) return unwrapped;
  const { payload, path } = unwrapped;
  if (payload === null) return ignored(`tombstone: ${path} is null after a delete, kept for log compaction`);

  const opOnly = z.object({ op: DebeziumOp }).safeParse(payload);
  if (!opOnly.success) return failure(opOnly.error, path);
  const op = opOnly.data.op;
  if (op === 't') return ignored(`truncate (op "t") of ${describeTable(payload)}: not a row change`);
  if (op === 'm') return ignored(`logical decoding message (op "m"${describePrefix(payload)}): not a row change`);

  const parsed = DebeziumEnvelope.safeParse(payload);
  if (!parsed.success) return failure(parsed.error, path);
  const envelope = parsed.data;
  const source = envelope.source;
  const before = envelope.before ?? null;
  const after = envelope.after ?? null;

  if (source.schema === '') return { ok: false, reason: `${path}.source.schema: empty for a row change` };
  if (source.table === '') return { ok: false, reason: `${path}.source.table: empty for a row change` };
  if (op !== 'd' && after === null) return { ok: false, reason: `${path}.after: null for op "${op}"` };
  if (op === 'd' && after !== null) return { ok: false, reason: `${path}.after: not null for op "d"` };

  const lsn = String(source.lsn);
  const sequencedLsn = source.sequence?.[1];
  // Both come from the same SourceInfo; disagreement means the record was altered in transit.
  if (sequencedLsn !== undefined && sequencedLsn !== null && sequencedLsn !== lsn) {
    return { ok: false, reason: `${path}.source.sequence: current LSN ${sequencedLsn} differs from source.lsn ${lsn}` };
  }

  const table = `${source.schema}.${source.table}`;
  const primaryKey = readPrimaryKey(
    key,
    table,
    op === 'd' ? before : after,
    `${path}.${op === 'd' ? 'before' : 'after'}`,
    options,
  );
  if (!primaryKey.ok) return primaryKey;

  const change: ChangeEvent = {
    op: ROW_OPS[op],
    table,
    primaryKey: primaryKey.value,
    lsn,
    ...(source.txId === null || source.txId === undefined ? {} : { txId: source.txId }),
    tsMs: source.ts_ms,
    snapshot: isSnapshot(source.snapshot),
    before,
    after,
    idempotencyKey: cdcIdempotencyKey(source.db, table, primaryKey.value, lsn),
  };
  return { ok: true, change };
}

type Step<T> = { ok: true; value: T } | { ok: false; reason: string };

function ignored(reason: string): DebeziumParseResult {
  return { ok: 'ignored', reason };
}

function failure(error: z.ZodError, path: string): { ok: false; reason: string } {
  return {
    ok: false,
    reason: describeIssues(error, { prefix: path }),
  };
}

/** Integers beyond 2^53 (LSNs, int8 columns, ts_ns) would be rounded by JSON.parse, so they become exact decimal strings. */
function parseJsonExactly(raw: Buffer | string, what: 'key' | 'value'): Step<unknown> {
  const text = typeof raw === 'string' ? raw : raw.toString('utf8');
  if (text.trim() === '') return { ok: false, reason: `${what}: empty, expected JSON` };
  const guarded = text.replace(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g, (token) =>
    token.startsWith('"') || !/^-?\d+$/.test(token) || Number.isSafeInteger(Number(token)) ? token : `"${token}"`,
  );
  try {
    return { ok: true, value: JSON.parse(guarded) as unknown };
  } catch (err) {
    return { ok: false, reason: `${what}: malformed JSON: ${errorMessage(err)}` };
  }
}

/** Strips the JsonConverter {schema, payload} wrapper if present; a bare Debezium payload never has both fields. */
function unwrap(
  json: unknown,
  path: string,
): { ok: true; payload: unknown; path: string } | { ok: false; reason: string } {
  const isWrapped =
    typeof json === 'object' && json !== null && 'schema' in json && 'payload' in json && !('op' in json);
  if (!isWrapped) return { ok: true, payload: json, path };
  const wrapper = JsonConverterWrapper.safeParse(json);
  if (!wrapper.success) return failure(wrapper.error, path);
  return { ok: true, payload: wrapper.data.payload, path: `${path}.payload` };
}

function readPrimaryKey(
  rawKey: Buffer | string | null,
  table: string,
  row: Record<string, unknown> | null,
  rowPath: string,
  options: DebeziumParseOptions,
): Step<DebeziumKey> {
  if (rawKey !== null) {
    const json = parseJsonExactly(rawKey, 'key');
    if (!json.ok) return json;
    if (json.value !== null) {
      const unwrapped = unwrap(json.value, 'key');
      if (!unwrapped.ok) return unwrapped;
      if (unwrapped.payload !== null) {
        const key = DebeziumKey.safeParse(unwrapped.payload);
        return key.success ? { ok: true, value: key.data } : failure(key.error, unwrapped.path);
      }
    }
  }
  // Keyless topics (no PK, or a key converter that drops it): fall back to configured columns of the row.
  const columns = options.primaryKeyColumns?.[table];
  if (columns === undefined || columns.length === 0) {
    return { ok: false, reason: `key: absent and options.primaryKeyColumns has no columns for ${table}` };
  }
  if (row === null) return { ok: false, reason: `${rowPath}: null, so primary key columns cannot be read` };
  const primaryKey: DebeziumKey = {};
  for (const column of columns) {
    const v = row[column];
    if (typeof v !== 'string' && !(typeof v === 'number' && Number.isFinite(v))) {
      return { ok: false, reason: `${rowPath}.${column}: primary key column missing or not a string/number` };
    }
    primaryKey[column] = v;
  }
  return { ok: true, value: primaryKey };
}

function isSnapshot(marker: DebeziumSnapshotMarker | null | undefined): boolean {
  if (typeof marker === 'boolean') return marker;
  return marker !== undefined && marker !== null && marker !== 'false';
}

function describeTable(payload: unknown): string {
  const source = z.object({ source: z.object({ schema: z.string(), table: z.string() }) }).safeParse(payload);
  return source.success ? `${source.data.source.schema}.${source.data.source.table}` : 'an unnamed table';
}

function describePrefix(payload: unknown): string {
  const message = z.object({ message: z.object({ prefix: z.string() }) }).safeParse(payload);
  return message.success ? `, prefix "${message.data.message.prefix}"` : '';
}

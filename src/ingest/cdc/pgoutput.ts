// Parser for PostgreSQL's pgoutput logical replication messages, protocol version 1, as returned in
// the `data` column of pg_logical_slot_peek_binary_changes(). Message layouts:
// https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
// Value typing follows Debezium's PostgreSQL connector defaults (decimal.handling.mode=string aside).

/** Microseconds between the Unix epoch and Postgres' epoch (2000-01-01T00:00:00Z). */
const PG_EPOCH_US = 946_684_800_000_000n;

export class PgOutputError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`pgoutput: ${message} (at byte ${offset})`);
  }
}

/** One column of a TupleData: null, an unchanged TOASTed value (not sent), or its text/binary form. */
export type TupleValue =
  { kind: 'null' } | { kind: 'unchanged-toast' } | { kind: 'text'; text: string } | { kind: 'binary'; bytes: Buffer };

export interface RelationColumn {
  name: string;
  /** Part of the replica identity (the primary key under REPLICA IDENTITY DEFAULT). */
  isKey: boolean;
  typeOid: number;
  typeModifier: number;
}

export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

export type PgOutputMessage =
  | { tag: 'begin'; finalLsn: bigint; commitTimeUs: bigint; xid: number }
  | { tag: 'commit'; flags: number; commitLsn: bigint; endLsn: bigint; commitTimeUs: bigint }
  | { tag: 'origin'; originLsn: bigint; name: string }
  | {
      tag: 'relation';
      relationId: number;
      namespace: string;
      name: string;
      replicaIdentity: ReplicaIdentity;
      columns: RelationColumn[];
    }
  | { tag: 'type'; typeOid: number; namespace: string; name: string }
  | { tag: 'insert'; relationId: number; newTuple: TupleValue[] }
  | {
      tag: 'update';
      relationId: number;
      /** 'K': only the old replica-identity columns (sent when they changed); 'O': the whole old row (FULL). */
      oldTuple?: { kind: 'key' | 'full'; values: TupleValue[] };
      newTuple: TupleValue[];
    }
  | { tag: 'delete'; relationId: number; oldTuple: { kind: 'key' | 'full'; values: TupleValue[] } }
  | { tag: 'truncate'; relationIds: number[]; cascade: boolean; restartIdentity: boolean }
  | { tag: 'message'; transactional: boolean; lsn: bigint; prefix: string; content: Buffer };

const REPLICA_IDENTITIES: Record<string, ReplicaIdentity> = { d: 'default', n: 'nothing', f: 'full', i: 'index' };

class Reader {
  offset = 0;
  constructor(readonly buf: Buffer) {}

  /** Checks that `n` bytes remain, moves past them and returns where they start. */
  private take(n: number, what: string): number {
    if (this.offset + n > this.buf.length) {
      throw new PgOutputError(
        `truncated message: ${what} needs ${n} bytes, ${this.buf.length - this.offset} left`,
        this.offset,
      );
    }
    const at = this.offset;
    this.offset += n;
    return at;
  }
  u8(what: string): number {
    return this.buf.readUInt8(this.take(1, what));
  }
  i16(what: string): number {
    return this.buf.readInt16BE(this.take(2, what));
  }
  i32(what: string): number {
    return this.buf.readInt32BE(this.take(4, what));
  }
  u32(what: string): number {
    return this.buf.readUInt32BE(this.take(4, what));
  }
  u64(what: string): bigint {
    return this.buf.readBigUInt64BE(this.take(8, what));
  }
  i64(what: string): bigint {
    return this.buf.readBigInt64BE(this.take(8, what));
  }
  bytes(n: number, what: string): Buffer {
    if (n < 0) throw new PgOutputError(`${what}: negative length ${n}`, this.offset);
    const at = this.take(n, what);
    return this.buf.subarray(at, at + n);
  }
  /** A NUL-terminated string. */
  cstring(what: string): string {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw new PgOutputError(`${what}: string without terminating NUL`, this.offset);
    const v = this.buf.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return v;
  }
  done(tag: string): void {
    if (this.offset !== this.buf.length) {
      throw new PgOutputError(`${this.buf.length - this.offset} trailing bytes after a '${tag}' message`, this.offset);
    }
  }
}

function readTuple(r: Reader): TupleValue[] {
  const count = r.i16('tuple column count');
  const values: TupleValue[] = [];
  for (let i = 0; i < count; i++) {
    const kind = String.fromCharCode(r.u8(`tuple column ${i} kind`));
    switch (kind) {
      case 'n':
        values.push({ kind: 'null' });
        break;
      case 'u':
        values.push({ kind: 'unchanged-toast' });
        break;
      case 't':
        values.push({ kind: 'text', text: r.bytes(r.i32(`column ${i} length`), `column ${i} text`).toString('utf8') });
        break;
      case 'b':
        values.push({ kind: 'binary', bytes: Buffer.from(r.bytes(r.i32(`column ${i} length`), `column ${i} bytes`)) });
        break;
      default:
        throw new PgOutputError(`tuple column ${i}: unknown kind '${kind}'`, r.offset - 1);
    }
  }
  return values;
}

function readOldTuple(r: Reader, marker: string): { kind: 'key' | 'full'; values: TupleValue[] } {
  return { kind: marker === 'K' ? 'key' : 'full', values: readTuple(r) };
}

/** Parses one pgoutput message (one `data` value of the slot's output). */
export function parsePgOutputMessage(data: Buffer): PgOutputMessage {
  const r = new Reader(data);
  const tag = String.fromCharCode(r.u8('message tag'));
  let message: PgOutputMessage;
  switch (tag) {
    case 'B':
      message = { tag: 'begin', finalLsn: r.u64('final LSN'), commitTimeUs: r.i64('commit time'), xid: r.u32('xid') };
      break;
    case 'C':
      message = {
        tag: 'commit',
        flags: r.u8('flags'),
        commitLsn: r.u64('commit LSN'),
        endLsn: r.u64('end LSN'),
        commitTimeUs: r.i64('commit time'),
      };
      break;
    case 'O':
      message = { tag: 'origin', originLsn: r.u64('origin LSN'), name: r.cstring('origin name') };
      break;
    case 'R': {
      const relationId = r.u32('relation id');
      const namespace = r.cstring('namespace');
      const name = r.cstring('relation name');
      const identity = String.fromCharCode(r.u8('replica identity'));
      const replicaIdentity = REPLICA_IDENTITIES[identity];
      if (replicaIdentity === undefined)
        throw new PgOutputError(`unknown replica identity '${identity}'`, r.offset - 1);
      const count = r.i16('column count');
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i++) {
        const flags = r.u8(`column ${i} flags`);
        columns.push({
          name: r.cstring(`column ${i} name`),
          isKey: (flags & 1) === 1,
          typeOid: r.u32(`column ${i} type`),
          typeModifier: r.i32(`column ${i} type modifier`),
        });
      }
      // An empty namespace means pg_catalog (protocol docs).
      message = { tag: 'relation', relationId, namespace: namespace || 'pg_catalog', name, replicaIdentity, columns };
      break;
    }
    case 'Y':
      message = { tag: 'type', typeOid: r.u32('type oid'), namespace: r.cstring('namespace'), name: r.cstring('name') };
      break;
    case 'I': {
      const relationId = r.u32('relation id');
      const marker = String.fromCharCode(r.u8('new tuple marker'));
      if (marker !== 'N') throw new PgOutputError(`insert: expected 'N', got '${marker}'`, r.offset - 1);
      message = { tag: 'insert', relationId, newTuple: readTuple(r) };
      break;
    }
    case 'U': {
      const relationId = r.u32('relation id');
      let marker = String.fromCharCode(r.u8('tuple marker'));
      let oldTuple: { kind: 'key' | 'full'; values: TupleValue[] } | undefined;
      if (marker === 'K' || marker === 'O') {
        oldTuple = readOldTuple(r, marker);
        marker = String.fromCharCode(r.u8('new tuple marker'));
      }
      if (marker !== 'N') throw new PgOutputError(`update: expected 'N', got '${marker}'`, r.offset - 1);
      message = { tag: 'update', relationId, ...(oldTuple && { oldTuple }), newTuple: readTuple(r) };
      break;
    }
    case 'D': {
      const relationId = r.u32('relation id');
      const marker = String.fromCharCode(r.u8('old tuple marker'));
      if (marker !== 'K' && marker !== 'O')
        throw new PgOutputError(`delete: expected 'K' or 'O', got '${marker}'`, r.offset - 1);
      message = { tag: 'delete', relationId, oldTuple: readOldTuple(r, marker) };
      break;
    }
    case 'T': {
      const count = r.i32('relation count');
      const options = r.u8('options');
      const relationIds: number[] = [];
      for (let i = 0; i < count; i++) relationIds.push(r.u32(`relation ${i}`));
      message = { tag: 'truncate', relationIds, cascade: (options & 1) === 1, restartIdentity: (options & 2) === 2 };
      break;
    }
    case 'M': {
      const flags = r.u8('flags');
      const lsn = r.u64('message LSN');
      const prefix = r.cstring('prefix');
      const content = Buffer.from(r.bytes(r.i32('content length'), 'content'));
      message = { tag: 'message', transactional: (flags & 1) === 1, lsn, prefix, content };
      break;
    }
    default:
      throw new PgOutputError(`unknown message tag '${tag}' (0x${data[0]?.toString(16) ?? '??'})`, 0);
  }
  r.done(tag);
  return message;
}

/** "16/B374D848" → 64-bit WAL position. */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) throw new Error(`not a WAL position (pg_lsn): "${text}"`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Postgres timestamps (µs since 2000-01-01) → ms since the Unix epoch. */
export function pgTimeToUnixMs(us: bigint): number {
  return Number((us + PG_EPOCH_US) / 1000n);
}

/** Type OIDs from pg_type.dat (stable across releases). */
export const PG_TYPE = {
  bool: 16,
  bytea: 17,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  float4: 700,
  float8: 701,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
} as const;

/** A JSON value of a row; bigint only for integers beyond 2^53, which JSON.parse would round. */
export type ColumnValue = string | number | bigint | boolean | null;

/** Debezium's placeholder for a TOASTed column that an UPDATE did not change (unavailable.value.placeholder). */
export const UNAVAILABLE_VALUE = '__debezium_unavailable_value';

const exactInteger = (text: string): number | bigint => {
  const n = BigInt(text);
  return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(n) : n;
};

const TIMESTAMP_TEXT =
  /^(\d{4,})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?)?( BC)?$/;

/** "2026-01-01 10:00:00.1234+05:30" (any session TimeZone, DateStyle ISO) → "2026-01-01T04:30:00.1234Z", µs kept. */
export function timestamptzToIso(text: string): string {
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m || m[8] === undefined || m[12] !== undefined) return text; // infinity, BC, non-ISO DateStyle: passed through
  const sign = m[8] === '-' ? -1 : 1;
  const offsetS = sign * (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0));
  const ms =
    Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])) - offsetS * 1000;
  const fraction = (m[7] ?? '').replace(/0+$/, '');
  // ISO_OFFSET_DATE_TIME as Debezium prints ZonedTimestamp: seconds always, fraction only when non-zero.
  return `${new Date(ms).toISOString().slice(0, 19)}${fraction ? `.${fraction}` : ''}Z`;
}

/** "2026-01-01 10:00:00.5" → µs since the Unix epoch (Debezium's MicroTimestamp). */
function timestampToMicros(text: string): number | string {
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m || m[8] !== undefined || m[12] !== undefined) return text;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return ms * 1000 + Number((m[7] ?? '').padEnd(6, '0'));
}

/** "2026-01-01" → days since the Unix epoch (Debezium's io.debezium.time.Date). */
function dateToDays(text: string): number | string {
  const m = /^(\d{4,})-(\d{2})-(\d{2})$/.exec(text);
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) / 86_400_000 : text;
}

/** Types one text-format column value by its type OID, as Debezium's default converters would. */
export function decodeColumn(typeOid: number, text: string): ColumnValue {
  switch (typeOid) {
    case PG_TYPE.int2:
    case PG_TYPE.int4:
    case PG_TYPE.int8:
    case PG_TYPE.oid:
      return exactInteger(text);
    case PG_TYPE.bool:
      return text === 't';
    case PG_TYPE.float4:
    case PG_TYPE.float8: {
      const n = Number(text);
      return Number.isFinite(n) ? n : text; // NaN / Infinity have no JSON number
    }
    case PG_TYPE.timestamptz:
      return timestamptzToIso(text);
    case PG_TYPE.timestamp:
      return timestampToMicros(text);
    case PG_TYPE.date:
      return dateToDays(text);
    case PG_TYPE.bytea:
      // Text form is "\x<hex>"; Debezium's binary.handling.mode=bytes prints base64.
      return text.startsWith('\\x') ? Buffer.from(text.slice(2), 'hex').toString('base64') : text;
    default:
      // numeric (exact, as a string: decimal.handling.mode=string), text, varchar, uuid, json, enums…
      return text;
  }
}

/** A row as a JSON object: column name → typed value; null for 'n', the placeholder for unchanged TOAST. */
export function decodeTuple(
  columns: readonly RelationColumn[],
  values: readonly TupleValue[],
): Record<string, ColumnValue> {
  if (columns.length !== values.length) {
    throw new Error(`pgoutput: tuple has ${values.length} columns, its relation ${columns.length}`);
  }
  const row: Record<string, ColumnValue> = {};
  columns.forEach((column, i) => {
    const v = values[i]!;
    row[column.name] =
      v.kind === 'null'
        ? null
        : v.kind === 'unchanged-toast'
          ? UNAVAILABLE_VALUE
          : v.kind === 'text'
            ? decodeColumn(column.typeOid, v.text)
            : v.bytes.toString('base64');
  });
  return row;
}

const BIGINT_SENTINEL = '\u0000bigint:';

/** JSON.stringify that writes bigint as an exact JSON integer (JSON has no size limit; JS numbers do). */
export function stringifyExact(value: unknown): string {
  const json = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `${BIGINT_SENTINEL}${v}` : v));
  return json.replace(/"\\u0000bigint:(-?\d+)"/g, '$1');
}

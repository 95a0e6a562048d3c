import { isUtf8 } from 'node:buffer';
import { z } from 'zod';
import type { ConsumedMessage } from '../kafka';

// The raw archive's layout, pure: object and manifest keys, one NDJSON line per Kafka record, the
// manifest entry that commits an object, and the range arithmetic the completeness check uses.
// docs/archive.md explains the protocol these pieces serve.

/** Offsets are 64-bit: padded to 20 digits so keys sort by offset. */
const pad = (n: bigint | string, width: number): string => n.toString().padStart(width, '0');

/**
 * `raw/<topic>/date=YYYY-MM-DD/hour=HH/partition=<p>/<first>-<last>.ndjson.gz`: the same records always
 * make the same key (the hour is the first record's Kafka timestamp, UTC).
 */
export function objectKey(topic: string, partition: number, first: string, last: string, firstTimestampMs: number) {
  const at = new Date(firstTimestampMs).toISOString();
  return `raw/${topic}/date=${at.slice(0, 10)}/hour=${at.slice(11, 13)}/partition=${partition}/${pad(first, 20)}-${pad(last, 20)}.ndjson.gz`;
}

export const manifestPrefix = (topic: string, partition: number): string =>
  `manifests/${topic}/partition=${partition}/`;

/** One manifest entry per committed object; its sequence number is the compare-and-set (If-None-Match). */
export const manifestKey = (topic: string, partition: number, seq: number): string =>
  `${manifestPrefix(topic, partition)}${pad(BigInt(seq), 12)}.json`;

export function seqOfManifestKey(key: string): number | undefined {
  const m = /\/(\d{12})\.json$/.exec(key);
  return m ? Number(m[1]) : undefined;
}

/** The topic and partition an archive object key names, or undefined for any other key. */
export function parseObjectKey(
  key: string,
): { topic: string; partition: number; first: bigint; last: bigint } | undefined {
  const m = /^raw\/(.+)\/date=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/partition=(\d+)\/(\d{20})-(\d{20})\.ndjson\.gz$/.exec(key);
  return m ? { topic: m[1]!, partition: Number(m[2]), first: BigInt(m[3]!), last: BigInt(m[4]!) } : undefined;
}

// ---- records -----------------------------------------------------------------------------------------

/**
 * One archived record: key and header values as base64; the value as `valueText` when it is UTF-8 (nearly
 * every raw event: JSON), else as base64 in `value`, so a value that is not UTF-8 comes back byte for byte.
 * Text instead of base64 saved 16% of the gzip bytes and 27% of the gzip CPU (bench:archiver, docs/archive.md).
 */
export const ArchivedRecord = z.object({
  offset: z.string().regex(/^\d+$/),
  timestamp: z.string().regex(/^-?\d+$/),
  key: z.string().nullable(),
  /** Base64; null for a tombstone, or when `valueText` holds the value. */
  value: z.string().nullable(),
  valueText: z.string().optional(),
  headers: z.array(z.tuple([z.string(), z.string()])),
});
export type ArchivedRecord = z.infer<typeof ArchivedRecord>;

export function archiveLine(m: Pick<ConsumedMessage, 'offset' | 'timestamp' | 'key' | 'value' | 'rawHeaders'>): string {
  const text = m.value !== null && isUtf8(m.value);
  const record: ArchivedRecord = {
    offset: m.offset,
    timestamp: m.timestamp,
    key: m.key === null ? null : m.key.toString('base64'),
    value: m.value === null || text ? null : m.value.toString('base64'),
    ...(text ? { valueText: m.value!.toString('utf8') } : {}),
    headers: m.rawHeaders.map(([name, v]) => [name, v.toString('base64')]),
  };
  return JSON.stringify(record);
}

export interface RestoredRecord {
  offset: string;
  timestamp: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: [string, Buffer][];
}

/** The records of an object's NDJSON text (after gunzip); throws naming the line that is not a record. */
export function parseArchiveLines(text: string): RestoredRecord[] {
  const out: RestoredRecord[] = [];
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    const parsed = ArchivedRecord.safeParse(JSON.parse(line));
    if (!parsed.success) throw new Error(`archive line ${i + 1} is not a record: ${parsed.error.message}`);
    const r = parsed.data;
    out.push({
      offset: r.offset,
      timestamp: r.timestamp,
      key: r.key === null ? null : Buffer.from(r.key, 'base64'),
      value:
        r.valueText !== undefined
          ? Buffer.from(r.valueText, 'utf8')
          : r.value === null
            ? null
            : Buffer.from(r.value, 'base64'),
      headers: r.headers.map(([name, v]) => [name, Buffer.from(v, 'base64')]),
    });
  });
  return out;
}

// ---- manifests ---------------------------------------------------------------------------------------

const Offset = z.string().regex(/^\d+$/);

/** The commit point of one object: it covers the partition's offsets [from, to), its records inside. */
export const ManifestEntry = z.object({
  version: z.literal(1),
  topic: z.string(),
  partition: z.number().int().nonnegative(),
  seq: z.number().int().nonnegative(),
  /** The previous entry's `to` (or where the log started): offsets in between were control records. */
  from: Offset,
  /** The next offset to read after this object, past trailing transaction markers. */
  to: Offset,
  firstOffset: Offset,
  lastOffset: Offset,
  records: z.number().int().positive(),
  key: z.string(),
  /** The object version this entry commits (a racing writer's version of the same key is an orphan). */
  versionId: z.string().nullable(),
  bytes: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  minTimestamp: z.string(),
  maxTimestamp: z.string(),
  writtenAt: z.string(),
  writer: z.string(),
});
export type ManifestEntry = z.infer<typeof ManifestEntry>;

/** Retention of an entry and its object ends here: derived from the entry, so a re-lock sets the same date. */
export function retainUntil(entry: Pick<ManifestEntry, 'writtenAt'>, days: number): Date {
  return new Date(Date.parse(entry.writtenAt) + days * 24 * 3600_000);
}

// ---- completeness ------------------------------------------------------------------------------------

export interface OffsetRange {
  from: string;
  to: string;
}

export interface PartitionOffsets {
  /** Kafka's log start offset: older records are deleted. */
  logStart: string;
  /** The high watermark: the next offset a producer writes. */
  high: string;
  /** The archiver group's committed offset; null when it has none. */
  committed: string | null;
}

export interface RangeFindings {
  gaps: OffsetRange[];
  overlaps: OffsetRange[];
  /** Offset after the last archived one ('' when nothing is archived). */
  archivedTo: string;
}

/**
 * Gaps and overlaps of a partition's manifest entries (in seq order) against Kafka's offsets: between
 * consecutive entries; records Kafka deleted before they were archived; a committed offset past the archive.
 */
export function rangeFindings(
  entries: readonly Pick<ManifestEntry, 'from' | 'to'>[],
  kafka: PartitionOffsets,
): RangeFindings {
  const gaps: OffsetRange[] = [];
  const overlaps: OffsetRange[] = [];
  let to: bigint | undefined;
  for (const e of entries) {
    const from = BigInt(e.from);
    if (to !== undefined && from > to) gaps.push({ from: to.toString(), to: e.from });
    if (to !== undefined && from < to) overlaps.push({ from: e.from, to: to.toString() });
    to = to === undefined || BigInt(e.to) > to ? BigInt(e.to) : to;
  }
  const logStart = BigInt(kafka.logStart);
  const committed = kafka.committed === null ? undefined : BigInt(kafka.committed);
  const end = to ?? 0n;
  // Kafka's retention passed records the archive never got.
  if (logStart > end && (to !== undefined || (committed ?? 0n) > 0n))
    gaps.push({ from: end.toString(), to: kafka.logStart });
  // The group says archived what no manifest lists (offsets moved by hand).
  if (committed !== undefined && committed > end && committed > logStart) {
    gaps.push({ from: (end > logStart ? end : logStart).toString(), to: committed.toString() });
  }
  return { gaps, overlaps, archivedTo: to === undefined ? '' : to.toString() };
}

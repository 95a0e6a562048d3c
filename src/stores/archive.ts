import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetBucketLifecycleConfigurationCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  PutBucketLifecycleConfigurationCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  PutObjectLockConfigurationCommand,
  PutObjectRetentionCommand,
  type S3Client,
  type S3ServiceException,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import {
  ManifestEntry,
  manifestKey,
  manifestPrefix,
  parseObjectKey,
  retainUntil,
  seqOfManifestKey,
} from '../streams/archiver/layout';

// Every S3 call of the raw archive: the bucket's Object Lock and lifecycle, objects, manifest entries
// written with If-None-Match (the commit point), retention, the manifest's head, and the orphan sweep.

const statusOf = (err: unknown): number | undefined => (err as S3ServiceException).$metadata?.httpStatusCode;

export interface BucketProtection {
  objectLock: string | undefined;
  lifecycle: { id: string; prefix: string; expirationDays: number | undefined; noncurrentDays: number | undefined }[];
}

/**
 * The archive bucket: created with Object Lock (which turns versioning on); an older bucket gets versioning
 * and Object Lock added. No default retention: an orphan must stay deletable, so retention is set per
 * manifested object (lockCommitted). Lifecycle: raw objects and manifests expire after `days` (manifests
 * a day later), and old versions a day after they stop being current.
 */
export async function ensureArchiveBucket(s3: S3Client, bucket: string, days: number): Promise<BucketProtection> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    const status = statusOf(err);
    if (status !== 404 && status !== 403) throw new Error(`S3 bucket ${bucket}: ${(err as Error).message}`);
    await s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
  }
  const protection = await readBucketProtection(s3, bucket);
  if (protection.objectLock !== 'Enabled') {
    await s3.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
    try {
      await s3.send(
        new PutObjectLockConfigurationCommand({
          Bucket: bucket,
          ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled' },
        }),
      );
    } catch (err) {
      throw new Error(
        `S3 bucket ${bucket} has no Object Lock and refuses to enable it (${(err as Error).message}); ` +
          'the local S3 server only enables it on an empty bucket: recreate the bucket (local stack: npm run stack -- down && npm run stack -- up)',
      );
    }
  }
  const rule = (id: string, prefix: string, expirationDays: number) => ({
    ID: id,
    Status: 'Enabled' as const,
    Filter: { Prefix: prefix },
    Expiration: { Days: expirationDays },
    NoncurrentVersionExpiration: { NoncurrentDays: 1 },
  });
  await s3.send(
    new PutBucketLifecycleConfigurationCommand({
      Bucket: bucket,
      LifecycleConfiguration: {
        Rules: [rule('raw-archive-expiry', 'raw/', days), rule('archive-manifest-expiry', 'manifests/', days + 1)],
      },
    }),
  );
  return readBucketProtection(s3, bucket);
}

/** What the bucket says about its Object Lock and lifecycle (read back by tests and `archive check`). */
export async function readBucketProtection(s3: S3Client, bucket: string): Promise<BucketProtection> {
  let objectLock: string | undefined;
  try {
    const lock = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }));
    objectLock = lock.ObjectLockConfiguration?.ObjectLockEnabled;
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
  let lifecycle: BucketProtection['lifecycle'] = [];
  try {
    const got = await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }));
    lifecycle = (got.Rules ?? []).map((r) => ({
      id: r.ID ?? '',
      prefix: r.Filter?.Prefix ?? r.Prefix ?? '',
      expirationDays: r.Expiration?.Days,
      noncurrentDays: r.NoncurrentVersionExpiration?.NoncurrentDays,
    }));
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
  return { objectLock, lifecycle };
}

/** Writes an object (not yet counted: only a manifest entry makes it part of the archive). */
export async function putArchiveObject(
  s3: S3Client,
  bucket: string,
  key: string,
  body: Buffer,
): Promise<{ versionId: string | null }> {
  const put = await s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: body,
      ContentType: 'application/x-ndjson',
      ContentEncoding: 'gzip',
    }),
  );
  return { versionId: put.VersionId ?? null };
}

export async function getArchiveObject(s3: S3Client, bucket: string, key: string, versionId?: string | null) {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId ?? undefined }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

/** An archived object whose bytes are not what its manifest entry committed: retrying cannot fix it. */
export class ArchiveObjectCorrupt extends Error {
  override name = 'ArchiveObjectCorrupt';
}

/** What a manifest entry commits about an object: the version, and (entries since v1) its size and SHA-256. */
export interface CommittedObject {
  key: string;
  versionId: string | null;
  bytes?: number;
  sha256?: string;
}

/**
 * The committed version of an object, checked against its manifest entry's size and SHA-256: a replay
 * never reads bytes other than the ones archived. Throws ArchiveObjectCorrupt naming the object.
 */
export async function getCommittedObject(s3: S3Client, bucket: string, ref: CommittedObject): Promise<Buffer> {
  const body = await getArchiveObject(s3, bucket, ref.key, ref.versionId);
  const name = `s3://${bucket}/${ref.key} (version ${ref.versionId ?? 'null'})`;
  if (ref.bytes !== undefined && body.length !== ref.bytes) {
    throw new ArchiveObjectCorrupt(`${name}: ${body.length} bytes, its manifest entry committed ${ref.bytes}`);
  }
  if (ref.sha256 !== undefined) {
    const sha256 = createHash('sha256').update(body).digest('hex');
    if (sha256 !== ref.sha256) {
      throw new ArchiveObjectCorrupt(`${name}: SHA-256 ${sha256}, its manifest entry committed ${ref.sha256}`);
    }
  }
  return body;
}

/** Deletes one version for good (an orphan's: it has no retention). */
export async function deleteVersion(
  s3: S3Client,
  bucket: string,
  key: string,
  versionId: string | null,
): Promise<void> {
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId ?? undefined }));
}

/** The commit: creates entry `seq` only if no writer did. 'taken' = another archiver committed that seq first. */
export async function putManifestEntry(
  s3: S3Client,
  bucket: string,
  entry: ManifestEntry,
): Promise<'written' | 'taken'> {
  try {
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: manifestKey(entry.topic, entry.partition, entry.seq),
        Body: JSON.stringify(entry),
        ContentType: 'application/json',
        IfNoneMatch: '*',
      }),
    );
    return 'written';
  } catch (err) {
    // 412: the key exists; 409: a concurrent conditional write of the same key is in progress.
    if (statusOf(err) === 412 || statusOf(err) === 409) return 'taken';
    throw err;
  }
}

/** COMPLIANCE retention on a committed object and its manifest entry; idempotent (the date comes from the entry). */
export async function lockCommitted(s3: S3Client, bucket: string, entry: ManifestEntry, days: number): Promise<void> {
  const Retention = { Mode: 'COMPLIANCE' as const, RetainUntilDate: retainUntil(entry, days) };
  await s3.send(
    new PutObjectRetentionCommand({
      Bucket: bucket,
      Key: entry.key,
      VersionId: entry.versionId ?? undefined,
      Retention,
    }),
  );
  await s3.send(
    new PutObjectRetentionCommand({
      Bucket: bucket,
      Key: manifestKey(entry.topic, entry.partition, entry.seq),
      Retention,
    }),
  );
}

/**
 * An object version's retention as HEAD reports it (GetObjectRetention with a version id returns the
 * object's bytes on the local S3 server, moto 5.2: docs/archive.md).
 */
export async function readRetention(s3: S3Client, bucket: string, key: string, versionId?: string | null) {
  const got = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId ?? undefined }));
  return { mode: got.ObjectLockMode, until: got.ObjectLockRetainUntilDate };
}

export async function readManifestEntry(
  s3: S3Client,
  bucket: string,
  topic: string,
  partition: number,
  seq: number,
): Promise<ManifestEntry> {
  return readManifestEntryAt(s3, bucket, manifestKey(topic, partition, seq));
}

async function readManifestEntryAt(s3: S3Client, bucket: string, key: string): Promise<ManifestEntry> {
  const text = (await getArchiveObject(s3, bucket, key)).toString('utf8');
  const parsed = ManifestEntry.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`manifest entry ${key} is malformed: ${parsed.error.message}`);
  return parsed.data;
}

/** Whether any manifest entry with a seq above `seq` exists (one LIST; works after old entries expired). */
async function anyAbove(s3: S3Client, bucket: string, topic: string, partition: number, seq: number) {
  const page = await s3.send(
    new ListObjectsV2Command({
      Bucket: bucket,
      Prefix: manifestPrefix(topic, partition),
      StartAfter: seq < 0 ? undefined : manifestKey(topic, partition, seq),
      MaxKeys: 1,
    }),
  );
  const key = page.Contents?.[0]?.Key;
  return key === undefined ? undefined : seqOfManifestKey(key);
}

/**
 * The partition's last manifest entry, or undefined for a partition never archived: the highest seq by
 * galloping then bisecting with one-key LISTs (about 2·log2(n) requests, not a listing of every entry).
 */
export async function findManifestHead(
  s3: S3Client,
  bucket: string,
  topic: string,
  partition: number,
): Promise<ManifestEntry | undefined> {
  const first = await anyAbove(s3, bucket, topic, partition, -1);
  if (first === undefined) return undefined;
  let low = first; // exists
  let step = 1;
  let high = low + step;
  for (;;) {
    const above = await anyAbove(s3, bucket, topic, partition, high - 1);
    if (above === undefined) break;
    low = above;
    step *= 2;
    high = low + step;
  }
  // low exists; nothing at or above high exists.
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    const above = await anyAbove(s3, bucket, topic, partition, mid - 1);
    if (above === undefined) high = mid;
    else low = above;
  }
  return readManifestEntry(s3, bucket, topic, partition, low);
}

/**
 * The manifest entry whose object holds the record at `offset` of a partition (its [from, to) covers it),
 * or undefined when the archive does not hold it (not archived yet, or expired). Bisects the seqs by their
 * `from` (offsets rise with seq; expired entries leave gaps): about 3·log2(entries) requests.
 */
export async function manifestEntryHolding(
  s3: S3Client,
  bucket: string,
  topic: string,
  partition: number,
  offset: string,
): Promise<ManifestEntry | undefined> {
  const at = BigInt(offset);
  const holds = (e: ManifestEntry): boolean => BigInt(e.from) <= at && at < BigInt(e.to);
  const head = await findManifestHead(s3, bucket, topic, partition);
  if (head === undefined || at >= BigInt(head.to)) return undefined;
  if (BigInt(head.from) <= at) return holds(head) ? head : undefined;
  let low = await readManifestEntry(s3, bucket, topic, partition, (await anyAbove(s3, bucket, topic, partition, -1))!);
  if (BigInt(low.from) > at) return undefined; // older than the oldest entry kept
  // low.from ≤ offset; every existing seq ≥ high has from > offset.
  let high = head.seq;
  while (high - low.seq > 1) {
    const mid = Math.floor((low.seq + high) / 2);
    const seq = await anyAbove(s3, bucket, topic, partition, mid - 1);
    if (seq === undefined || seq >= high) {
      high = mid;
      continue;
    }
    const entry = await readManifestEntry(s3, bucket, topic, partition, seq);
    if (BigInt(entry.from) <= at) low = entry;
    else high = seq;
  }
  return holds(low) ? low : undefined;
}

/** Every manifest entry of a partition, in seq order (a GET each, 16 at a time). */
export async function listManifest(
  s3: S3Client,
  bucket: string,
  topic: string,
  partition: number,
): Promise<ManifestEntry[]> {
  const seqs: number[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: manifestPrefix(topic, partition), ContinuationToken: token }),
    );
    for (const o of page.Contents ?? []) {
      const seq = seqOfManifestKey(o.Key!);
      if (seq !== undefined) seqs.push(seq);
    }
    token = page.NextContinuationToken;
  } while (token);
  seqs.sort((a, b) => a - b);
  return readManifestEntries(
    s3,
    bucket,
    seqs.map((seq) => manifestKey(topic, partition, seq)),
  );
}

export interface SweepResult {
  /** Object versions under raw/<topic>/ that a manifest lists. */
  manifested: number;
  /** Versions no manifest lists, younger than the grace period: maybe a flush in progress. */
  young: number;
  deleted: { key: string; versionId: string | null }[];
}

/**
 * Deletes object versions of `topic` that no manifest entry lists and that are older than `graceMs`:
 * a crash between an object and its manifest entry, or a writer that lost the race for a seq. Lists the
 * objects before reading the manifests, so an entry committed meanwhile protects its object.
 */
export async function sweepOrphans(
  s3: S3Client,
  bucket: string,
  topic: string,
  graceMs: number,
  now = Date.now(),
): Promise<SweepResult> {
  const versions: { key: string; versionId: string | null; partition: number; modified: number }[] = [];
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectVersionsCommand({
        Bucket: bucket,
        Prefix: `raw/${topic}/`,
        KeyMarker: keyMarker,
        VersionIdMarker: versionMarker,
      }),
    );
    for (const v of page.Versions ?? []) {
      const parsed = parseObjectKey(v.Key!);
      if (!parsed || parsed.topic !== topic) continue;
      const versionId = v.VersionId && v.VersionId !== 'null' ? v.VersionId : null;
      versions.push({
        key: v.Key!,
        versionId,
        partition: parsed.partition,
        modified: v.LastModified?.getTime() ?? now,
      });
    }
    keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
    versionMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
  } while (keyMarker);
  const partitions = [...new Set(versions.map((v) => v.partition))];
  const listed = new Set<string>();
  for (const p of partitions) {
    for (const e of await listManifest(s3, bucket, topic, p)) listed.add(`${e.key} ${e.versionId ?? 'null'}`);
  }
  const result: SweepResult = { manifested: 0, young: 0, deleted: [] };
  for (const v of versions) {
    if (listed.has(`${v.key} ${v.versionId ?? 'null'}`)) result.manifested += 1;
    else if (now - v.modified < graceMs) result.young += 1;
    else {
      await deleteVersion(s3, bucket, v.key, v.versionId);
      result.deleted.push({ key: v.key, versionId: v.versionId });
    }
  }
  return result;
}

/** The partitions of a topic that have manifest entries, as their key prefixes in key (listing) order. */
async function manifestPartitionPrefixes(s3: S3Client, bucket: string, topic: string): Promise<string[]> {
  const prefixes: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: `manifests/${topic}/`,
        Delimiter: '/',
        ContinuationToken: token,
      }),
    );
    for (const p of page.CommonPrefixes ?? []) if (p.Prefix?.endsWith('/')) prefixes.push(p.Prefix);
    token = page.NextContinuationToken;
  } while (token);
  return prefixes.sort();
}

const partitionOfPrefix = (prefix: string): number => Number(/partition=(\d+)\/$/.exec(prefix)?.[1] ?? NaN);

/**
 * The first manifest seq of a partition whose object may hold a record at or after `boundMs` (its
 * maxTimestamp ≥ boundMs), or undefined when none does. Bisects the seqs (gaps allowed: expired entries),
 * so it costs about 2·log2(entries) requests, not a read of every entry. Needs maxTimestamp to rise with
 * seq, which holds up to the skew the caller subtracted from its bound.
 */
export async function firstManifestSeqFrom(
  s3: S3Client,
  bucket: string,
  topic: string,
  partition: number,
  boundMs: number,
): Promise<number | undefined> {
  const reaches = async (seq: number): Promise<boolean> =>
    Number((await readManifestEntry(s3, bucket, topic, partition, seq)).maxTimestamp) >= boundMs;
  const first = await anyAbove(s3, bucket, topic, partition, -1);
  if (first === undefined) return undefined;
  if (await reaches(first)) return first;
  const head = await findManifestHead(s3, bucket, topic, partition);
  if (head === undefined || Number(head.maxTimestamp) < boundMs) return undefined;
  // Over seq numbers m: Q(m) = "the first existing seq ≥ m reaches the bound". Q(low) is false, Q(high) true.
  let low = first;
  let high = head.seq;
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    const at = await anyAbove(s3, bucket, topic, partition, mid - 1);
    if (at === undefined || at >= high) high = mid;
    else if (await reaches(at)) high = mid;
    else low = at;
  }
  return (await anyAbove(s3, bucket, topic, partition, high - 1)) ?? head.seq;
}

export interface ManifestRangePage {
  /** Entries whose objects overlap [fromMs, toMs) by their min/max timestamp. */
  entries: ManifestEntry[];
  /** Manifest entries read for this page (in range or not). */
  scanned: number;
  /** Where the next page starts (a manifest key, or a partition's prefix: enter it by bisection); null = done. */
  next: string | null;
}

/**
 * One page of a topic's manifest entries that can hold records in [fromMs, toMs), partition after
 * partition. Entering a partition bisects to the first entry whose maxTimestamp ≥ fromMs − skewMs; the
 * partition ends at the first entry whose minTimestamp ≥ toMs + skewMs. The listing cost follows the range,
 * not the archive's age. `startAfter`: null (the topic's first partition), a partition prefix, or a key.
 */
export async function listManifestRange(
  s3: S3Client,
  bucket: string,
  topic: string,
  range: { fromMs: number; toMs: number; skewMs: number },
  startAfter: string | null,
  limit: number,
): Promise<ManifestRangePage> {
  const partitions = await manifestPartitionPrefixes(s3, bucket, topic);
  const nextPartition = (prefix: string): string | null => partitions.find((p) => p > prefix) ?? null;
  let at = startAfter;
  let prefix: string | null = at === null ? (partitions[0] ?? null) : at.slice(0, at.lastIndexOf('/') + 1);
  while (prefix !== null) {
    let after: string | undefined = at ?? undefined;
    if (at === null || seqOfManifestKey(at) === undefined) {
      const partition = partitionOfPrefix(prefix);
      const seq = await firstManifestSeqFrom(s3, bucket, topic, partition, range.fromMs - range.skewMs);
      if (seq === undefined) {
        // Nothing in this partition reaches the range: on to the next.
        prefix = nextPartition(prefix);
        at = prefix;
        continue;
      }
      after = seq > 0 ? manifestKey(topic, partition, seq - 1) : undefined;
    }
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, StartAfter: after, MaxKeys: limit }),
    );
    const keys = (page.Contents ?? []).map((o) => o.Key!).filter((k) => seqOfManifestKey(k) !== undefined);
    const read = await readManifestEntries(s3, bucket, keys);
    const stop = read.findIndex((e) => Number(e.minTimestamp) >= range.toMs + range.skewMs);
    const kept = stop >= 0 ? read.slice(0, stop) : read;
    const entries = kept.filter((e) => Number(e.maxTimestamp) >= range.fromMs && Number(e.minTimestamp) < range.toMs);
    const last = page.Contents?.at(-1)?.Key;
    const partitionDone = stop >= 0 || !page.IsTruncated || last === undefined;
    return { entries, scanned: read.length, next: partitionDone ? nextPartition(prefix) : last };
  }
  return { entries: [], scanned: 0, next: null };
}

/** Manifest entries by key, 16 GETs at a time, in the keys' order. */
async function readManifestEntries(s3: S3Client, bucket: string, keys: readonly string[]): Promise<ManifestEntry[]> {
  const entries: ManifestEntry[] = new Array<ManifestEntry>(keys.length);
  let next = 0;
  const fetcher = async (): Promise<void> => {
    while (next < keys.length) {
      const i = next++;
      entries[i] = await readManifestEntryAt(s3, bucket, keys[i]!);
    }
  };
  await Promise.all(Array.from({ length: 16 }, fetcher));
  return entries;
}

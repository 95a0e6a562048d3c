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
  const entries: ManifestEntry[] = new Array<ManifestEntry>(seqs.length);
  let next = 0;
  const fetcher = async (): Promise<void> => {
    while (next < seqs.length) {
      const i = next++;
      entries[i] = await readManifestEntry(s3, bucket, topic, partition, seqs[i]!);
    }
  };
  await Promise.all(Array.from({ length: 16 }, fetcher));
  return entries;
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

/**
 * One page of a topic's manifest entries (every partition), in key order after `startAfter`: one LIST and
 * a GET per entry, 16 at a time. `lastKey` is where the next page starts; undefined when the topic is done.
 */
export async function listManifestPage(
  s3: S3Client,
  bucket: string,
  topic: string,
  startAfter: string | undefined,
  limit: number,
): Promise<{ entries: ManifestEntry[]; lastKey: string | undefined }> {
  const page = await s3.send(
    new ListObjectsV2Command({
      Bucket: bucket,
      Prefix: `manifests/${topic}/`,
      StartAfter: startAfter,
      MaxKeys: limit,
    }),
  );
  const keys = (page.Contents ?? []).map((o) => o.Key!).filter((k) => seqOfManifestKey(k) !== undefined);
  const entries: ManifestEntry[] = new Array<ManifestEntry>(keys.length);
  let next = 0;
  const fetcher = async (): Promise<void> => {
    while (next < keys.length) {
      const i = next++;
      entries[i] = await readManifestEntryAt(s3, bucket, keys[i]!);
    }
  };
  await Promise.all(Array.from({ length: 16 }, fetcher));
  const last = page.Contents?.at(-1)?.Key;
  return { entries, lastKey: page.IsTruncated ? last : undefined };
}

import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';

// The claim-check store of the publish step (src/streams/publish.ts): an event that cannot go on Kafka
// is kept here whole, tokenized as it would have been produced, under a key derived from the event.

/** Puts a claim-checked event into `bucket`; the same key always holds the same bytes, so a re-put is harmless. */
export function createS3ClaimCheckStore(
  s3: S3Client,
  bucket: string,
): { put(key: string, body: Buffer): Promise<string> } {
  return {
    async put(key, body) {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: 'application/json' }), {
        abortSignal: AbortSignal.timeout(10_000),
      });
      return `s3://${bucket}/${key}`;
    },
  };
}

/** One record of a claim-checked event, as it would have been produced (value as UTF-8 text). */
export interface ClaimedRecord {
  topic: string;
  key: string | null;
  headers: Record<string, string>;
  value: string;
}

/**
 * A claim check that can never be read as it is: not an s3:// URI, no such object or bucket, or an object
 * that is not the JSON the publish step writes. Retrying cannot help, so a consumer records what it has
 * and goes on; network errors, timeouts and 5xx stay ordinary errors and are retried.
 */
export class ClaimCheckUnreadable extends Error {
  override name = 'ClaimCheckUnreadable';
}

/** The most of a claim-checked object read; the publish step writes a few MB at most. */
const MAX_CLAIM_CHECK_BYTES = 64 * 1024 * 1024;

const isMissing = (err: unknown): boolean => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NoSuchBucket' || e.$metadata?.httpStatusCode === 404;
};

/** The records kept under a claim check `s3://bucket/key` (the raw record first), for quarantine and release. */
export async function readClaimCheck(s3: S3Client, uri: string): Promise<ClaimedRecord[]> {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.{1,1024})$/s.exec(uri);
  if (!m) throw new ClaimCheckUnreadable(`claim check "${uri.slice(0, 200)}" is not an s3://bucket/key URI`);
  let text: string;
  try {
    const object = await s3.send(new GetObjectCommand({ Bucket: m[1], Key: m[2] }), {
      abortSignal: AbortSignal.timeout(10_000),
    });
    if ((object.ContentLength ?? 0) > MAX_CLAIM_CHECK_BYTES) {
      throw new ClaimCheckUnreadable(
        `claim check ${uri} is ${object.ContentLength} bytes, over ${MAX_CLAIM_CHECK_BYTES}`,
      );
    }
    text = (await object.Body?.transformToString('utf8')) ?? '';
  } catch (err) {
    if (isMissing(err)) throw new ClaimCheckUnreadable(`claim check ${uri} does not exist`);
    throw err;
  }
  let body: { records?: unknown };
  try {
    body = JSON.parse(text) as { records?: unknown };
  } catch {
    throw new ClaimCheckUnreadable(`claim check ${uri} is not JSON`);
  }
  const records = body?.records;
  if (
    !Array.isArray(records) ||
    records.length === 0 ||
    !records.every((r: unknown) => typeof (r as { value?: unknown } | null)?.value === 'string')
  ) {
    throw new ClaimCheckUnreadable(`claim check ${uri} has no records`);
  }
  return records as ClaimedRecord[];
}

/** The raw record of a claim-checked event (its first record), parsed; a value that is not JSON stays text. */
export async function readClaimedRaw(s3: S3Client, uri: string): Promise<unknown> {
  const value = (await readClaimCheck(s3, uri))[0]!.value;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return value;
  }
}

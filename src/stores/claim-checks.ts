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

/** The records kept under a claim check `s3://bucket/key` (the raw record first), for quarantine and release. */
export async function readClaimCheck(s3: S3Client, uri: string): Promise<ClaimedRecord[]> {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
  if (!m) throw new Error(`claim check "${uri}" is not an s3://bucket/key URI`);
  const object = await s3.send(new GetObjectCommand({ Bucket: m[1], Key: m[2] }), {
    abortSignal: AbortSignal.timeout(10_000),
  });
  const text = (await object.Body?.transformToString('utf8')) ?? '';
  const body = JSON.parse(text) as { records?: ClaimedRecord[] };
  if (!Array.isArray(body.records)) throw new Error(`claim check ${uri} has no records`);
  return body.records;
}

import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';

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

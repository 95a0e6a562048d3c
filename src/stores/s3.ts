import { CreateBucketCommand, HeadBucketCommand, S3Client, type S3ServiceException } from '@aws-sdk/client-s3';
import { type Config, secretSetting } from '../config';

// One S3 client factory: endpoint/credentials from config, path-style for S3-compatible servers.
export function createS3Client(config: Config): S3Client {
  // The SDK's Node 20 end-of-support notice is not actionable per call; docs/operations.md tracks it.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const local = Boolean(config.S3_ENDPOINT);
  return new S3Client({
    region: config.S3_REGION,
    ...(local
      ? {
          endpoint: config.S3_ENDPOINT,
          forcePathStyle: true,
          credentials: {
            accessKeyId: config.S3_ACCESS_KEY_ID,
            secretAccessKey: secretSetting(config, 'S3_SECRET_ACCESS_KEY'),
          },
        }
      : {}),
    maxAttempts: 3,
  });
}

/**
 * Creates the raw-archive bucket if it does not exist; idempotent. With Object Lock enabled from the
 * start (S3 compatible servers enable it only on an empty bucket); the archiver adds the rest (stores/archive.ts).
 */
export async function ensureBucket(s3: S3Client, bucket: string): Promise<void> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
    return;
  } catch (err) {
    const status = (err as S3ServiceException).$metadata?.httpStatusCode;
    if (status !== 404 && status !== 403) throw new Error(`S3 bucket ${bucket}: ${(err as Error).message}`);
  }
  await s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
}

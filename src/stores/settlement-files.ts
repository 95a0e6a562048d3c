import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  type S3ServiceException,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import type { SettlementProvider } from '../contracts/settlement-files';

// Every S3 call for settlement files: partners drop them under settlements/<provider>/date=<day>/<name>,
// reconciliation lists a day and reads them back. Publishing is idempotent: same bytes, same key, no new write.

const statusOf = (err: unknown): number | undefined => (err as S3ServiceException).$metadata?.httpStatusCode;

/** A settlement file as it is published: which partner, which UTC day, its name and its CSV text. */
export interface PublishableSettlementFile {
  provider: SettlementProvider;
  date: string;
  name: string;
  content: string;
}

export interface PublishedSettlementFile {
  key: string;
  sha256: string;
  /** 'written' the first time; 'unchanged' when the key already held these bytes. */
  outcome: 'written' | 'unchanged';
}

/** A file whose key already holds other bytes: a partner never rewrites a published file in place. */
export class SettlementFileConflict extends Error {
  override name = 'SettlementFileConflict';
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const NAME = /^[A-Za-z0-9_.-]{1,200}\.csv$/;

/** settlements/<provider>/date=YYYY-MM-DD/<name>: one prefix per partner and day, so a window lists one prefix. */
export function settlementFileKey(provider: SettlementProvider, date: string, name: string): string {
  if (!DATE.test(date)) throw new RangeError(`settlement file date "${date}": expected YYYY-MM-DD`);
  if (!NAME.test(name))
    throw new RangeError(`settlement file name "${name}": expected letters, digits, _ . - and .csv`);
  return `${settlementDayPrefix(provider, date)}${name}`;
}

export function settlementDayPrefix(provider: SettlementProvider, date: string): string {
  return `settlements/${provider}/date=${date}/`;
}

const sha256 = (body: Buffer): string => createHash('sha256').update(body).digest('hex');

/**
 * Publishes each file under its deterministic key as text/csv with its SHA-256 in metadata. A key that
 * already holds the same bytes is left alone; one with other bytes throws SettlementFileConflict naming it.
 */
export async function publishSettlementFiles(
  s3: S3Client,
  bucket: string,
  files: readonly PublishableSettlementFile[],
): Promise<PublishedSettlementFile[]> {
  const out: PublishedSettlementFile[] = [];
  for (const file of files) {
    const key = settlementFileKey(file.provider, file.date, file.name);
    const body = Buffer.from(file.content, 'utf8');
    const digest = sha256(body);
    const existing = await headSha256(s3, bucket, key);
    if (existing === digest) {
      out.push({ key, sha256: digest, outcome: 'unchanged' });
      continue;
    }
    if (existing !== undefined) {
      throw new SettlementFileConflict(
        `s3://${bucket}/${key} holds other bytes (SHA-256 ${existing}, publishing ${digest}): a published settlement file is never rewritten`,
      );
    }
    try {
      await s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ContentType: 'text/csv; charset=utf-8',
          Metadata: { sha256: digest },
          IfNoneMatch: '*',
        }),
      );
    } catch (err) {
      // 412/409: another publisher wrote the key meanwhile; same bytes is fine, other bytes a conflict.
      if (statusOf(err) !== 412 && statusOf(err) !== 409) throw err;
      const raced = await headSha256(s3, bucket, key);
      if (raced !== digest)
        throw new SettlementFileConflict(`s3://${bucket}/${key} was written concurrently with other bytes`);
      out.push({ key, sha256: digest, outcome: 'unchanged' });
      continue;
    }
    out.push({ key, sha256: digest, outcome: 'written' });
  }
  return out;
}

/** The SHA-256 a published file carries (undefined: no such key). Objects without the metadata are hashed. */
async function headSha256(s3: S3Client, bucket: string, key: string): Promise<string | undefined> {
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return head.Metadata?.['sha256'] ?? sha256(await getSettlementFile(s3, bucket, key));
  } catch (err) {
    if (statusOf(err) === 404) return undefined;
    throw err;
  }
}

export interface ListedSettlementFile {
  provider: SettlementProvider;
  date: string;
  name: string;
  key: string;
  bytes: number;
}

/** The files a partner published for one UTC day, by name. */
export async function listSettlementFiles(
  s3: S3Client,
  bucket: string,
  provider: SettlementProvider,
  date: string,
): Promise<ListedSettlementFile[]> {
  const prefix = settlementDayPrefix(provider, date);
  const out: ListedSettlementFile[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) {
      if (!o.Key) continue;
      out.push({ provider, date, name: o.Key.slice(prefix.length), key: o.Key, bytes: o.Size ?? 0 });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** A published file's bytes (parse them with src/contracts/settlement-files.ts). */
export async function getSettlementFile(s3: S3Client, bucket: string, key: string): Promise<Buffer> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

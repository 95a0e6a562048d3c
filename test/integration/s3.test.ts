import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client, ensureBucket } from '../../src/stores/s3';
import { config, requireServices, uniqueId } from '../support/stack';

describe('S3-compatible object store', () => {
  const s3 = createS3Client(config);
  before(() => requireServices('s3'));
  after(() => s3.destroy());

  it('the raw bucket exists (created by project code) and round-trips an object byte for byte', async () => {
    await ensureBucket(s3, config.S3_BUCKET);
    const key = `test/${uniqueId('obj')}.jsonl`;
    const body = Buffer.from('{"a":1}\n{"b":"é"}\n', 'utf8');
    await s3.send(new PutObjectCommand({ Bucket: config.S3_BUCKET, Key: key, Body: body }));
    const got = await s3.send(new GetObjectCommand({ Bucket: config.S3_BUCKET, Key: key }));
    const bytes = Buffer.from(await got.Body!.transformToByteArray());
    assert.deepEqual(bytes, body);
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { parseSettlementItems } from '../../src/contracts/settlement-files';
import { simulatePayments } from '../../src/simulator/payments';
import { simulateSettlementFiles } from '../../src/simulator/settlement-files';
import { createS3Client, ensureBucket } from '../../src/stores/s3';
import {
  SettlementFileConflict,
  getSettlementFile,
  listSettlementFiles,
  publishSettlementFiles,
} from '../../src/stores/settlement-files';
import { config, requireServices, uniqueId } from '../support/stack';

describe('settlement files in S3', () => {
  const s3 = createS3Client(config);
  const bucket = uniqueId('settlements').toLowerCase();
  before(async () => {
    await requireServices('s3');
    await ensureBucket(s3, bucket);
  });
  after(() => s3.destroy());

  const sim = simulatePayments({ payments: 200, seed: 11, duplicateRate: 0, runId: 'stl' });
  const truth = simulateSettlementFiles(sim, { seed: 11, breaks: 'default' });

  it('publishes every file under settlements/<provider>/date=<day>/<name> as text/csv and reads back the same bytes', async () => {
    const published = await publishSettlementFiles(s3, bucket, truth.files);
    assert.deepEqual(
      published.map((p) => p.outcome),
      truth.files.map(() => 'written'),
    );
    for (const [i, file] of truth.files.entries()) {
      const key = published[i]!.key;
      assert.equal(key, `settlements/${file.provider}/date=${file.date}/${file.name}`);
      const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.match(head.ContentType ?? '', /^text\/csv/);
      const listed = await listSettlementFiles(s3, bucket, file.provider, file.date);
      assert.ok(
        listed.some((l) => l.key === key && l.bytes === Buffer.byteLength(file.content)),
        `${key} listed`,
      );
      const bytes = await getSettlementFile(s3, bucket, key);
      assert.equal(bytes.toString('utf8'), file.content);
      const items = parseSettlementItems(file.provider, file.name, bytes);
      assert.equal(items.length, file.lines);
    }
  });

  it('re-publishing the same files writes nothing; other bytes under a published key are refused, named', async () => {
    const again = await publishSettlementFiles(s3, bucket, truth.files);
    assert.deepEqual(
      again.map((p) => p.outcome),
      truth.files.map(() => 'unchanged'),
    );
    const first = truth.files[0]!;
    await assert.rejects(
      publishSettlementFiles(s3, bucket, [{ ...first, content: `${first.content}tampered\r\n` }]),
      (err: unknown) => err instanceof SettlementFileConflict && err.message.includes(first.name),
    );
    const bytes = await getSettlementFile(s3, bucket, `settlements/${first.provider}/date=${first.date}/${first.name}`);
    assert.equal(bytes.toString('utf8'), first.content, 'the published file is untouched');
  });
});

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { readArchiveRecords } from '../../src/activities/backfill';
import {
  ArchiveObjectCorrupt,
  ensureArchiveBucket,
  firstManifestSeqFrom,
  getCommittedObject,
  listManifestRange,
  manifestEntryHolding,
  putArchiveObject,
  putManifestEntry,
} from '../../src/stores/archive';
import { createS3Client } from '../../src/stores/s3';
import { type ManifestEntry, archiveLine, objectKey } from '../../src/streams/archiver/layout';
import { config, requireServices, uniqueId } from '../support/stack';

// Listing by time on the real S3 server: a backfill's listing bisects each partition's manifest to the
// range instead of reading the whole archive, returns exactly the objects that overlap the range
// (gapped seqs, partitions in key order, a timestamp out of order within the skew), and an object whose
// bytes are not what its manifest entry committed fails the replay non-retryably, named.

const MINUTE = 60_000;
const BASE = Date.parse('2026-11-01T00:00:00Z');

/** A synthetic manifest entry: object `seq` holds a minute of records, [BASE + seq min, + 59 s]. */
function entry(topic: string, partition: number, seq: number, shiftMs = 0): ManifestEntry {
  const min = BASE + seq * MINUTE + shiftMs;
  return {
    version: 1,
    topic,
    partition,
    seq,
    from: String(seq * 10),
    to: String(seq * 10 + 10),
    firstOffset: String(seq * 10),
    lastOffset: String(seq * 10 + 9),
    records: 10,
    key: objectKey(topic, partition, String(seq * 10), String(seq * 10 + 9), min),
    versionId: null,
    bytes: 1,
    sha256: '0'.repeat(64),
    minTimestamp: String(min),
    maxTimestamp: String(min + 59_000),
    writtenAt: new Date(min + MINUTE).toISOString(),
    writer: 'archive-listing-test',
  };
}

describe('archive listing by time and committed reads (real S3)', () => {
  const s3 = createS3Client(config);
  const counted = createS3Client(config);
  const requests = new Map<string, number>();
  counted.middlewareStack.add(
    (next, context) => async (args) => {
      requests.set(context.commandName!, (requests.get(context.commandName!) ?? 0) + 1);
      return next(args);
    },
    { step: 'initialize', name: 'countRequests' },
  );
  const bucket = uniqueId('listing')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-');
  const topic = 'paylink.listing-test.raw.gateways.v1';
  const written: ManifestEntry[] = [];

  before(async () => {
    await requireServices('s3');
    await ensureArchiveBucket(s3, bucket, 1);
    const plan: { partition: number; seqs: number[]; shiftMs?: (seq: number) => number }[] = [
      // 300 minutes, with seqs 100–119 expired (a gap) and one object stamped 2 min late (within the skew).
      {
        partition: 0,
        seqs: Array.from({ length: 300 }, (_, i) => i).filter((s) => s < 100 || s >= 120),
        shiftMs: (s) => (s === 201 ? -2 * MINUTE : 0),
      },
      // Starts at seq 37 (older entries expired).
      { partition: 1, seqs: Array.from({ length: 200 }, (_, i) => i + 37) },
      // Lists after partition=1 and before partition=2 in key order; entirely before the range.
      { partition: 10, seqs: Array.from({ length: 50 }, (_, i) => i) },
    ];
    const entries = plan.flatMap(({ partition, seqs, shiftMs }) =>
      seqs.map((s) => entry(topic, partition, s, shiftMs?.(s) ?? 0)),
    );
    for (let i = 0; i < entries.length; i += 32) {
      const chunk = entries.slice(i, i + 32);
      const results = await Promise.all(chunk.map((e) => putManifestEntry(s3, bucket, e)));
      assert.ok(results.every((r) => r === 'written'));
    }
    written.push(...entries);
  });

  after(() => {
    s3.destroy();
    counted.destroy();
  });

  it('bisects to the first entry that reaches a bound, across expired seqs', async () => {
    assert.equal(await firstManifestSeqFrom(s3, bucket, topic, 0, BASE + 150 * MINUTE), 150);
    // seqs 100–119 are gone: the first entry reaching minute 105 is 120.
    assert.equal(await firstManifestSeqFrom(s3, bucket, topic, 0, BASE + 105 * MINUTE + 30_000), 120);
    assert.equal(await firstManifestSeqFrom(s3, bucket, topic, 1, 0), 37);
    assert.equal(await firstManifestSeqFrom(s3, bucket, topic, 10, BASE + 60 * MINUTE), undefined);
    assert.equal(await firstManifestSeqFrom(s3, bucket, topic, 7, 0), undefined);
  });

  it('finds the object holding a record by its offset (what trace prints), across expired seqs', async () => {
    // Against a scan of every entry written: in an object, in the expired gap, before and after the archive.
    for (const [partition, offset] of [
      [0, '0'],
      [0, '9'],
      [0, '995'],
      [0, '1100'],
      [0, '1200'],
      [0, '2015'],
      [0, '2999'],
      [0, '3000'],
      [1, '369'],
      [1, '370'],
      [1, '2369'],
      [1, '2370'],
      [7, '5'],
    ] as const) {
      const expected = written.find(
        (e) => e.partition === partition && BigInt(e.from) <= BigInt(offset) && BigInt(offset) < BigInt(e.to),
      );
      requests.clear();
      const got = await manifestEntryHolding(counted, bucket, topic, partition, offset);
      assert.equal(got?.seq, expected?.seq, `partition ${partition} offset ${offset}`);
      assert.equal(got?.key, expected?.key);
      const calls = [...requests.values()].reduce((n, c) => n + c, 0);
      assert.ok(calls <= 60, `${calls} requests for partition ${partition} offset ${offset}`);
    }
  });

  it('lists exactly the objects overlapping [from, to), reading a fraction of the manifest', async (t) => {
    const fromMs = BASE + 190 * MINUTE + 30_000;
    const toMs = BASE + 205 * MINUTE;
    const skewMs = 5 * MINUTE;
    requests.clear();
    const got: ManifestEntry[] = [];
    let scanned = 0;
    let pages = 0;
    for (let at: string | null = null, first = true; first || at !== null; first = false) {
      const page = await listManifestRange(counted, bucket, topic, { fromMs, toMs, skewMs }, at, 10);
      got.push(...page.entries);
      scanned += page.scanned;
      at = page.next;
      pages += 1;
      assert.ok(pages < 100, 'the listing ends');
    }
    const expected = written.filter((e) => Number(e.maxTimestamp) >= fromMs && Number(e.minTimestamp) < toMs);
    const id = (e: ManifestEntry) => `${e.partition}/${e.seq}`;
    assert.deepEqual(got.map(id), expected.map(id));
    // The late-stamped object (seq 201 of partition 0, stamped as minute 199) is in range and found.
    assert.ok(got.some((e) => e.partition === 0 && e.seq === 201));
    // Partition 0: 190–205 plus a page's overshoot; partition 1: the same; partition 10: nothing.
    assert.ok(scanned <= 2 * (16 + 10 + 5), `read ${scanned} manifest entries of ${written.length}`);
    const gets = requests.get('GetObjectCommand') ?? 0;
    t.diagnostic(
      `${got.length} in range; read ${scanned} of ${written.length} entries; ${gets} GETs, ${requests.get('ListObjectsV2Command') ?? 0} LISTs`,
    );
    assert.ok(gets < written.length / 4, `${gets} GETs for ${written.length} entries`);
  });

  it('a range before the archive or after it lists nothing', async () => {
    for (const [fromMs, toMs] of [
      [BASE - 600 * MINUTE, BASE - 300 * MINUTE],
      [BASE + 900 * MINUTE, BASE + 960 * MINUTE],
    ] as const) {
      const page = await listManifestRange(s3, bucket, topic, { fromMs, toMs, skewMs: MINUTE }, null, 50);
      let next = page.next;
      const entries = [...page.entries];
      while (next !== null) {
        const more = await listManifestRange(s3, bucket, topic, { fromMs, toMs, skewMs: MINUTE }, next, 50);
        entries.push(...more.entries);
        next = more.next;
      }
      assert.deepEqual(entries, []);
    }
  });

  it('an object whose bytes are not what its manifest committed fails the replay, named, without retries', async () => {
    const line = archiveLine({
      offset: '0',
      timestamp: String(BASE),
      key: Buffer.from('pay_1'),
      value: Buffer.from('{"a":1}'),
      rawHeaders: [],
    });
    const body = gzipSync(Buffer.from(`${line}\n`));
    const key = `raw/${topic}/corrupt-${Date.now()}.ndjson.gz`;
    const { versionId } = await putArchiveObject(s3, bucket, key, body);
    const sha256 = createHash('sha256').update(body).digest('hex');
    const ref = {
      source: 'gateways' as const,
      topic,
      partition: 0,
      seq: 0,
      key,
      versionId,
      records: 1,
      bytes: body.length,
      sha256,
    };
    // The committed bytes read back and parse.
    assert.equal((await readArchiveRecords(s3, bucket, ref)).length, 1);
    await assert.rejects(getCommittedObject(s3, bucket, { ...ref, bytes: body.length + 1 }), ArchiveObjectCorrupt);
    for (const bad of [{ sha256: 'f'.repeat(64) }, { bytes: body.length - 1 }]) {
      await assert.rejects(readArchiveRecords(s3, bucket, { ...ref, ...bad }), (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure, String(err));
        assert.equal(err.type, 'ArchiveObjectCorrupt');
        assert.equal(err.nonRetryable, true);
        assert.match(err.message, new RegExp(key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
        return true;
      });
    }
    // Bytes that match their entry but are no gzip: named too.
    const junk = Buffer.from('not gzip at all');
    const junkKey = `${key}.junk`;
    const put = await putArchiveObject(s3, bucket, junkKey, junk);
    await assert.rejects(
      readArchiveRecords(s3, bucket, {
        ...ref,
        key: junkKey,
        versionId: put.versionId,
        bytes: junk.length,
        sha256: createHash('sha256').update(junk).digest('hex'),
      }),
      /does not inflate/,
    );
  });
});

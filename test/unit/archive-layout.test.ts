import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  archiveLine,
  manifestKey,
  objectKey,
  parseArchiveLines,
  parseObjectKey,
  rangeFindings,
  retainUntil,
  seqOfManifestKey,
} from '../../src/streams/archiver/layout';

// The archive's pure parts: keys, the record line and its inverse, and the range arithmetic of the check.

describe('archive layout', () => {
  it('names an object by topic, hour of its first record, partition and offsets, and parses it back', () => {
    const key = objectKey('paylink.raw.webhooks.v1', 3, '7', '1200', Date.parse('2026-03-01T23:59:59.999Z'));
    assert.equal(
      key,
      'raw/paylink.raw.webhooks.v1/date=2026-03-01/hour=23/partition=3/00000000000000000007-00000000000000001200.ndjson.gz',
    );
    assert.deepEqual(parseObjectKey(key), { topic: 'paylink.raw.webhooks.v1', partition: 3, first: 7n, last: 1200n });
    assert.equal(parseObjectKey('test/obj.jsonl'), undefined);
    const m = manifestKey('paylink.quarantine.v1', 0, 42);
    assert.equal(m, 'manifests/paylink.quarantine.v1/partition=0/000000000042.json');
    assert.equal(seqOfManifestKey(m), 42);
  });

  it('keeps key, value, headers, timestamp and offset byte for byte, including bytes that are not UTF-8', () => {
    const value = Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x7b]);
    const header = Buffer.from([0x80, 0x81]);
    const line = archiveLine({
      offset: '9007199254740993',
      timestamp: '1767225600123',
      key: Buffer.from('pay_1'),
      value,
      rawHeaders: [
        ['schema', Buffer.from('webhook@1')],
        ['bin', header],
        ['bin', Buffer.from('second')],
      ],
    });
    assert.ok(!line.includes('\n'));
    const [back] = parseArchiveLines(`${line}\n`);
    assert.equal(back!.offset, '9007199254740993');
    assert.equal(back!.timestamp, '1767225600123');
    assert.deepEqual(back!.key, Buffer.from('pay_1'));
    assert.deepEqual(back!.value, value);
    assert.deepEqual(back!.headers, [
      ['schema', Buffer.from('webhook@1')],
      ['bin', header],
      ['bin', Buffer.from('second')],
    ]);
    const [tombstone] = parseArchiveLines(
      archiveLine({ offset: '1', timestamp: '0', key: null, value: null, rawHeaders: [] }),
    );
    assert.equal(tombstone!.value, null);
    assert.equal(tombstone!.key, null);
    // A UTF-8 value is stored as text (smaller after gzip); an empty one stays empty, not a tombstone.
    const json = Buffer.from('{"id":"evt_1","note":"café \\u2028 \u2028 ✓"}');
    const textLine = archiveLine({ offset: '2', timestamp: '0', key: null, value: json, rawHeaders: [] });
    assert.equal((JSON.parse(textLine) as { valueText?: string }).valueText, json.toString('utf8'));
    assert.deepEqual(parseArchiveLines(textLine)[0]!.value, json);
    const [empty] = parseArchiveLines(
      archiveLine({ offset: '3', timestamp: '0', key: null, value: Buffer.alloc(0), rawHeaders: [] }),
    );
    assert.deepEqual(empty!.value, Buffer.alloc(0));
    // Lines written before valueText existed (value as base64) still read back.
    const [older] = parseArchiveLines(
      `{"offset":"4","timestamp":"0","key":null,"value":"${json.toString('base64')}","headers":[]}\n`,
    );
    assert.deepEqual(older!.value, json);
    assert.throws(() => parseArchiveLines('{"offset":"x"}\n'), /line 1 is not a record/);
  });

  it('finds gaps and overlaps between entries, retention losses and commits past the archive', () => {
    const kafka = { logStart: '0', high: '30', committed: '30' };
    assert.deepEqual(
      rangeFindings(
        [
          { from: '0', to: '10' },
          { from: '10', to: '30' },
        ],
        kafka,
      ),
      { gaps: [], overlaps: [], archivedTo: '30' },
    );
    const found = rangeFindings(
      [
        { from: '0', to: '10' },
        { from: '12', to: '20' },
        { from: '18', to: '25' },
      ],
      { logStart: '0', high: '40', committed: '28' },
    );
    assert.deepEqual(found.gaps, [
      { from: '10', to: '12' },
      { from: '25', to: '28' },
    ]);
    assert.deepEqual(found.overlaps, [{ from: '18', to: '20' }]);
    // Retention deleted 10..15 before the archive got them.
    assert.deepEqual(rangeFindings([{ from: '0', to: '10' }], { logStart: '15', high: '15', committed: null }).gaps, [
      { from: '10', to: '15' },
    ]);
    // Nothing archived and nothing committed: no gap (the archiver has not started).
    assert.deepEqual(rangeFindings([], { logStart: '0', high: '5', committed: null }), {
      gaps: [],
      overlaps: [],
      archivedTo: '',
    });
  });

  it('derives the retention date from the entry, so re-locking sets the same date', () => {
    assert.equal(retainUntil({ writtenAt: '2026-01-01T00:00:00.000Z' }, 180).toISOString(), '2026-06-30T00:00:00.000Z');
  });
});

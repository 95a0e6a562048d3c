import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createBatcher } from '../../src/ingest/batcher';

describe('edge micro-batcher', () => {
  it('concurrent adds share one flush, each caller learns the outcome', async () => {
    const flushes: number[][] = [];
    const b = createBatcher<number>(async (items) => void flushes.push(items), { maxItems: 100, maxDelayMs: 5 });
    await Promise.all([b.add([1, 2]), b.add([3]), b.add([])]);
    assert.deepEqual(flushes, [[1, 2, 3]]);
  });

  it('flushes at maxItems without waiting, and a failed flush rejects every caller of that batch', async () => {
    const flushes: number[][] = [];
    const b = createBatcher<number>(
      async (items) => {
        flushes.push(items);
        if (items.includes(13)) throw new Error('kafka down');
      },
      { maxItems: 3, maxDelayMs: 60_000 },
    );
    await b.add([1, 2, 3]); // would hang for a minute if maxItems did not trigger the flush
    const results = await Promise.allSettled([b.add([12]), b.add([13, 14])]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected'],
    );
    assert.deepEqual(flushes, [
      [1, 2, 3],
      [12, 13, 14],
    ]);
  });
});

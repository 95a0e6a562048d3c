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

  it('serial: one flush at a time, what arrives meanwhile goes into the next; each caller gets its own results', async () => {
    const flushes: number[][] = [];
    let release: () => void = () => undefined;
    const b = createBatcher<number, string>(
      async (items) => {
        flushes.push(items);
        if (flushes.length === 1) await new Promise<void>((r) => (release = r));
        return items.map((i) => `r${i}`);
      },
      { maxItems: 2, maxDelayMs: 1, serial: true },
    );
    const first = b.add([1, 2]); // full: flushes at once, and stays in flight
    const waiting = [b.add([3]), b.add([4, 5]), b.add([6])]; // past maxItems, yet they wait for the flush in flight
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(flushes, [[1, 2]]);
    release();
    assert.deepEqual(await first, ['r1', 'r2']);
    assert.deepEqual(await Promise.all(waiting), [['r3'], ['r4', 'r5'], ['r6']]);
    assert.deepEqual(flushes, [
      [1, 2],
      [3, 4, 5, 6],
    ]);
  });
});

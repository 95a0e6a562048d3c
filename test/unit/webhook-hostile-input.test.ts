import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReplayWindow, nestingBeyond } from '../../src/ingest/webhook-request';
import { nested } from '../support/events';

// The webhook edge's request checks on their own (issue 11: bounded work, replay by meaning). The same
// hardening driven over HTTP through a receiver on a real broker: test/integration/webhook-hostile-input.test.ts.

describe('request checks, on their own', () => {
  const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

  it('measures nesting in one pass, without counting brackets inside strings', () => {
    assert.equal(nestingBeyond(bytes(nested(32, '1')), 32), -1);
    const level33 = nested(32, '1').indexOf('1'); // where the 33rd array/object opens
    assert.equal(nestingBeyond(bytes(nested(33, '1')), 32), level33);
    const tricky = JSON.stringify({ a: '[[[[{{{{', b: 'quote \\" then [[[[', c: '\\', d: ['é', { e: '}]}]' }] });
    assert.equal(nestingBeyond(bytes(tricky), 3), -1);
    assert.equal(nestingBeyond(bytes(tricky), 2), bytes(tricky).indexOf('{"e"'), 'a byte offset: é is two');
    assert.equal(nestingBeyond(bytes(nested(200_000, '"x"')), 32), level33, 'stops at the limit, no recursion');
  });

  it('forgets a key after its window and the oldest keys past its size', () => {
    let t = 0;
    const window = new ReplayWindow(1000, 3, () => t);
    window.remember('a');
    t = 500;
    window.remember('b');
    assert.ok(window.has('a') && window.has('b'));
    t = 1200;
    assert.ok(!window.has('a'), 'out of its window');
    window.remember('c');
    assert.equal(window.size, 2, 'a left when c came');
    window.remember('d');
    window.remember('e');
    assert.equal(window.size, 3);
    assert.ok(!window.has('b') && window.has('c') && window.has('e'));
  });
});

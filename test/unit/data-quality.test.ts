import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DQ_CATALOGUE,
  DQ_CHECKS,
  type DqMeasurement,
  DqWindowError,
  blockingFailures,
  dqWindowsOverlapping,
  evaluate,
  judge,
  parseDqWindow,
  summarize,
} from '../../src/contracts/data-quality';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { contentHash } from '../../src/stores/data-quality';

// The data-quality checks' pure parts: windows, the threshold rule, which failures gate finance.

const m = (check: DqMeasurement['check'], measured: number, perSource?: Record<string, number>): DqMeasurement => ({
  check,
  measured,
  perSource,
  summary: '',
  details: {},
});

describe('data-quality windows', () => {
  it('parses a UTC day and an hour into [start, end)', () => {
    assert.deepEqual(parseDqWindow('2026-11-30'), {
      id: '2026-11-30',
      start: '2026-11-30T00:00:00.000Z',
      end: '2026-12-01T00:00:00.000Z',
    });
    assert.deepEqual(parseDqWindow('2026-12-31T23'), {
      id: '2026-12-31T23',
      start: '2026-12-31T23:00:00.000Z',
      end: '2027-01-01T00:00:00.000Z',
    });
  });

  it('refuses what is not a real day or hour', () => {
    for (const bad of ['2026-02-31', '2026-11-30T24', '2026-11', '2026-11-30T1', 'yesterday'])
      assert.throws(() => parseDqWindow(bad), DqWindowError, bad);
  });

  it('names every day and hour window a range of posting times falls in', () => {
    assert.deepEqual(
      dqWindowsOverlapping(Date.parse('2026-11-30T23:59:00Z'), Date.parse('2026-12-01T00:10:00Z')).sort(),
      ['2026-11-30', '2026-11-30T23', '2026-12-01', '2026-12-01T00'],
    );
  });
});

describe('data-quality thresholds', () => {
  it('a count check passes at its threshold and fails one above', () => {
    assert.equal(judge(m('ledger.missing_postings', 0)), true);
    assert.equal(judge(m('ledger.missing_postings', 1)), false);
  });

  it('a rate check fails when any source is above the threshold, even if the overall rate is not', () => {
    const limit = DQ_CATALOGUE['duplicates.repeat_rate'].threshold;
    assert.equal(judge(m('duplicates.repeat_rate', limit, { webhook: limit, gateway: 0 })), true);
    assert.equal(judge(m('duplicates.repeat_rate', 0.1, { webhook: 0.1, gateway: limit + 0.01 })), false);
  });

  it('a measure that is not a number fails rather than passes', () => {
    assert.equal(judge(m('schema.drift', Number.NaN)), false);
  });

  it('only failing money checks block finance, and the summary names them', () => {
    const run = { runId: 'r1', window: parseDqWindow('2026-11-30'), scope: '', ranAt: '2026-11-30T01:00:00.000Z' };
    const results = [
      evaluate(m('ledger.missing_postings', 2), run),
      evaluate(m('schema.drift', 3), run),
      evaluate(m('ledger.snowflake_completeness', 0), run),
    ];
    assert.deepEqual(
      blockingFailures(results).map((r) => r.check),
      ['ledger.missing_postings'],
    );
    const s = summarize(results, { window: '2026-11-30', scope: '', runId: 'r1' });
    assert.deepEqual(s.failed, ['ledger.missing_postings', 'schema.drift']);
    assert.deepEqual(s.blocking, ['ledger.missing_postings']);
  });

  it('every check of the catalogue has a severity and a non-negative threshold', () => {
    for (const c of DQ_CHECKS) assert.ok(DQ_CATALOGUE[c].threshold >= 0, c);
  });
});

describe('content hash', () => {
  const fact = {
    version: 1,
    type: 'captured',
    idempotencyKey: 'k1',
    paymentId: 'p1',
    merchantId: 'm1',
    region: 'eu',
    currency: 'EUR',
    occurredAt: '2026-11-30T01:00:00.000Z',
    source: 'webhook',
    sourceSequence: 1,
    captureId: 'c1',
    amountMinor: 1000,
    platformFeeMinor: 0,
  } as PaymentEvent;

  it('is the same for a redelivery (whatever its trace id, sequence, path or key order) and differs for other money', () => {
    const reordered = Object.fromEntries(Object.entries(fact).reverse()) as PaymentEvent;
    const retried = { ...fact, traceId: 'a'.repeat(32), sourceSequence: 7, source: 'gateway' } as PaymentEvent;
    assert.equal(contentHash(retried), contentHash(reordered));
    assert.notEqual(contentHash(fact), contentHash({ ...fact, currency: 'USD' }));
    assert.notEqual(contentHash(fact), contentHash({ ...fact, amountMinor: 1001 } as PaymentEvent));
  });
});

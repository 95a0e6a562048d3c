import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFactMessage, parseGatewayMessage } from '../../src/streams/fraud-views/fraud-views-consumer';
import {
  type Attempt,
  addSample,
  Watermarks,
  aggregate,
  freshnessBucket,
  isLate,
  keyOf,
  memberWindows,
  monthOf,
  percentileOf,
  windowOf,
  windowOpen,
} from '../../src/streams/fraud-views/windows';

const T = Date.UTC(2026, 0, 1, 10, 0, 0);

const attempt = (over: Partial<Attempt> = {}): Attempt => ({
  kind: 'attempt',
  id: `g:${Math.random()}`,
  eventTime: T + 5_000,
  receivedAt: T + 6_000,
  topic: 'raw',
  partition: 0,
  offset: '0',
  late: false,
  merchantId: 'm-1',
  cardToken: 'tok_pan_1_aa',
  bin: '411111',
  lastFour: '1111',
  region: 'eu-west',
  gateway: 'gw-eu-west',
  amountMinor: 1_000,
  currency: 'EUR',
  outcome: 'authorized',
  declineCode: null,
  ...over,
});

describe('fraud-view windows', () => {
  it('are tumbling, aligned to the epoch, end-exclusive', () => {
    assert.deepEqual(windowOf('1m', T + 59_999), { size: '1m', start: T, end: T + 60_000 });
    assert.equal(windowOf('1m', T + 60_000).start, T + 60_000);
    assert.deepEqual(windowOf('5m', T + 299_999), { size: '5m', start: T, end: T + 300_000 });
    assert.equal(windowOf('1h', T + 3_599_999).start, T);
  });

  it('month to date is the UTC calendar month, across a year end', () => {
    const m = monthOf(Date.UTC(2025, 11, 31, 23, 59, 59));
    assert.equal(new Date(m.start).toISOString(), '2025-12-01T00:00:00.000Z');
    assert.equal(new Date(m.end).toISOString(), '2026-01-01T00:00:00.000Z');
  });

  it('an event is late once its minute ended plus the grace period at or before the watermark', () => {
    const grace = 5_000;
    assert.equal(isLate(T + 1_000, undefined, grace), false, 'no watermark yet: nothing is late');
    assert.equal(isLate(T + 1_000, T + 64_999, grace), false, 'inside the grace period');
    assert.equal(isLate(T + 1_000, T + 65_000, grace), true, 'window end + grace reached');
    assert.equal(windowOpen(T + 60_000, T + 64_999, grace), true);
    assert.equal(windowOpen(T + 60_000, T + 65_000, grace), false);
  });

  it('the watermark is the minimum over partitions of the newest event time each has seen', () => {
    const w = new Watermarks();
    w.observe('a', 0, T + 10_000);
    w.observe('a', 1, T + 2_000);
    w.observe('a', 0, T + 1_000); // older: does not move it back
    w.observe('b', 0, T);
    assert.equal(w.min(new Set(['a'])), T + 2_000);
    assert.equal(w.min(), T);
    assert.equal(w.of('a', 0), T + 10_000);
  });

  it('a late event still updates its old window', () => {
    const late = attempt({ eventTime: T - 3_600_000, late: true, outcome: 'declined', amountMinor: 0 });
    const delta = aggregate([late, attempt()], 300);
    const old = delta.counts.find(
      (r) => r.view === 'velocity-merchant' && r.window.size === '1m' && r.window.start === T - 3_600_000,
    );
    assert.ok(old, 'the old window got its row');
    assert.deepEqual(
      [old.counts.attempts, old.counts.declined, old.counts.small_attempts, old.counts.small_declined],
      [1, 1, 1, 1],
    );
  });

  it('aggregates attempts per card, merchant, BIN, gateway × region and size, with distinct members', () => {
    const delta = aggregate(
      [
        attempt(),
        attempt({ cardToken: 'tok_pan_1_bb', outcome: 'declined', amountMinor: 0 }),
        attempt({ merchantId: 'm-2' }),
      ],
      300,
    );
    const row = (view: string, key: Record<string, string>, size = '1m') =>
      delta.counts.find((r) => r.view === view && r.key === keyOf(key) && r.window.size === size)!.counts;
    assert.deepEqual(
      [
        row('velocity-merchant', { merchantId: 'm-1' }).attempts,
        row('velocity-merchant', { merchantId: 'm-1' }).declined,
      ],
      [2, 1],
    );
    assert.equal(row('velocity-bin', { bin: '411111' }, '1h').attempts, 3);
    assert.equal(row('decline-rate', { region: 'eu-west', gateway: 'gw-eu-west' }, '5m').declined, 1);
    assert.equal(row('region-rate', { region: 'eu-west' }).events, 3);
    const members = delta.members.filter(
      (m) =>
        m.view === 'velocity-card' &&
        m.key === keyOf({ cardToken: 'tok_pan_1_aa' }) &&
        memberWindows(m).some((w) => w.size === '1m' && w.start === T),
    );
    assert.deepEqual(members.map((m) => m.member).sort(), ['m-1', 'm-2'], 'merchants per card token');
    assert.equal(delta.members.length, 6, 'one member row per view, member and hour');
    assert.equal(delta.amounts.length, 2, 'only authorized amounts feed the outlier statistics');
    assert.equal(delta.cards.length, 3, 'first sightings of card on merchant');
  });

  it('a member row holds the minutes and five-minute windows of its hour it was seen in', () => {
    const at = (minute: number, second = 0) => attempt({ eventTime: T + minute * 60_000 + second * 1_000 });
    const delta = aggregate([at(0), at(0, 30), at(29), at(30), at(59, 59), at(-1)], 300);
    const rows = delta.members.filter((m) => m.view === 'velocity-merchant');
    assert.deepEqual(
      rows.map((m) => [m.hourStart, m.member]),
      [
        [T, 'tok_pan_1_aa'],
        [T - 3_600_000, 'tok_pan_1_aa'],
      ],
      'one row per hour, whatever the minutes',
    );
    const windows = (m: (typeof rows)[number]) =>
      memberWindows(m).map((w) => `${w.size}+${(w.start - m.hourStart) / 60_000}`);
    assert.deepEqual(windows(rows[0]!), ['1m+0', '1m+29', '1m+30', '1m+59', '5m+0', '5m+25', '5m+30', '5m+55', '1h+0']);
    assert.deepEqual(
      windows(rows[1]!),
      ['1m+59', '5m+55', '1h+0'],
      'the minute before the hour is the last of the one before',
    );
    assert.ok(
      rows[0]!.minutesLow < 2 ** 30 && rows[0]!.minutesHigh < 2 ** 30,
      'masks stay short numbers (no PAN-like digit runs)',
    );
  });

  it('ratio facts count per merchant and calendar month', () => {
    const fact = {
      kind: 'fact' as const,
      id: 'f:1',
      eventTime: T,
      receivedAt: T,
      topic: 'f',
      partition: 0,
      offset: '1',
      late: false,
      merchantId: 'm-3',
    };
    const delta = aggregate(
      [
        { ...fact, type: 'captured' },
        { ...fact, id: 'f:2', type: 'refunded' },
        { ...fact, id: 'f:3', type: 'chargeback_opened' },
      ],
      300,
    );
    assert.equal(delta.counts.length, 1);
    assert.deepEqual(
      [delta.counts[0]!.counts.captures, delta.counts[0]!.counts.refunds, delta.counts[0]!.counts.chargebacks],
      [1, 1, 1],
    );
    assert.equal(delta.counts[0]!.window.size, 'mtd');
  });

  it('running mean and σ (Welford) match the direct formulas, kept to four decimals', () => {
    let stats = { n: 0, mean: 0, sigma: 0 };
    for (const x of [2, 4, 4, 6]) stats = addSample(stats, x);
    assert.deepEqual(stats, { n: 4, mean: 4, sigma: Math.round(Math.sqrt(2) * 10_000) / 10_000 });
  });

  it('freshness buckets round up to two significant digits; percentiles read the bucket holding the rank', () => {
    assert.deepEqual(
      [freshnessBucket(0), freshnessBucket(42), freshnessBucket(101), freshnessBucket(1234)],
      [0, 42, 110, 1300],
    );
    const h = new Map([
      [10, 98],
      [500, 1],
      [2000, 1],
    ]);
    assert.equal(percentileOf(h, 50), 10);
    assert.equal(percentileOf(h, 99), 500);
    assert.equal(percentileOf(h, 100), 2000);
    assert.equal(percentileOf(new Map(), 50), null);
  });
});

describe('fraud-views parsing', () => {
  const headers = { 'idempotency-key': 'gw-eu-west:tx1:authorized:1', region: 'eu-west' };
  const event = {
    eventType: 'AUTHORISATION',
    merchantId: 'm-1',
    amount: { value: 1200, currency: 'EUR' },
    occurredAt: '2026-01-01T10:00:00.000Z',
    card: { number: 'tok_pan_1_0f9351ca4c1def12de7499758e9c03ce', numberBin: '411111', numberLast4: '1111' },
  };
  const msg = (value: unknown, h: Record<string, string> = headers) => ({
    headers: h,
    value: Buffer.from(JSON.stringify(value)),
  });

  it('reads a tokenized gateway authorization as an attempt with BIN and last four', () => {
    const parsed = parseGatewayMessage(msg(event));
    assert.ok(typeof parsed === 'object' && parsed.kind === 'attempt');
    assert.deepEqual(
      [parsed.gateway, parsed.bin, parsed.lastFour, parsed.outcome],
      ['gw-eu-west', '411111', '1111', 'authorized'],
    );
  });

  it('does not count what the edge quarantines: a fractional amount, an unmapped key, a refusal without a reason', () => {
    assert.equal(parseGatewayMessage(msg({ ...event, amount: { value: 10.5, currency: 'EUR' } })), 'unusable');
    assert.equal(
      parseGatewayMessage(msg(event, { ...headers, 'idempotency-key': 'gw-eu-west:event:evt_1' })),
      'unusable',
    );
    assert.equal(parseGatewayMessage(msg({ ...event, eventType: 'REFUSAL' })), 'unusable');
    assert.equal(parseGatewayMessage({ headers, value: Buffer.from('{not json') }), 'unusable');
  });

  it('reads captures, refunds and chargebacks from the facts topic and ignores the rest', () => {
    const fact = {
      type: 'refunded',
      idempotencyKey: 'webhook:p:1',
      merchantId: 'm-1',
      occurredAt: '2026-01-01T10:00:00Z',
    };
    const parsed = parseFactMessage(msg(fact, {}));
    assert.ok(typeof parsed === 'object' && parsed.kind === 'fact' && parsed.type === 'refunded');
    assert.equal(parseFactMessage(msg({ ...fact, type: 'created' }, {})), 'ignored');
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSettlementItems } from '../../src/contracts/settlement-files';
import { factKey, linesFor, postingKey } from '../../src/ledger/posting-rules';
import {
  type LedgerItem,
  type OltpPayment,
  type ReconciliationBreak,
  dayAfter,
  dayBefore,
  ledgerItemOf,
  matchWindow,
} from '../../src/reconciliation/match';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { type Simulation, simulatePayments } from '../../src/simulator/payments';
import { type InjectedBreak, type BreakPlan, simulateSettlementFiles } from '../../src/simulator/settlement-files';

// The matcher alone, on the simulator's files and the ledger items the posting rules make of its facts:
// every window of a run together must report exactly the injected breaks (type, payment, amount, currency).

function ledgerOf(sim: Simulation): LedgerItem[] {
  const disputed = new Map<string, number>();
  for (const e of sim.events)
    if (e.type === 'chargeback_opened') disputed.set(`${e.paymentId}/${e.chargebackId}`, e.amountMinor);
  const seen = new Set<string>();
  const out: LedgerItem[] = [];
  for (const [i, e] of sim.events.entries()) {
    const key = postingKey(e.paymentId, factKey(e));
    if (seen.has(key)) continue;
    seen.add(key);
    const cb = 'chargebackId' in e ? disputed.get(`${e.paymentId}/${e.chargebackId}`) : 0;
    const item = ledgerItemOf({
      entryId: i,
      postingKey: key,
      paymentId: e.paymentId,
      merchantId: e.merchantId,
      factType: e.type,
      occurredAt: e.occurredAt,
      lines: linesFor(e, cb ?? 0),
    });
    if (item) out.push(item);
  }
  return out;
}

function oltpOf(sim: Simulation): OltpPayment[] {
  const m = new Map<string, OltpPayment>();
  for (const e of sim.events)
    if (!m.has(e.paymentId))
      m.set(e.paymentId, {
        paymentId: e.paymentId,
        merchantId: e.merchantId,
        currency: e.currency,
        amountMinor: 0,
        status: e.type,
      });
  return [...m.values()];
}

/** The simulation with every payment moved `p % days` days later: windows that each hold data and breaks. */
function spread(sim: Simulation, days: number): Simulation {
  const shift = (e: PaymentEvent): PaymentEvent => {
    const n = Number(/-p(\d+)$/.exec(e.paymentId)?.[1] ?? 0) % days;
    return { ...e, occurredAt: new Date(Date.parse(e.occurredAt) + n * 86_400_000).toISOString() };
  };
  return { ...sim, events: sim.events.map(shift), deliveries: sim.deliveries.map(shift) };
}

function reconcileAll(
  seed: number,
  breaks: 'none' | 'default' | BreakPlan,
  spreadDays = 1,
): { found: ReconciliationBreak[]; truth: InjectedBreak[]; matched: number } {
  const sim = spread(simulatePayments({ payments: 150, seed, duplicateRate: 0, runId: `rm${seed}` }), spreadDays);
  const truth = simulateSettlementFiles(sim, { seed, breaks });
  const files = truth.files.flatMap((f) => parseSettlementItems(f.provider, f.name, f.content));
  const ledger = ledgerOf(sim);
  const oltp = oltpOf(sim);
  const days = [...new Set([...ledger.map((l) => l.bookedDate), ...files.map((f) => f.bookedDate)])].sort();
  const found: ReconciliationBreak[] = [];
  let matched = 0;
  for (const window of days) {
    const r = matchWindow({
      window,
      ledger: ledger.filter((l) => l.bookedDate === window || l.bookedDate === dayBefore(window)),
      files: files.filter((f) => f.bookedDate === window || f.bookedDate === dayAfter(window)),
      oltp,
    });
    found.push(...r.breaks);
    matched += r.items.matched;
  }
  return { found, truth: truth.breaks, matched };
}

const norm = (b: { type: string; paymentId: string; amountMinor: number; currency: string }): string =>
  `${b.type}|${b.paymentId}|${b.amountMinor}|${b.currency}`;

describe('matchWindow', () => {
  for (const seed of [1, 7, 42, 1234, 99999]) {
    it(`seed ${seed}: the breaks found over all windows are exactly the injected ones`, () => {
      const { found, truth, matched } = reconcileAll(seed, 'default');
      assert.equal(truth.length, 14);
      assert.deepEqual(found.map(norm).sort(), truth.map(norm).sort());
      assert.ok(matched > 50, `matched ${matched}`);
    });
  }

  it('payments spread over four days: each window finds its own breaks, timing ones across each edge', () => {
    const { found, truth } = reconcileAll(11, { timing: 4, missing: 2, duplicate: 2, amount_mismatch: 2 }, 4);
    assert.ok(new Set(truth.map((b) => b.expected?.date ?? b.reported?.date)).size > 1, 'breaks on several days');
    assert.deepEqual(found.map(norm).sort(), truth.map(norm).sort());
  });

  it('a clean file set gives zero breaks', () => {
    const { found, matched } = reconcileAll(5, 'none');
    assert.deepEqual(found, []);
    assert.ok(matched > 50);
  });

  it('several breaks of a type are each found', () => {
    const { found, truth } = reconcileAll(3, { duplicate: 3, missing: 2, timing: 2, fee_mismatch: 2 });
    assert.equal(truth.length, 18);
    assert.deepEqual(found.map(norm).sort(), truth.map(norm).sort());
  });

  it('names ledger ↔ OLTP disagreements: a payment absent from OLTP, another currency there', () => {
    const base: LedgerItem = {
      paymentId: 'p1',
      merchantId: 'm',
      kind: 'settlement',
      reference: 'set1',
      currency: 'EUR',
      grossMinor: 1000,
      feeMinor: 30,
      bookedDate: '2026-01-02',
      entryId: 1,
    };
    const r = matchWindow({
      window: '2026-01-02',
      ledger: [base, { ...base, paymentId: 'p2', entryId: 2 }],
      files: [],
      oltp: [{ paymentId: 'p2', merchantId: 'm', currency: 'USD', amountMinor: 1000, status: 'settled' }],
    });
    assert.deepEqual(r.breaksByType, { missing: 2, oltp_missing: 1, oltp_currency_mismatch: 1 });
    assert.deepEqual(r.amountsByType.missing, { EUR: 2000 });
    assert.equal(r.byCurrency.EUR?.clearingDifferenceMinor, -2000);
  });
});

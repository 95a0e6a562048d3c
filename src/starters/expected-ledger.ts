import type { AccountCode } from '../ledger/posting-rules';
import type { ExpectedLedger, LedgerTotals } from '../ledger/checks';
import type { GroundTruth } from '../simulator/payments';

// The demo's and the tests' yardstick: what the ledger must show for what the simulator says happened.
// Runtime never sees the simulator; it compares against plain expected data (src/ledger/checks.ts).

export function expectedLedger(truth: GroundTruth): ExpectedLedger {
  const totals: LedgerTotals = {};
  const add = (account: AccountCode, currency: string, debitMinor: number, creditMinor: number): void => {
    if (debitMinor === 0 && creditMinor === 0) return;
    const t = (totals[`${account}|${currency}`] ??= { debitMinor: 0, creditMinor: 0 });
    t.debitMinor += debitMinor;
    t.creditMinor += creditMinor;
  };
  for (const [currency, c] of Object.entries(truth.byCurrency)) {
    // What each economic event means for the chart of accounts (docs/ledger.md), restated from the simulator's side.
    add(
      'gateway_clearing',
      currency,
      c.capturedMinor + c.chargebacksWonMinor,
      c.settledGrossMinor + c.chargebacksOpenedMinor,
    );
    add('merchant_payable', currency, c.refundedMinor + c.chargebacksLostMinor, c.capturedMinor - c.platformFeesMinor);
    add('platform_fee_revenue', currency, 0, c.platformFeesMinor);
    add('settlement_cash', currency, c.settledGrossMinor - c.gatewayFeesMinor, 0);
    add('gateway_fee_expense', currency, c.gatewayFeesMinor, 0);
    add('refunds_payable', currency, 0, c.refundedMinor);
    add('chargebacks_disputed', currency, c.chargebacksOpenedMinor, c.chargebacksWonMinor + c.chargebacksLostMinor);
  }
  return { entries: truth.moneyMovingFacts, totals };
}

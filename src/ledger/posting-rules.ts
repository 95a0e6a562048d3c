import type { PaymentEvent } from '../contracts/payment-event';

// Posting rules: which journal lines a payment fact produces. Pure and deterministic (the workflow
// calls them), and a function of the fact (chargeback won/lost: and of its opening fact), so the
// ledger cannot depend on arrival order.

export const ACCOUNTS = [
  'gateway_clearing',
  'settlement_cash',
  'merchant_payable',
  'platform_fee_revenue',
  'gateway_fee_expense',
  'refunds_payable',
  'chargebacks_disputed',
  'suspense',
] as const;
export type AccountCode = (typeof ACCOUNTS)[number];

export interface JournalLine {
  account: AccountCode;
  side: 'debit' | 'credit';
  amountMinor: number;
  currency: string;
}

/** The business identity of a fact within its payment, whichever source reported it. */
export function factKey(fact: PaymentEvent): string {
  switch (fact.type) {
    case 'captured':
      return `captured:${fact.captureId}`;
    case 'refunded':
      return `refunded:${fact.refundId}`;
    case 'settled':
      return `settled:${fact.settlementId}`;
    case 'chargeback_opened':
    case 'chargeback_won':
    case 'chargeback_lost':
      return `${fact.type}:${fact.chargebackId}`;
    default:
      return fact.type;
  }
}

export function postingKey(paymentId: string, key: string): string {
  return `payment/${paymentId}/${key}`;
}

const dr = (account: AccountCode, amountMinor: number, currency: string): JournalLine => ({
  account,
  side: 'debit',
  amountMinor,
  currency,
});
const cr = (account: AccountCode, amountMinor: number, currency: string): JournalLine => ({
  account,
  side: 'credit',
  amountMinor,
  currency,
});

/** Lines for one fact; chargeback won/lost need the disputed amount from their opening fact. */
export function linesFor(fact: PaymentEvent, disputedMinor = 0): JournalLine[] {
  const c = fact.currency;
  let lines: JournalLine[];
  switch (fact.type) {
    case 'created':
    case 'authorized':
    case 'voided':
    case 'failed':
      return []; // no money moves
    case 'captured':
      lines = [
        dr('gateway_clearing', fact.amountMinor, c),
        cr('merchant_payable', fact.amountMinor - fact.platformFeeMinor, c),
        cr('platform_fee_revenue', fact.platformFeeMinor, c),
      ];
      break;
    case 'settled':
      lines = [
        dr('settlement_cash', fact.amountMinor - fact.feeMinor, c),
        dr('gateway_fee_expense', fact.feeMinor, c),
        cr('gateway_clearing', fact.amountMinor, c),
      ];
      break;
    case 'refunded':
      lines = [dr('merchant_payable', fact.amountMinor, c), cr('refunds_payable', fact.amountMinor, c)];
      break;
    case 'chargeback_opened':
      lines = [dr('chargebacks_disputed', fact.amountMinor, c), cr('gateway_clearing', fact.amountMinor, c)];
      break;
    case 'chargeback_won':
      lines = [dr('gateway_clearing', disputedMinor, c), cr('chargebacks_disputed', disputedMinor, c)];
      break;
    case 'chargeback_lost':
      lines = [dr('merchant_payable', disputedMinor, c), cr('chargebacks_disputed', disputedMinor, c)];
      break;
  }
  return lines.filter((l) => l.amountMinor > 0);
}

/** A manual adjustment by ops: the named account against suspense, to be cleared by a later entry. */
export function adjustmentLines(
  account: AccountCode,
  side: 'debit' | 'credit',
  amountMinor: number,
  currency: string,
): JournalLine[] {
  if (account === 'suspense') throw new RangeError('a manual adjustment cannot post suspense against itself');
  return side === 'debit'
    ? [dr(account, amountMinor, currency), cr('suspense', amountMinor, currency)]
    : [dr('suspense', amountMinor, currency), cr(account, amountMinor, currency)];
}

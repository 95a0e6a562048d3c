import type { PaymentEvent } from '../contracts/payment-event';

// Posting rules: which journal lines a payment fact produces. Pure and deterministic, so the
// workflow can call it; the ledger activity only persists what it is given.

export type AccountCode = 'gateway_clearing' | 'settlement_cash' | 'merchant_payable' | 'gateway_fee_expense';

export interface JournalLine {
  account: AccountCode;
  side: 'debit' | 'credit';
  amountMinor: number;
  currency: string;
}

export function linesFor(fact: PaymentEvent): JournalLine[] {
  const c = fact.currency;
  switch (fact.type) {
    case 'created':
    case 'authorized':
      return []; // no money moves until capture
    case 'captured':
      return [
        { account: 'gateway_clearing', side: 'debit', amountMinor: fact.amountMinor, currency: c },
        { account: 'merchant_payable', side: 'credit', amountMinor: fact.amountMinor, currency: c },
      ];
    case 'settled': {
      const fee = fact.feeMinor ?? 0;
      const lines: JournalLine[] = [
        { account: 'settlement_cash', side: 'debit', amountMinor: fact.amountMinor - fee, currency: c },
        { account: 'gateway_fee_expense', side: 'debit', amountMinor: fee, currency: c },
        { account: 'gateway_clearing', side: 'credit', amountMinor: fact.amountMinor, currency: c },
      ];
      return lines.filter((l) => l.amountMinor > 0);
    }
  }
}

/** Stable key of one fact within its payment, used in the posting key payment/<id>/<fact key>. */
export function factKey(fact: Pick<PaymentEvent, 'idempotencyKey'>): string {
  return fact.idempotencyKey;
}

import { z } from 'zod';
import { CurrencyCode, MinorUnits } from '../contracts/money';

// Rows of PayLink's OLTP tables as Debezium's JSON converter writes them in a change event's
// `before`/`after` (int8 as a JSON number, timestamptz as an ISO string). The CDC reader names them
// in its `schema` header as debezium-oltp-<table>@<version>; the quality consumer checks drift against them.

const Timestamp = z.iso.datetime({ offset: true });

export const OltpPaymentRow = z.object({
  id: z.string().min(1),
  merchant_id: z.string().min(1),
  region: z.string().min(1),
  currency: CurrencyCode,
  amount_minor: MinorUnits,
  status: z.string().min(1),
  /** Tokenized at the edge like every e-mail; null when the merchant sent none. */
  customer_email: z.string().nullable(),
  created_at: Timestamp,
  updated_at: Timestamp,
  /** v2: the merchant's free-text note; unbounded, tokenized like any text. Optional: v1 rows lack it. */
  description: z.string().nullable().optional(),
});
export type OltpPaymentRow = z.infer<typeof OltpPaymentRow>;

export const OltpLedgerEntryRow = z.object({
  id: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  payment_id: z.string().min(1),
  account: z.string().min(1),
  direction: z.enum(['debit', 'credit']),
  amount_minor: MinorUnits.min(1),
  currency: CurrencyCode,
  entry_ref: z.string().min(1),
  created_at: Timestamp,
});
export type OltpLedgerEntryRow = z.infer<typeof OltpLedgerEntryRow>;

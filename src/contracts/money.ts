import { z } from 'zod';

// Money is integer minor units plus an ISO 4217 code. Never floats.
export const CurrencyCode = z.string().regex(/^[A-Z]{3}$/, 'ISO 4217 currency code, e.g. EUR');
export type CurrencyCode = z.infer<typeof CurrencyCode>;

export const MinorUnits = z
  .number()
  .int('amount must be integer minor units')
  .nonnegative()
  .max(Number.MAX_SAFE_INTEGER);

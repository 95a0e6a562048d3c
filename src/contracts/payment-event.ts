import { z } from 'zod';
import { CurrencyCode, MinorUnits } from './money';

// A payment lifecycle fact as it travels on Kafka (envelope v1). The idempotency key is derived
// upstream (../shared/BRIEF.md §5) and carried end to end: Kafka header, workflow dedup, posting key.

export const PaymentFactType = z.enum(['created', 'authorized', 'captured', 'settled']);
export type PaymentFactType = z.infer<typeof PaymentFactType>;

export const EventSource = z.enum(['gateway', 'webhook', 'cdc', 'partner']);
export type EventSource = z.infer<typeof EventSource>;

export const PaymentEvent = z
  .object({
    version: z.literal(1),
    idempotencyKey: z.string().min(1).max(300),
    paymentId: z.string().regex(/^[A-Za-z0-9_.:-]{1,120}$/, 'payment id: letters, digits, _ . : -'),
    merchantId: z.string().min(1).max(120),
    region: z.string().min(1).max(40),
    type: PaymentFactType,
    amountMinor: MinorUnits,
    currency: CurrencyCode,
    /** Gateway fee withheld at settlement, same currency. */
    feeMinor: MinorUnits.optional(),
    occurredAt: z.iso.datetime({ offset: true }),
    source: EventSource,
    sourceSequence: z.number().int().nonnegative(),
  })
  .refine((e) => e.feeMinor === undefined || e.feeMinor <= e.amountMinor, {
    message: 'feeMinor exceeds amountMinor',
    path: ['feeMinor'],
  });
export type PaymentEvent = z.infer<typeof PaymentEvent>;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Parses one raw message; the reason names the offending fields so quarantine is actionable. */
export function parsePaymentEvent(raw: string | Buffer | null): ParseResult<PaymentEvent> {
  if (raw === null) return { ok: false, reason: 'empty message value' };
  let json: unknown;
  try {
    json = JSON.parse(raw.toString());
  } catch (err) {
    return { ok: false, reason: `malformed JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  const parsed = PaymentEvent.safeParse(json);
  if (!parsed.success) {
    return {
      ok: false,
      reason: parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '),
    };
  }
  return { ok: true, value: parsed.data };
}

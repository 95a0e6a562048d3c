import { z } from 'zod';
import { CurrencyCode, MinorUnits } from './money';
import { describeIssues } from './issues';
import { TRACE_ID_PATTERN } from './envelope';

// A payment lifecycle fact as it travels on Kafka (payment-fact schema). The idempotency key is derived
// upstream (../shared/BRIEF.md §5) and carried end to end: Kafka header, inbox, workflow dedup, ledger row;
// the trace id rides along to the ledger row (the Kafka headers are in ./envelope.ts).

export const EventSource = z.enum(['gateway', 'webhook', 'cdc', 'partner']);
export type EventSource = z.infer<typeof EventSource>;

/** Payment, capture, refund … ids: what fits in a workflow id and a Kafka key. */
export const ID_PATTERN = /^[A-Za-z0-9_.:-]{1,120}$/;
const Id = z.string().regex(ID_PATTERN, 'id: 1–120 of letters, digits, _ . : -');

const FactFields = z.object({
  version: z.literal(1),
  idempotencyKey: z.string().min(1).max(300),
  paymentId: Id,
  merchantId: z.string().min(1).max(120),
  region: z.string().min(1).max(40),
  currency: CurrencyCode,
  occurredAt: z.iso.datetime({ offset: true }),
  source: EventSource,
  sourceSequence: z.number().int().nonnegative(),
  /** Set by the edge (traceIdOf its idempotency key); optional: facts older than it have none. */
  traceId: z.string().regex(TRACE_ID_PATTERN, 'traceId: 32 lower-case hex digits').optional(),
});

const PaymentCreated = FactFields.extend({ type: z.literal('created'), amountMinor: MinorUnits });
const PaymentAuthorized = FactFields.extend({ type: z.literal('authorized'), amountMinor: MinorUnits });
const PaymentCaptured = FactFields.extend({
  type: z.literal('captured'),
  captureId: Id,
  amountMinor: MinorUnits.min(1),
  /** PayLink's fee on this capture, kept from the merchant's payable. */
  platformFeeMinor: MinorUnits.default(0),
});
const PaymentVoided = FactFields.extend({ type: z.literal('voided') });
const PaymentRefunded = FactFields.extend({
  type: z.literal('refunded'),
  refundId: Id,
  amountMinor: MinorUnits.min(1),
});
const PaymentSettled = FactFields.extend({
  type: z.literal('settled'),
  settlementId: Id,
  captureId: Id,
  /** Gross amount the gateway settles for the capture. */
  amountMinor: MinorUnits.min(1),
  /** Gateway fee withheld from the gross amount. */
  feeMinor: MinorUnits,
});
const ChargebackOpened = FactFields.extend({
  type: z.literal('chargeback_opened'),
  chargebackId: Id,
  amountMinor: MinorUnits.min(1),
});
const ChargebackWon = FactFields.extend({ type: z.literal('chargeback_won'), chargebackId: Id });
const ChargebackLost = FactFields.extend({ type: z.literal('chargeback_lost'), chargebackId: Id });
const PaymentFailed = FactFields.extend({ type: z.literal('failed'), reason: z.string().min(1).max(500) });

export const PaymentEvent = z
  .discriminatedUnion('type', [
    PaymentCreated,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentVoided,
    PaymentRefunded,
    PaymentSettled,
    ChargebackOpened,
    ChargebackWon,
    ChargebackLost,
    PaymentFailed,
  ])
  .refine((e) => e.type !== 'captured' || e.platformFeeMinor <= e.amountMinor, {
    message: 'platformFeeMinor exceeds amountMinor',
    path: ['platformFeeMinor'],
  })
  .refine((e) => e.type !== 'settled' || e.feeMinor <= e.amountMinor, {
    message: 'feeMinor exceeds amountMinor',
    path: ['feeMinor'],
  });
export type PaymentEvent = z.infer<typeof PaymentEvent>;
export type PaymentFactType = PaymentEvent['type'];
export type FactOf<T extends PaymentFactType> = Extract<PaymentEvent, { type: T }>;

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
      reason: describeIssues(parsed.error),
    };
  }
  return { ok: true, value: parsed.data };
}

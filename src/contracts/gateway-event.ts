import { z } from 'zod';
import { gatewayIdempotencyKey } from './envelope';
import { describeIssues } from './issues';
import { CurrencyCode, MinorUnits } from './money';
import { ID_PATTERN, PaymentEvent, type ParseResult } from './payment-event';

// A regional payment gateway's own event format (v1), as its sequenced feed serves it, and its
// mapping onto PayLink's payment facts. Unknown fields pass (gateways add fields); missing or
// mistyped required ones are reasons for quarantine, named by path.

/** Gateway id and region as configured: the facts' region is the gateway's, whatever the event says. */
export interface GatewayIdentity {
  gateway: string;
  region: string;
}

const Ref = z.string().regex(/^[A-Za-z0-9_.-]{1,120}$/, 'ref: 1–120 of letters, digits, _ . -');

/** PayLink's payment id, which the merchant passed to the gateway (the Kafka key, even of a quarantined event). */
export const PaymentReference = z.string().regex(ID_PATTERN, 'paymentReference: PayLink payment id');

const GatewayEventBase = z.object({
  seq: z.number().int().positive(),
  eventId: z.string().min(1).max(200),
  txnRef: Ref,
  paymentReference: PaymentReference,
  merchantId: z.string().min(1).max(120),
  /** Minor units; 0 on CANCELLATION and REFUSAL (no money moves, the currency still counts). */
  amount: z.object({ value: MinorUnits, currency: CurrencyCode }),
  /** The gateway's sequence of this fact within its transaction. */
  factSeq: z.number().int().nonnegative(),
  occurredAt: z.iso.datetime({ offset: true }),
  // Card and shopper are PII: a PAN or its token, never checked for shape here (the tokenizer runs first).
  card: z.object({ number: z.string().min(1), holderName: z.string().optional(), expiry: z.string().optional() }),
  shopper: z.object({ email: z.string().optional() }).optional(),
});

export const GatewayEvent = z.discriminatedUnion('eventType', [
  GatewayEventBase.extend({ eventType: z.literal('AUTHORISATION') }),
  GatewayEventBase.extend({
    eventType: z.literal('CAPTURE'),
    captureRef: Ref,
    /** PayLink's fee on this capture, in the capture's currency. */
    platformFee: MinorUnits.optional(),
  }),
  GatewayEventBase.extend({ eventType: z.literal('CANCELLATION') }),
  GatewayEventBase.extend({ eventType: z.literal('REFUSAL'), refusalReason: z.string().min(1).max(500) }),
]);
export type GatewayEvent = z.infer<typeof GatewayEvent>;

/** One page of a gateway's feed: events after the cursor, the next cursor, and whether more wait. */
export const GatewayFeedPage = z.object({
  events: z.array(z.unknown()),
  nextAfter: z.number().int().nonnegative(),
  hasMore: z.boolean(),
});
export type GatewayFeedPage = z.infer<typeof GatewayFeedPage>;

export const GATEWAY_FACT_TYPES = {
  AUTHORISATION: 'authorized',
  CAPTURE: 'captured',
  CANCELLATION: 'voided',
  REFUSAL: 'failed',
} as const satisfies Record<GatewayEvent['eventType'], PaymentEvent['type']>;

export function parseGatewayEvent(raw: unknown): ParseResult<GatewayEvent> {
  const parsed = GatewayEvent.safeParse(raw);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: describeIssues(parsed.error) };
}

/** Gateway event (tokenized) → payment fact of the gateway's region, source 'gateway'. */
export function gatewayEventToFact(gw: GatewayIdentity, raw: unknown): ParseResult<PaymentEvent> {
  const parsed = parseGatewayEvent(raw);
  if (!parsed.ok) return parsed;
  const e = parsed.value;
  const type = GATEWAY_FACT_TYPES[e.eventType];
  const candidate = {
    version: 1,
    type,
    // The same key the simulator (and so the truth) derives.
    idempotencyKey: gatewayIdempotencyKey(gw.gateway, e.txnRef, type, e.factSeq),
    paymentId: e.paymentReference,
    merchantId: e.merchantId,
    region: gw.region,
    currency: e.amount.currency,
    occurredAt: e.occurredAt,
    source: 'gateway',
    sourceSequence: e.factSeq,
    ...(e.eventType === 'AUTHORISATION' ? { amountMinor: e.amount.value } : {}),
    ...(e.eventType === 'CAPTURE'
      ? { captureId: e.captureRef, amountMinor: e.amount.value, platformFeeMinor: e.platformFee ?? 0 }
      : {}),
    ...(e.eventType === 'REFUSAL' ? { reason: e.refusalReason } : {}),
  };
  const fact = PaymentEvent.safeParse(candidate);
  return fact.success ? { ok: true, value: fact.data } : { ok: false, reason: describeIssues(fact.error) };
}

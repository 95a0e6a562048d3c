import { z } from 'zod';
import { webhookIdempotencyKey } from './envelope';
import { describeIssues } from './issues';
import { CurrencyCode, MinorUnits } from './money';
import { PaymentEvent, type ParseResult } from './payment-event';

// Partner webhook payloads (per signature scheme) and their mapping onto payment facts (v1).
// Unknown fields are allowed through (partners add fields); missing or mistyped required ones are
// reasons for quarantine, named by path.
//
// A fact takes its fields only from what the partner signed (docs/edge.md, "Hostile input"):
// - Stripe-style: the HMAC covers the whole raw body, so every field of the event is signed.
// - Adyen-style: the HMAC covers only pspReference, originalReference, merchantAccountCode,
//   merchantReference, amount.value, amount.currency, eventCode and success. eventDate, reason and
//   additionalData are unsigned: they stay in the raw event, and the fact's time is our receipt time.

/** 9999-12-31T23:59:59Z: the last second an ISO 8601 timestamp with a four-digit year can name. */
const MAX_UNIX_SECONDS = 253_402_300_799;

/** Stripe-style event: { id, type: "payment.<fact>", created, data: { object } }. */
export const StripeStyleEvent = z.object({
  id: z.string().min(1).max(200),
  type: z.string().regex(/^payment\.[a-z_]+$/, 'type: payment.<fact type>'),
  created: z.number().int().positive(),
  data: z.object({ object: z.record(z.string(), z.unknown()) }),
});
export type StripeStyleEvent = z.infer<typeof StripeStyleEvent>;

/** Adyen-style standard notification: { live, notificationItems: [{ NotificationRequestItem }] }. */
export const AdyenNotificationRequestItem = z.object({
  pspReference: z.string().min(1),
  originalReference: z.string().optional(),
  merchantAccountCode: z.string().min(1),
  merchantReference: z.string().min(1),
  amount: z.object({ value: MinorUnits, currency: CurrencyCode }),
  eventCode: z.string().min(1),
  eventDate: z.iso.datetime({ offset: true }),
  success: z.enum(['true', 'false']),
  reason: z.string().optional(),
  additionalData: z.record(z.string(), z.unknown()).optional(),
});
export type AdyenNotificationRequestItem = z.infer<typeof AdyenNotificationRequestItem>;

export const AdyenNotification = z.object({
  live: z.enum(['true', 'false']).optional(),
  notificationItems: z.array(z.object({ NotificationRequestItem: z.record(z.string(), z.unknown()) })).min(1),
});
export type AdyenNotification = z.infer<typeof AdyenNotification>;

/** Stripe-style event → payment fact; the fact's own fields come from data.object. */
export function stripeStyleToFact(partnerId: string, region: string, raw: unknown): ParseResult<PaymentEvent> {
  const event = StripeStyleEvent.safeParse(raw);
  if (!event.success) return { ok: false, reason: describeIssues(event.error) };
  const { id, type, created, data } = event.data;
  // Checked here, not in the registered contract: past it `new Date(…).toISOString()` would throw.
  if (created > MAX_UNIX_SECONDS) {
    return { ok: false, reason: `created: ${created} is past ${MAX_UNIX_SECONDS} (9999-12-31T23:59:59Z)` };
  }
  const candidate = {
    region,
    ...data.object,
    version: 1,
    type: type.slice('payment.'.length),
    idempotencyKey: webhookIdempotencyKey(partnerId, id),
    occurredAt: new Date(created * 1000).toISOString(),
    source: 'webhook',
    sourceSequence: created,
  };
  const fact = PaymentEvent.safeParse(candidate);
  return fact.success
    ? { ok: true, value: fact.data }
    : { ok: false, reason: describeIssues(fact.error, { prefix: 'data.object' }) };
}

const ADYEN_EVENT_TYPES: Record<string, PaymentEvent['type'] | undefined> = {
  AUTHORISATION: 'authorized',
  CAPTURE: 'captured',
  CANCELLATION: 'voided',
  REFUND: 'refunded',
  CHARGEBACK: 'chargeback_opened',
  CHARGEBACK_REVERSED: 'chargeback_won',
  SECOND_CHARGEBACK: 'chargeback_lost',
};

/** An Adyen-style item's event id: PSP reference, event code and outcome (a refusal and a success are two events). */
export function adyenEventId(item: { pspReference?: unknown; eventCode?: unknown; success?: unknown }): string {
  return `${String(item.pspReference)}:${String(item.eventCode)}:${String(item.success)}`;
}

/**
 * One Adyen-style item → payment fact. The payment is the merchant reference; ids are PSP references.
 * Only signed fields feed it; `receivedAt` (the edge's clock) dates it, since Adyen does not sign eventDate.
 */
export function adyenItemToFact(
  partnerId: string,
  region: string,
  rawItem: unknown,
  receivedAt: string,
): ParseResult<PaymentEvent> {
  const parsed = AdyenNotificationRequestItem.safeParse(rawItem);
  if (!parsed.success)
    return { ok: false, reason: describeIssues(parsed.error, { prefix: 'NotificationRequestItem' }) };
  const item = parsed.data;
  const mapped = ADYEN_EVENT_TYPES[item.eventCode];
  if (!mapped) return { ok: false, reason: `NotificationRequestItem.eventCode: unsupported "${item.eventCode}"` };
  const type = mapped === 'authorized' && item.success === 'false' ? 'failed' : mapped;
  const ref = item.pspReference;
  const candidate = {
    version: 1,
    type,
    idempotencyKey: webhookIdempotencyKey(partnerId, adyenEventId(item)),
    paymentId: item.merchantReference,
    merchantId: item.merchantAccountCode,
    region,
    currency: item.amount.currency,
    occurredAt: receivedAt,
    source: 'webhook',
    sourceSequence: Date.parse(receivedAt),
    amountMinor: item.amount.value,
    ...(type === 'captured' ? { captureId: ref, platformFeeMinor: 0 } : {}),
    ...(type === 'refunded' ? { refundId: ref } : {}),
    ...(type.startsWith('chargeback') ? { chargebackId: item.originalReference ?? ref } : {}),
    ...(type === 'failed' ? { reason: item.reason ?? 'refused' } : {}),
  };
  const fact = PaymentEvent.safeParse(candidate);
  return fact.success
    ? { ok: true, value: fact.data }
    : { ok: false, reason: describeIssues(fact.error, { prefix: 'NotificationRequestItem' }) };
}

/** A partner's signature scheme; its items' raw schema (the `schema` header) names it on the raw topic. */
export type WebhookScheme = 'stripe' | 'adyen';

export const WEBHOOK_RAW_SCHEMAS = {
  stripe: 'stripe-style-event',
  adyen: 'adyen-notification-item',
} as const satisfies Record<WebhookScheme, string>;

/**
 * One verified, tokenized webhook item → payment fact, by the partner's scheme: the one mapping the
 * receiver runs live and replay runs on the archived item (identity from its envelope headers).
 */
export function webhookItemToFact(
  partner: { id: string; region: string; scheme: WebhookScheme },
  tokenizedItem: unknown,
  receivedAt: string,
): ParseResult<PaymentEvent> {
  return partner.scheme === 'stripe'
    ? stripeStyleToFact(partner.id, partner.region, tokenizedItem)
    : adyenItemToFact(partner.id, partner.region, tokenizedItem, receivedAt);
}

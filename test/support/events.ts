import { edgeEnvelope, webhookIdempotencyKey } from '../../src/contracts/envelope';
import { stripeStyleToFact } from '../../src/contracts/partner-webhooks';
import type { Tokenizer } from '../../src/ingest/tokenize';
import { CURRENT_SCHEMAS } from '../../src/quality/schema-registry';
import { type TopicSet, edgeTopicsOf } from '../../src/streams/kafka';
import type { SourceEvent } from '../../src/streams/publish';

// Event builders with no service behind them (unit tests import them too): the stack-bound helpers are in
// ./edge.ts.

/** The data.object of a Stripe-style capture of `paymentId`; `extra` overrides or adds fields. */
export function captureObject(paymentId: string, extra: Record<string, unknown> = {}) {
  return {
    paymentId,
    merchantId: 'm-1',
    currency: 'EUR',
    captureId: 'cap1',
    amountMinor: 1999,
    platformFeeMinor: 20,
    ...extra,
  };
}

/** A Stripe-style `payment.captured` envelope around `object`. */
export function capturedEvent(id: string, created: number, object: Record<string, unknown>) {
  return { id, type: 'payment.captured', created, data: { object } };
}

/**
 * A Stripe-style capture (event `evt_<eventId>`, created 1,700,000,000) as the edge would publish it on
 * `topics`: tokenized, enveloped, its fact mapped, keyed `paymentId`.
 */
export function publishedCapture(
  topics: TopicSet,
  tokenizer: Tokenizer,
  ids: { eventId: string; paymentId: string },
  extra: Record<string, unknown> = {},
): SourceEvent {
  const envelope = edgeEnvelope('webhook', edgeTopicsOf(topics, 'rawWebhooks'), {
    raw: CURRENT_SCHEMAS['stripe-style-event'],
    fact: CURRENT_SCHEMAS['payment-fact'],
  });
  const body = capturedEvent(`evt_${ids.eventId}`, 1_700_000_000, captureObject(ids.paymentId, extra));
  const tokenized = tokenizer.tokenize(body).payload;
  const mapped = stripeStyleToFact('acme-pay', 'eu-west-1', tokenized);
  const records = envelope('2025-01-02T03:04:05.000Z', tokenized, mapped, {
    key: ids.paymentId,
    idempotencyKey: webhookIdempotencyKey('acme-pay', `evt_${ids.eventId}`),
  });
  return { records };
}

/** Many short addresses: small as received, each grows into a longer (~45-byte) token. */
export const emails = (n: number): string[] => Array.from({ length: n }, (_, i) => `u${i}@x.io`);

/** `depth` arrays/objects around `leaf`, alternating, built without recursion. */
export function nested(depth: number, leaf: string): string {
  let open = '';
  let close = '';
  for (let i = 0; i < depth; i++) {
    open += i % 2 === 0 ? '{"a":' : '[';
    close = (i % 2 === 0 ? '}' : ']') + close;
  }
  return open + leaf + close;
}

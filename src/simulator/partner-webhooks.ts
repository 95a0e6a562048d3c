import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PaymentEvent } from '../contracts/payment-event';
import { STRIPE_SIGNATURE_HEADER, signAdyen, signStripe } from '../ingest/signatures';
import type { PartnerConfig } from '../ingest/webhook-receiver';
import { channelOf } from './channels';

// The simulator as PayLink's webhook partners: refunds and disputes (the 'webhook' channel) become
// signed Stripe-style or Adyen-style notifications, posted to the edge and retried like partners do
// (on 5xx, 429 and network errors, with backoff), re-signed at every attempt.

export interface PartnerWebhook {
  partnerId: string;
  /** Stable per fact: a redelivery of the same fact is the same partner event. */
  eventId: string;
  body: string;
  /** Headers for one attempt (Stripe-style signatures carry the attempt's time). */
  sign(nowSeconds: number): Record<string, string>;
  /** The simulated fact it notifies (its idempotency key): the simulator's own bookkeeping, never sent. */
  fact?: string;
}

/** us-east payments are notified by the Adyen-style partner, the others by the Stripe-style one. */
const schemeOf = (event: PaymentEvent): 'adyen' | 'stripe' => (event.region === 'us-east' ? 'adyen' : 'stripe');

/**
 * Whether PayLink dates this fact by its own receipt: an Adyen-style notification signs no date, so the
 * edge takes its clock (src/contracts/partner-webhooks.ts). The simulated partner sends a day of events
 * within minutes, so its books date such a modification the day it notified it, not the simulated day.
 */
export function datedOnReceipt(event: PaymentEvent): boolean {
  return channelOf(event) === 'webhook' && schemeOf(event) === 'adyen';
}

/**
 * The fact as PayLink's edge maps the partner's notification of it: the Adyen-style partner names a refund
 * or a dispute by its PSP reference, global at the PSP, which the payment id makes unique here (see
 * adyenStyle). Its settlement report names the modification by the same reference.
 */
export function asNotified(e: PaymentEvent): PaymentEvent {
  if (!(channelOf(e) === 'webhook' && schemeOf(e) === 'adyen')) return e;
  if (e.type === 'refunded') return { ...e, refundId: `${e.paymentId}.${e.refundId}` };
  if ('chargebackId' in e) return { ...e, chargebackId: `${e.paymentId}.${e.chargebackId}` };
  return e;
}

function partnerFor(event: PaymentEvent, partners: readonly PartnerConfig[]): PartnerConfig {
  const scheme = schemeOf(event);
  const partner = partners.find((p) => p.scheme === scheme);
  if (!partner) throw new Error(`WEBHOOK_PARTNERS has no ${scheme}-scheme partner for region ${event.region}`);
  return partner;
}

const shortHash = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 24);

/**
 * Encodes webhook-channel facts as partner notifications. Chargeback outcomes carry the disputed
 * amount, so the opening amounts are looked up across all facts first (delivery order may be shuffled).
 */
export function encodePartnerWebhooks(
  events: readonly PaymentEvent[],
  partners: readonly PartnerConfig[],
): PartnerWebhook[] {
  const disputed = new Map<string, number>();
  for (const e of events)
    if (e.type === 'chargeback_opened') disputed.set(`${e.paymentId}/${e.chargebackId}`, e.amountMinor);
  return events.map((e) => {
    const partner = partnerFor(e, partners);
    const webhook = partner.scheme === 'stripe' ? stripeStyle(e, partner) : adyenStyle(e, partner, disputed);
    return { ...webhook, fact: e.idempotencyKey };
  });
}

// The customer's contact details ride along, as partners send them: the edge must tokenize them.
const customerOf = (e: PaymentEvent) => ({
  email: `${e.merchantId}.customer.${e.paymentId.slice(-4)}@example.com`,
  name: 'Jane Q. Customer',
});

function stripeStyle(e: PaymentEvent, partner: PartnerConfig): PartnerWebhook {
  const { version: _v, type, idempotencyKey, occurredAt, source: _s, sourceSequence: _q, ...object } = e;
  const eventId = `evt_${shortHash(idempotencyKey)}`;
  const body = JSON.stringify({
    id: eventId,
    type: `payment.${type}`,
    created: Math.floor(Date.parse(occurredAt) / 1000),
    data: { object: { ...object, billing_details: customerOf(e) } },
  });
  const secret = partner.secrets[0]!;
  return {
    partnerId: partner.id,
    eventId,
    body,
    sign: (now) => ({ 'content-type': 'application/json', [STRIPE_SIGNATURE_HEADER]: signStripe(body, secret, now) }),
  };
}

/** The same Stripe-style notification with another body (a broken one, for quarantine checks), signed anew. */
export function resignedStripeStyle(
  webhook: PartnerWebhook,
  body: string,
  partners: readonly PartnerConfig[],
): PartnerWebhook {
  const partner = partners.find((p) => p.id === webhook.partnerId && p.scheme === 'stripe');
  if (!partner) throw new Error(`${webhook.partnerId} is not a Stripe-style partner`);
  const secret = partner.secrets[0]!;
  return {
    ...webhook,
    body,
    sign: (now) => ({ 'content-type': 'application/json', [STRIPE_SIGNATURE_HEADER]: signStripe(body, secret, now) }),
  };
}

const ADYEN_CODES: Partial<Record<PaymentEvent['type'], string>> = {
  refunded: 'REFUND',
  chargeback_opened: 'CHARGEBACK',
  chargeback_won: 'CHARGEBACK_REVERSED',
  chargeback_lost: 'SECOND_CHARGEBACK',
};

function adyenStyle(e: PaymentEvent, partner: PartnerConfig, disputed: Map<string, number>): PartnerWebhook {
  const eventCode = ADYEN_CODES[e.type];
  if (!eventCode) throw new Error(`no Adyen-style notification for a ${e.type} fact (${e.idempotencyKey})`);
  // PSP references are global at a PSP: the payment id makes the simulator's per-payment ids unique.
  let pspReference: string;
  let originalReference: string | undefined;
  let value: number;
  switch (e.type) {
    case 'refunded':
      pspReference = (asNotified(e) as typeof e).refundId;
      value = e.amountMinor;
      break;
    case 'chargeback_opened':
    case 'chargeback_won':
    case 'chargeback_lost':
      originalReference = (asNotified(e) as typeof e).chargebackId;
      pspReference = `${originalReference}.${e.type.slice('chargeback_'.length)}`;
      value = e.type === 'chargeback_opened' ? e.amountMinor : (disputed.get(`${e.paymentId}/${e.chargebackId}`) ?? 0);
      break;
    default:
      throw new Error(`no Adyen-style notification for a ${e.type} fact`);
  }
  const item = {
    pspReference,
    ...(originalReference ? { originalReference } : {}),
    merchantAccountCode: e.merchantId,
    merchantReference: e.paymentId,
    amount: { value, currency: e.currency },
    eventCode,
    eventDate: e.occurredAt,
    success: 'true',
    additionalData: { shopperEmail: customerOf(e).email } as Record<string, unknown>,
  };
  item.additionalData['hmacSignature'] = signAdyen(item, partner.secrets[0]!);
  const body = JSON.stringify({ live: 'false', notificationItems: [{ NotificationRequestItem: item }] });
  return {
    partnerId: partner.id,
    eventId: `${pspReference}:${eventCode}`,
    body,
    sign: () => ({ 'content-type': 'application/json' }),
  };
}

export interface WebhookDeliveryReport {
  delivered: number;
  /** Attempts answered 5xx/429 or failed on the network, then retried. */
  retried: number;
  byStatus: Record<string, number>;
  /** When the edge first acknowledged each notification, by simulated fact (or event id): the partner's booking time. */
  acknowledgedAt: Record<string, string>;
}

/**
 * Posts notifications to the edge with `concurrency` in flight, retrying until each one is
 * acknowledged (2xx). A 4xx other than 429 is a bug in the simulator or the edge: it throws.
 */
export async function deliverPartnerWebhooks(
  baseUrl: string,
  webhooks: readonly PartnerWebhook[],
  options: { concurrency?: number; maxAttempts?: number } = {},
): Promise<WebhookDeliveryReport> {
  const report: WebhookDeliveryReport = { delivered: 0, retried: 0, byStatus: {}, acknowledgedAt: {} };
  const lastSignedAt = new Map<string, number>();
  const maxAttempts = options.maxAttempts ?? 30;
  let next = 0;
  const deliverOne = async (w: PartnerWebhook): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      // A redelivery is re-signed at a later second, as a partner's retry would be (same second = replay).
      let now = Math.floor(Date.now() / 1000);
      const last = lastSignedAt.get(w.eventId);
      if (last !== undefined && now <= last) {
        await sleep((last + 1 - Date.now() / 1000) * 1000 + 5);
        now = last + 1;
      }
      lastSignedAt.set(w.eventId, now);
      let status: number;
      let text = '';
      try {
        const res = await fetch(`${baseUrl}/webhooks/${encodeURIComponent(w.partnerId)}`, {
          method: 'POST',
          headers: w.sign(now),
          body: w.body,
        });
        status = res.status;
        text = await res.text();
      } catch {
        status = 0; // connection refused or reset: the partner retries
      }
      report.byStatus[status] = (report.byStatus[status] ?? 0) + 1;
      if (status >= 200 && status < 300) {
        report.delivered += 1;
        report.acknowledgedAt[w.fact ?? w.eventId] ??= new Date().toISOString();
        return;
      }
      if (status !== 0 && status !== 429 && status < 500) {
        throw new Error(`webhook ${w.eventId} to ${w.partnerId} was rejected with ${status}: ${text}`);
      }
      if (attempt >= maxAttempts)
        throw new Error(`webhook ${w.eventId} to ${w.partnerId}: no 2xx after ${attempt} attempts`);
      report.retried += 1;
      await sleep(Math.min(5000, 100 * 2 ** Math.min(attempt, 6)));
    }
  };
  const workers = Array.from({ length: Math.max(1, options.concurrency ?? 16) }, async () => {
    while (next < webhooks.length) await deliverOne(webhooks[next++]!);
  });
  await Promise.all(workers);
  return report;
}

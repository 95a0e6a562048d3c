import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { adyenItemToFact, stripeStyleToFact } from '../../src/contracts/partner-webhooks';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { loadConfig } from '../../src/config';
import { STRIPE_SIGNATURE_HEADER, verifyAdyenSignature, verifyStripeSignature } from '../../src/ingest/signatures';
import { parsePartners } from '../../src/ingest/webhook-receiver';
import { splitByChannel } from '../../src/simulator/channels';
import { encodePartnerWebhooks } from '../../src/simulator/partner-webhooks';
import { simulatePayments } from '../../src/simulator/payments';

const partners = parsePartners(loadConfig({}).WEBHOOK_PARTNERS);

/** What a fact means for the ledger, whichever partner format carried it. */
const moneyOf = (e: PaymentEvent) => ({
  paymentId: e.paymentId,
  type: e.type,
  currency: e.currency,
  amountMinor: 'amountMinor' in e ? e.amountMinor : undefined,
});

describe('simulated partner webhooks', () => {
  const sim = simulatePayments({ payments: 400, seed: 7, duplicateRate: 0.2, runId: 'pw' });
  const facts = splitByChannel(sim.deliveries).webhook;
  const webhooks = encodePartnerWebhooks(facts, partners);

  it('covers both signature schemes and every webhook fact type', () => {
    assert.deepEqual(new Set(webhooks.map((w) => w.partnerId)), new Set(partners.map((p) => p.id)));
    assert.deepEqual(
      new Set(facts.map((f) => f.type)),
      new Set(['refunded', 'chargeback_opened', 'chargeback_won', 'chargeback_lost']),
    );
  });

  it('signs every notification so the edge verifies it, and it maps back onto the same money', () => {
    const now = Math.floor(Date.now() / 1000);
    for (const [i, w] of webhooks.entries()) {
      const partner = partners.find((p) => p.id === w.partnerId)!;
      const fact = facts[i]!;
      const body = JSON.parse(w.body) as unknown;
      let mapped;
      if (partner.scheme === 'stripe') {
        const check = verifyStripeSignature(Buffer.from(w.body), w.sign(now)[STRIPE_SIGNATURE_HEADER], {
          secrets: partner.secrets,
          nowSeconds: now,
        });
        assert.ok(check.ok, `${w.eventId}: ${JSON.stringify(check)}`);
        mapped = stripeStyleToFact(partner.id, partner.region, body);
      } else {
        const item = (body as { notificationItems: { NotificationRequestItem: Record<string, unknown> }[] })
          .notificationItems[0]!.NotificationRequestItem;
        assert.ok(verifyAdyenSignature(item, partner.secrets).ok, w.eventId);
        mapped = adyenItemToFact(partner.id, partner.region, item, new Date(now * 1000).toISOString());
      }
      assert.ok(mapped.ok, `${w.eventId}: ${mapped.ok ? '' : mapped.reason}`);
      assert.deepEqual(moneyOf(mapped.value), moneyOf(fact));
    }
  });

  it('gives a redelivered fact the same partner event id, and distinct facts distinct ids', () => {
    const byFact = new Map<string, string>();
    for (const [i, w] of webhooks.entries()) {
      const key = facts[i]!.idempotencyKey;
      const seen = byFact.get(key);
      if (seen !== undefined) assert.equal(w.eventId, seen);
      byFact.set(key, w.eventId);
    }
    assert.equal(new Set(byFact.values()).size, byFact.size);
  });
});

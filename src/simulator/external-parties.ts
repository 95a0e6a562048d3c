import { type Config, secretSetting } from '../config';
import type { FactOf, PaymentEvent } from '../contracts/payment-event';
import { parsePartnerApis } from '../contracts/partner-api';
import { parseGatewayFeeds } from '../ingest/gateways/gateway-connector';
import { parsePartners } from '../ingest/webhook-receiver';
import { type Channel, splitByChannel } from './channels';
import { type GatewayFeed, createGatewayFeed, encodeGatewayEvent } from './gateway-feed';
import { type PartnerApiSimulator, createPartnerApiSimulator, toPartnerSettlement } from './partner-api';
import {
  type PartnerWebhook,
  type WebhookDeliveryReport,
  deliverPartnerWebhooks,
  encodePartnerWebhooks,
  resignedStripeStyle,
} from './partner-webhooks';
import { createOltpPool, ensureOltpSchema, recordInOltp } from './oltp';
import type { Simulation } from './payments';
import { errorMessage } from '../logger';

// Everything outside PayLink that the demo needs, played by the simulator on the addresses the
// configuration names: the regional gateways' feeds, the partner settlement API, the webhook
// partners, and PayLink's own OLTP database (whose changes CDC captures).

export interface ExternalParties {
  gateways: GatewayFeed[];
  partnerApi: PartnerApiSimulator;
  /** Hands each fact to the party that delivers it; resolves when every one was handed over. */
  deliver(sim: Simulation, webhookBaseUrl: string): Promise<DeliveryReport>;
  /**
   * Authentic events that break their contract, `perSource` from each of gateways, partner API and
   * webhooks, for payments `<runId>-invalid-*`: each must end in quarantine. Answers how many were sent.
   */
  deliverInvalid(runId: string, perSource: number, webhookBaseUrl: string): Promise<number>;
  close(): Promise<void>;
}

export interface DeliveryReport {
  /** Deliveries (duplicates included) per channel. */
  handedOver: Record<Channel, number>;
  webhooks: WebhookDeliveryReport;
  oltp: { paymentsInserted: number; paymentsUpdated: number; ledgerRowsInserted: number };
}

export async function startExternalParties(config: Config, seed: number): Promise<ExternalParties> {
  const feeds = parseGatewayFeeds(config.GATEWAY_FEEDS);
  const partnerConfig = parsePartnerApis(secretSetting(config, 'PARTNER_APIS'))[0];
  if (!partnerConfig) throw new Error('PARTNER_APIS lists no partner for the simulator to play');
  const webhookPartners = parsePartners(secretSetting(config, 'WEBHOOK_PARTNERS'));

  const gateways = feeds.map((f) =>
    createGatewayFeed({ region: f.region, gateway: f.gateway, port: Number(new URL(f.url).port) }),
  );
  const partnerApi = createPartnerApiSimulator({
    tokens: [partnerConfig.token],
    rateLimit: { burst: 20, perSecond: 10 },
    seed,
  });
  const oltp = createOltpPool(config);
  try {
    await Promise.all(gateways.map((g) => g.start()));
    const partnerUrl = new URL(partnerConfig.url);
    await partnerApi.listen(Number(partnerUrl.port), partnerUrl.hostname);
    await ensureOltpSchema(oltp);
  } catch (err) {
    await Promise.allSettled([...gateways.map((g) => g.stop()), partnerApi.close(), oltp.end()]);
    throw new Error(
      `could not start the simulated gateways/partner API on ${feeds.map((f) => f.url).join(', ')}, ${partnerConfig.url} (is another demo running?): ${errorMessage(err)}`,
    );
  }

  return {
    gateways,
    partnerApi,
    async deliver(sim, webhookBaseUrl) {
      const channels = splitByChannel(sim.deliveries);
      for (const g of gateways) g.publish(channels.gateway.filter((e) => e.region === g.region));
      partnerApi.publish(channels['partner-api']);
      // PayLink's API writes its own tables: created rows (CDC turns them into facts) and status updates.
      const [oltpResult, webhooks] = await Promise.all([
        recordInOltp(oltp, sim.deliveries),
        deliverPartnerWebhooks(webhookBaseUrl, encodePartnerWebhooks(channels.webhook, webhookPartners)),
      ]);
      return {
        handedOver: {
          cdc: channels.cdc.length,
          gateway: channels.gateway.length,
          webhook: channels.webhook.length,
          'partner-api': channels['partner-api'].length,
        },
        webhooks,
        oltp: oltpResult,
      };
    },
    async deliverInvalid(runId, perSource, webhookBaseUrl) {
      const webhooks: PartnerWebhook[] = [];
      for (let i = 0; i < perSource; i++) {
        const fact = (type: PaymentEvent['type'], fields: Record<string, unknown>) =>
          ({
            version: 1,
            // The gateway's key form (gateway:txnRef:type:seq); the other parties derive their own ids.
            idempotencyKey: `${gateways[i % gateways.length]!.gateway}:${runId}.invalid${i}:${type}:1`,
            paymentId: `${runId}-invalid-${type}-${i}`,
            merchantId: 'm-1',
            region: gateways[i % gateways.length]!.region,
            currency: 'EUR',
            occurredAt: new Date().toISOString(),
            source: 'gateway',
            sourceSequence: 1,
            type,
            ...fields,
          }) as PaymentEvent;
        // A gateway reporting a fractional amount: money is integer minor units.
        const gateway = gateways[i % gateways.length]!;
        const authorized = encodeGatewayEvent(fact('authorized', { amountMinor: 1000 }), gateway.gateway);
        gateway.appendRaw({ ...authorized, amount: { value: 10.5, currency: 'EUR' } });
        // A partner settlement whose gross is a decimal string.
        const settled = fact('settled', { settlementId: 'set1', captureId: 'cap1', amountMinor: 1000, feeMinor: 10 });
        partnerApi.publishRecords([
          { ...toPartnerSettlement(settled as FactOf<'settled'>), gross: { value: '10.00', currency: 'EUR' } },
        ]);
        // A partner webhook for a refund that does not say how much.
        const refund = fact('refunded', { refundId: 'ref1', amountMinor: 1 }) as FactOf<'refunded'>;
        const [webhook] = encodePartnerWebhooks([{ ...refund, region: 'eu-west' }], webhookPartners);
        const body = JSON.parse(webhook!.body) as { data: { object: Record<string, unknown> } };
        delete body.data.object['amountMinor'];
        webhooks.push(resignedStripeStyle(webhook!, JSON.stringify(body), webhookPartners));
      }
      await deliverPartnerWebhooks(webhookBaseUrl, webhooks);
      return perSource * 3;
    },
    async close() {
      await Promise.allSettled([...gateways.map((g) => g.stop()), partnerApi.close(), oltp.end()]);
    },
  };
}

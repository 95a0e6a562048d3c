import type { PaymentEvent } from '../contracts/payment-event';

// Which external path delivers each simulated fact, as at PayLink: its own API creates the payment
// (an OLTP row, captured by CDC), the regional gateway reports authorization, capture, void and
// failure, partners notify refunds and disputes by signed webhook, and settlements are polled from
// the partners' settlement API. One payment's facts therefore arrive by four paths, in any order.

export type Channel = 'cdc' | 'gateway' | 'webhook' | 'partner-api';

export function channelOf(event: PaymentEvent): Channel {
  switch (event.type) {
    case 'created':
      return 'cdc';
    case 'authorized':
    case 'captured':
    case 'voided':
    case 'failed':
      return 'gateway';
    case 'settled':
      return 'partner-api';
    case 'refunded':
    case 'chargeback_opened':
    case 'chargeback_won':
    case 'chargeback_lost':
      return 'webhook';
  }
}

/** Deliveries (duplicates and order kept) per channel. */
export function splitByChannel(deliveries: PaymentEvent[]): Record<Channel, PaymentEvent[]> {
  const out: Record<Channel, PaymentEvent[]> = { cdc: [], gateway: [], webhook: [], 'partner-api': [] };
  for (const e of deliveries) out[channelOf(e)].push(e);
  return out;
}

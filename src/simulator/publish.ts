import { factMessage } from '../contracts/envelope';
import type { PaymentEvent } from '../contracts/payment-event';
import { CURRENT_SCHEMAS } from '../quality/schema-registry';
import { type Producer, produce } from '../streams/kafka';

/** Publishes facts in delivery order to `topic`, keyed by paymentId (one partition per payment), acks=all. */
export async function publishPaymentEvents(
  producer: Producer,
  topic: string,
  events: PaymentEvent[],
  batchSize = 500,
): Promise<void> {
  for (let i = 0; i < events.length; i += batchSize) {
    const receivedAt = new Date().toISOString();
    await produce(
      producer,
      events.slice(i, i + batchSize).map((e) => factMessage(e, { receivedAt }, topic, CURRENT_SCHEMAS['payment-fact'])),
    );
  }
}

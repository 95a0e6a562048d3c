import type { Producer } from 'kafkajs';
import type { PaymentEvent } from '../contracts/payment-event';
import { TOPICS } from '../streams/kafka';

/** Publishes events in delivery order, keyed by paymentId (one partition per payment), acks=all. */
export async function publishPaymentEvents(producer: Producer, events: PaymentEvent[], batchSize = 500): Promise<void> {
  for (let i = 0; i < events.length; i += batchSize) {
    await producer.send({
      topic: TOPICS.paymentEvents,
      acks: -1,
      messages: events.slice(i, i + batchSize).map((e) => ({
        key: e.paymentId,
        value: JSON.stringify(e),
        headers: { 'idempotency-key': e.idempotencyKey, source: e.source },
      })),
    });
  }
}

import type { Client } from '@temporalio/client';
import type { Consumer, EachBatchPayload, KafkaMessage, Producer } from 'kafkajs';
import { type PaymentEvent, parsePaymentEvent } from '../contracts/payment-event';
import type { Logger } from '../logger';
import {
  PAYMENT_TASK_QUEUE,
  type PaymentWorkflowInput,
  paymentFactSignal,
  paymentWorkflow,
  paymentWorkflowId,
} from '../workflows/payment';
import { MerchantIdAttr, PaymentStatusAttr, RegionAttr } from '../workflows/search-attributes';
import { TOPICS } from './kafka';

// payment-router: Kafka payment facts → signalWithStart(PaymentWorkflow). Offsets are committed
// only after Temporal accepted the signal, so a crash re-delivers; the workflow dedups by key.

export const PAYMENT_ROUTER_GROUP = 'payment-router';

export interface PaymentRouterOptions {
  client: Client;
  consumer: Consumer;
  producer: Producer;
  log: Logger;
  closeAfterFinalMs: number;
  /** Payments signalled concurrently within one batch (facts of one payment stay in order). */
  concurrency?: number;
}

export interface RouterCounters {
  signalled: number;
  quarantined: number;
  batches: number;
}

export async function routeFact(
  client: Client,
  fact: PaymentEvent,
  closeAfterFinalMs: number,
  taskQueue = PAYMENT_TASK_QUEUE,
): Promise<void> {
  const input: PaymentWorkflowInput = {
    paymentId: fact.paymentId,
    merchantId: fact.merchantId,
    region: fact.region,
    closeAfterFinalMs,
  };
  await client.workflow.signalWithStart(paymentWorkflow, {
    workflowId: paymentWorkflowId(fact.paymentId),
    taskQueue,
    args: [input],
    signal: paymentFactSignal,
    signalArgs: [fact],
    typedSearchAttributes: [
      { key: PaymentStatusAttr, value: 'RECEIVED' },
      { key: MerchantIdAttr, value: fact.merchantId },
      { key: RegionAttr, value: fact.region },
    ],
  });
}

/** Quarantine keeps the original bytes, where they came from and why they were refused. */
export async function quarantine(
  producer: Producer,
  topic: string,
  partition: number,
  message: KafkaMessage,
  reason: string,
): Promise<void> {
  await producer.send({
    topic: TOPICS.quarantine,
    acks: -1,
    messages: [
      {
        key: message.key,
        value: message.value,
        headers: {
          ...message.headers,
          'quarantine-reason': reason,
          'source-topic': topic,
          'source-partition': String(partition),
          'source-offset': message.offset,
        },
      },
    ],
  });
}

export async function runPaymentRouter(options: PaymentRouterOptions): Promise<RouterCounters> {
  const { client, consumer, producer, log } = options;
  const concurrency = options.concurrency ?? 32;
  const counters: RouterCounters = { signalled: 0, quarantined: 0, batches: 0 };

  await consumer.subscribe({ topic: TOPICS.paymentEvents, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: 3,
    eachBatch: async (payload: EachBatchPayload) => {
      const { batch } = payload;
      const byPayment = new Map<string, PaymentEvent[]>();
      for (const message of batch.messages) {
        const parsed = parsePaymentEvent(message.value);
        if (!parsed.ok) {
          await quarantine(producer, batch.topic, batch.partition, message, parsed.reason);
          counters.quarantined += 1;
          log.warn('quarantined payment event', {
            partition: batch.partition,
            offset: message.offset,
            reason: parsed.reason,
          });
          continue;
        }
        const list = byPayment.get(parsed.value.paymentId) ?? [];
        list.push(parsed.value);
        byPayment.set(parsed.value.paymentId, list);
      }
      const groups = [...byPayment.values()];
      let next = 0;
      const workers = Array.from({ length: Math.min(concurrency, groups.length) }, async () => {
        while (next < groups.length && payload.isRunning() && !payload.isStale()) {
          const facts = groups[next++]!;
          for (const fact of facts) {
            await routeFact(client, fact, options.closeAfterFinalMs);
            counters.signalled += 1;
          }
        }
      });
      await Promise.all(workers);
      if (!payload.isRunning() || payload.isStale()) return; // not all signalled: leave offsets for redelivery
      const last = batch.messages[batch.messages.length - 1];
      if (last) {
        payload.resolveOffset(last.offset);
        // Committed offset = next message to read; only now that every fact of the batch is accepted.
        await consumer.commitOffsets([
          { topic: batch.topic, partition: batch.partition, offset: (BigInt(last.offset) + 1n).toString() },
        ]);
      }
      await payload.heartbeat();
      counters.batches += 1;
    },
  });
  return counters;
}

import type { Consumer, EachBatchPayload, Message, Producer } from 'kafkajs';
import { type ParseResult, PaymentEvent } from '../../contracts/payment-event';
import type { Logger } from '../../logger';
import { TOPICS, commitBatch, runBatches, quarantineMessage } from '../../streams/kafka';
import { type ChangeEvent, parseDebeziumEnvelope } from './debezium';
import { describeIssues } from '../../contracts/issues';

// The CDC normalizer: Debezium-format change events (ours or a real Debezium's) → payment facts.
// A payments row that appears (op c, or r from a snapshot) is PayLink's `created` fact; every other
// change is state for reconciliation, not a fact. Offsets are committed once the facts are acknowledged.

export const CDC_TOPICS = [TOPICS.cdcPayments, TOPICS.cdcLedgerEntries] as const;

export type Normalized =
  { kind: 'fact'; fact: PaymentEvent } | { kind: 'quarantine'; reason: string } | { kind: 'skip'; reason: string };

/** Maps one change of `*.payments` that creates a row onto the `created` fact. */
export function createdFactOf(change: ChangeEvent): ParseResult<PaymentEvent> {
  const row = change.after ?? {};
  const parsed = PaymentEvent.safeParse({
    version: 1,
    type: 'created',
    idempotencyKey: change.idempotencyKey,
    paymentId: row.id,
    merchantId: row.merchant_id,
    region: row.region,
    currency: row.currency,
    amountMinor: row.amount_minor,
    occurredAt: row.created_at,
    source: 'cdc',
    sourceSequence: 0,
  });
  if (parsed.success) return { ok: true, value: parsed.data };
  // Name the row's columns, not the fact's fields: that is what an operator can look up.
  const column: Record<string, string> = {
    paymentId: 'id',
    merchantId: 'merchant_id',
    amountMinor: 'amount_minor',
    occurredAt: 'created_at',
  };
  return {
    ok: false,
    reason: `${change.table} row → created fact: ${describeIssues(parsed.error, {
      prefix: 'after',
      rename: (field) => column[field] ?? field,
    })}`,
  };
}

export function normalizeChange(key: Buffer | null, value: Buffer | null): Normalized {
  const parsed = parseDebeziumEnvelope(key, value);
  if (parsed.ok === 'ignored') return { kind: 'skip', reason: parsed.reason };
  if (parsed.ok === false)
    return { kind: 'quarantine', reason: `not a usable Debezium change event: ${parsed.reason}` };
  const change = parsed.change;
  if (!change.table.endsWith('.payments')) return { kind: 'skip', reason: `${change.table}: not a payment fact` };
  if (change.op !== 'create' && change.op !== 'snapshot') {
    return { kind: 'skip', reason: `${change.op} of a payment row: state for reconciliation, not a fact` };
  }
  const fact = createdFactOf(change);
  return fact.ok ? { kind: 'fact', fact: fact.value } : { kind: 'quarantine', reason: fact.reason };
}

export interface CdcNormalizerOptions {
  consumer: Consumer;
  producer: Producer;
  log: Logger;
}

export async function runCdcNormalizer(options: CdcNormalizerOptions): Promise<void> {
  const { consumer, producer, log } = options;
  // From the start when the group has no offsets: a new group must not miss a creation.
  for (const topic of CDC_TOPICS) await consumer.subscribe({ topic, fromBeginning: true });
  await runBatches(consumer, async (payload: EachBatchPayload) => {
    const { batch } = payload;
    const facts: Message[] = [];
    const quarantined: Message[] = [];
    for (const message of batch.messages) {
      const result = normalizeChange(message.key, message.value);
      if (result.kind === 'skip') continue;
      if (result.kind === 'fact') {
        facts.push({
          key: result.fact.paymentId,
          value: JSON.stringify(result.fact),
          headers: { 'idempotency-key': result.fact.idempotencyKey, source: 'cdc' },
        });
        continue;
      }
      quarantined.push(quarantineMessage(batch.topic, batch.partition, message, result.reason));
      log.warn('quarantined change event', {
        topic: batch.topic,
        partition: batch.partition,
        offset: message.offset,
        reason: result.reason,
      });
    }
    const topicMessages = [
      ...(facts.length > 0 ? [{ topic: TOPICS.paymentEvents, messages: facts }] : []),
      ...(quarantined.length > 0 ? [{ topic: TOPICS.quarantine, messages: quarantined }] : []),
    ];
    if (topicMessages.length > 0) await producer.sendBatch({ acks: -1, topicMessages });
    await commitBatch(consumer, payload); // only now that Kafka acknowledged every fact of the batch
  });
}

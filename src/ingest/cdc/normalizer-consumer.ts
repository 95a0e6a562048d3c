import { HEADERS, consumedQuarantineMessage, factMessage, readFromHeaders } from '../../contracts/envelope';
import { type ParseResult, PaymentEvent } from '../../contracts/payment-event';
import type { Logger } from '../../logger';
import { CURRENT_SCHEMAS } from '../../quality/schema-registry';
import { type BatchHandler, type Producer, type TopicRecord, type TopicSet, produce } from '../../streams/kafka';
import { type ChangeEvent, parseDebeziumEnvelope } from './debezium';
import { describeIssues } from '../../contracts/issues';

// The CDC normalizer: Debezium-format change events (ours or a real Debezium's) → payment facts.
// A payments row that appears (op c, or r from a snapshot) is PayLink's `created` fact; every other
// change is state for reconciliation, not a fact. Offsets are committed once the facts are acknowledged.

/** The change topics the normalizer reads. */
export const cdcTopicsOf = (topics: TopicSet): string[] => [topics.cdcPayments, topics.cdcLedgerEntries];

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

export interface CdcNormalizerDeps {
  producer: Producer;
  topics: Pick<TopicSet, 'paymentEvents' | 'quarantine'>;
  log: Logger;
}

/** The normalizer's batch (run by runConsumer on the change topics): committed once Kafka acknowledged its facts. */
export function cdcNormalizerBatches({ producer, topics, log }: CdcNormalizerDeps): BatchHandler {
  return async (batch) => {
    const out: TopicRecord[] = [];
    for (const message of batch.messages) {
      const result = normalizeChange(message.key, message.value);
      if (result.kind === 'skip') continue;
      if (result.kind === 'fact') {
        // The change's arrival and trace id as the reader stamped them (a real Debezium stamps neither).
        const receivedAt = message.headers[HEADERS.receivedAt] ?? new Date(Number(message.timestamp)).toISOString();
        const traceId = message.headers[HEADERS.traceId];
        const fact = factMessage(
          result.fact,
          { receivedAt, traceId },
          topics.paymentEvents,
          CURRENT_SCHEMAS['payment-fact'],
        );
        // The change event it came from, so the inbox and Snowflake can name the raw record (and its archive object).
        const from = { topic: batch.topic, partition: batch.partition, offset: message.offset };
        out.push({ ...fact, headers: { ...fact.headers, ...readFromHeaders(from) } });
        continue;
      }
      out.push(consumedQuarantineMessage(topics.quarantine, batch, message, result.reason));
      log.warn('quarantined change event', {
        topic: batch.topic,
        partition: batch.partition,
        offset: message.offset,
        reason: result.reason,
      });
    }
    await produce(producer, out);
    return 'commit'; // only now that Kafka acknowledged every fact of the batch
  };
}

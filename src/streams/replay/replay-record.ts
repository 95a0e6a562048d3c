import { HEADERS, isUnmappedGatewayKey, parseSchemaHeader } from '../../contracts/envelope';
import { gatewayEventToFact } from '../../contracts/gateway-event';
import { partnerSettlementToFact } from '../../contracts/partner-api';
import { WEBHOOK_RAW_SCHEMAS, type WebhookScheme, webhookItemToFact } from '../../contracts/partner-webhooks';
import type { ParseResult, PaymentEvent } from '../../contracts/payment-event';
import { type Normalized, normalizeChange } from '../../ingest/cdc/normalizer-consumer';
import type { RestoredRecord } from '../archiver/layout';
import type { TopicSet } from '../kafka';
import type { ReplaySource } from '../../workflows/backfill';

// Replay's normalizer: one archived raw record → the fact the live edge mapped it to, its quarantine
// reason, or a skip. Each source runs the live path's own mapping function on the record's (already
// tokenized) value; the identity the live edge had from its config (partner, gateway, region) comes
// from the record's envelope headers, so the fact's idempotency key is the live one and the inbox
// (payments.facts) drops it when it was routed before.

/** The archived raw topics of a backfill's source. */
export function replayTopicsOf(topics: TopicSet, source: ReplaySource): string[] {
  switch (source) {
    case 'webhooks':
      return [topics.rawWebhooks];
    case 'gateways':
      return [topics.rawGateways];
    case 'partner':
      return [topics.rawPartnerApi];
    case 'cdc':
      return [topics.cdcPayments, topics.cdcLedgerEntries];
  }
}

export type Replayed = Normalized;

const headerOf = (record: RestoredRecord, name: string): string | undefined => {
  for (const [n, v] of record.headers) if (n === name) return v.toString('utf8');
  return undefined;
};

/** The `index`-th `:`-separated segment of an idempotency key (partner and gateway ids are [a-z0-9-]). */
const keySegment = (key: string | undefined, index: number): string | undefined => {
  const parts = key?.split(':');
  return parts !== undefined && parts.length > index + 1 && parts[index] !== '' ? parts[index] : undefined;
};

function jsonValue(record: RestoredRecord): ParseResult<unknown> {
  if (record.value === null) return { ok: false, reason: 'archived record has no value' };
  try {
    return { ok: true, value: JSON.parse(record.value.toString('utf8')) as unknown };
  } catch (err) {
    return { ok: false, reason: `archived value is not JSON: ${(err as Error).message}` };
  }
}

/**
 * The live edge's mapping of one raw record. A fact whose key differs from the record's
 * `idempotency-key` header is quarantined: the replayed mapping must be the one the edge ran. A record the
 * edge quarantined maps to a fact only once its contract was fixed; that fact is new to the inbox.
 */
export function replayRecord(source: ReplaySource, record: RestoredRecord): Replayed {
  if (source === 'cdc') {
    // CDC raw records are Debezium change events; the normalizer maps them, live and here alike.
    return normalizeChange(record.key, record.value);
  }
  const key = headerOf(record, HEADERS.idempotencyKey);
  const region = headerOf(record, HEADERS.region);
  const mapped = ((): ParseResult<PaymentEvent> => {
    const value = jsonValue(record);
    if (!value.ok) return value;
    if (region === undefined) return { ok: false, reason: `archived record has no ${HEADERS.region} header` };
    if (source === 'webhooks') {
      // webhook:<partner>:<event id>; the scheme is the raw schema the edge stamped.
      const partnerId = keySegment(key, 1);
      const schema = parseSchemaHeader(headerOf(record, HEADERS.schema) ?? '')?.name;
      const scheme = (Object.keys(WEBHOOK_RAW_SCHEMAS) as WebhookScheme[]).find(
        (s) => WEBHOOK_RAW_SCHEMAS[s] === schema,
      );
      const receivedAt = headerOf(record, HEADERS.receivedAt);
      if (partnerId === undefined) return { ok: false, reason: `no partner in ${HEADERS.idempotencyKey} "${key}"` };
      if (scheme === undefined) return { ok: false, reason: `${HEADERS.schema} "${schema}" is no webhook scheme` };
      if (receivedAt === undefined) return { ok: false, reason: `archived record has no ${HEADERS.receivedAt} header` };
      return webhookItemToFact({ id: partnerId, region, scheme }, value.value, receivedAt);
    }
    if (source === 'gateways') {
      // <gateway>:<txn ref>:<fact type>:<seq> (or <gateway>:event:… when it mapped to none).
      const gateway = keySegment(key, 0);
      if (gateway === undefined) return { ok: false, reason: `no gateway in ${HEADERS.idempotencyKey} "${key}"` };
      return gatewayEventToFact({ gateway, region }, value.value);
    }
    // partner:<partner>:<record id>; the region header is the record's, else the partner's default.
    const partnerId = keySegment(key, 1);
    if (partnerId === undefined) return { ok: false, reason: `no partner in ${HEADERS.idempotencyKey} "${key}"` };
    return partnerSettlementToFact(partnerId, region, value.value);
  })();
  if (!mapped.ok) return { kind: 'quarantine', reason: mapped.reason };
  // A gateway event the edge could not map has another key; mapping it now (after a contract fix) is new.
  const remapped = source === 'gateways' && key !== undefined && isUnmappedGatewayKey(key);
  if (key !== undefined && !remapped && mapped.value.idempotencyKey !== key) {
    return {
      kind: 'quarantine',
      reason: `replay mapped to ${mapped.value.idempotencyKey}, the edge recorded ${key}: not the live mapping`,
    };
  }
  return { kind: 'fact', fact: mapped.value };
}

import { createHash } from 'node:crypto';
import type { EventSource, ParseResult, PaymentEvent } from './payment-event';

// PayLink's Kafka envelope: what every message on PayLink's topics carries, whichever edge wrote it.
// Raw, fact and quarantine messages of every path (webhook, gateway, partner API, CDC) get the same
// headers, so the archive, the router, the quality consumer and replay never ask where an event came in.

/** Header names of the envelope. */
export const HEADERS = {
  /** The upstream fact's identity (BRIEF §5): inbox key, workflow dedup key, ledger column. */
  idempotencyKey: 'idempotency-key',
  /** 32 hex digits that follow the event to its ledger row (ledger.journal_entries.trace_id). */
  traceId: 'trace-id',
  /** The edge it came through: webhook | gateway | partner | cdc. */
  source: 'source',
  /** `<name>@<version>` of the registered schema the value follows (src/quality/schema-registry.ts). */
  schema: 'schema',
  /** When PayLink's edge received it (ISO 8601); the same on an event's raw, fact and quarantine messages. */
  receivedAt: 'received-at',
  /** The payment's region, on every message whose event names one. */
  region: 'region',
  /** Quarantine only: why it was refused, in the sender's words. */
  quarantineReason: 'quarantine-reason',
  /**
   * Where the message this one came from was read: on a consumer's quarantine message, the refused one;
   * on a fact the CDC normalizer derived, the change event (raw record) it was derived from.
   */
  sourceTopic: 'source-topic',
  sourcePartition: 'source-partition',
  sourceOffset: 'source-offset',
} as const;

/** Carried by every message of every path; `region` too wherever the event names one. */
export const ENVELOPE_HEADERS = [
  HEADERS.idempotencyKey,
  HEADERS.traceId,
  HEADERS.source,
  HEADERS.schema,
  HEADERS.receivedAt,
] as const;

export type EnvelopeHeaders = Record<string, string>;

/** A registered schema at one version; its header is `<name>@<version>`. */
export interface SchemaRef {
  name: string;
  version: number;
}

const SCHEMA_HEADER = /^([a-z0-9][a-z0-9-]{0,99})@([1-9][0-9]{0,5})$/;

export function schemaHeader(ref: SchemaRef): string {
  return `${ref.name}@${ref.version}`;
}

export function parseSchemaHeader(header: string): SchemaRef | undefined {
  const m = SCHEMA_HEADER.exec(header.trim());
  return m ? { name: m[1]!, version: Number(m[2]) } : undefined;
}

// Idempotency keys (BRIEF §5): derived from what the source itself says, so a re-send, a re-poll or a
// re-read after a crash gives the same key.

/** webhook + partner + partner event id. */
export function webhookIdempotencyKey(partnerId: string, eventId: string): string {
  return `webhook:${partnerId}:${eventId}`;
}

/** gateway + transaction ref + fact type + the gateway's sequence of that fact (gateway ids start `gw-`). */
export function gatewayIdempotencyKey(gateway: string, txnRef: string, factType: string, factSeq: number): string {
  return `${gateway}:${txnRef}:${factType}:${factSeq}`;
}

/** A gateway event that maps to no fact: its event id when usable, else its position in the gateway's feed. */
export function unmappedGatewayIdempotencyKey(gateway: string, eventId: unknown, position: number): string {
  return typeof eventId === 'string' && eventId.length > 0 && eventId.length <= 200
    ? `${gateway}:event:${eventId}`
    : `${gateway}:position:${position}`;
}

/** Whether a gateway key is one unmappedGatewayIdempotencyKey gave (the edge mapped that event to no fact). */
export function isUnmappedGatewayKey(key: string): boolean {
  return /^[a-z0-9-]+:(event|position):/.test(key);
}

/** partner + the partner's record id, whatever page or retry delivers it. */
export function partnerIdempotencyKey(partnerId: string, recordId: string): string {
  return `partner:${partnerId}:${recordId}`;
}

/** What a primary-key column holds, as the reader's rows and Debezium's keys carry it. */
export type PrimaryKeyValue = string | number | bigint | boolean | null;

/**
 * database.table + primary key + LSN. Snapshot rows share the snapshot's LSN, so the primary key is what
 * tells them apart; null (a truncate, which has no row) keys the whole table at that LSN.
 */
export function cdcIdempotencyKey(
  db: string,
  table: string,
  primaryKey: Readonly<Record<string, PrimaryKeyValue>> | null,
  lsn: string,
): string {
  return `cdc:${db}.${table}:${primaryKey === null ? 'truncate' : canonicalPrimaryKey(primaryKey)}:${lsn}`;
}

/** Columns sorted by name and URI-encoded so neither column order nor `,` `=` `:` in values can collide. */
function canonicalPrimaryKey(primaryKey: Readonly<Record<string, PrimaryKeyValue>>): string {
  return Object.keys(primaryKey)
    .sort()
    .map((column) => `${encodeURIComponent(column)}=${encodeURIComponent(String(primaryKey[column]))}`)
    .join(',');
}

export const TRACE_ID_PATTERN = /^[0-9a-f]{32}$/;

/**
 * An event's trace id: the first 128 bits of sha256(idempotency key), a W3C trace-id's size. Derived, not
 * drawn: a re-send, a spool drain or a replay of the same fact carries the same trace id without state.
 */
export function traceIdOf(idempotencyKey: string): string {
  return createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 32);
}

/** A message for one of PayLink's topics as an edge writes it (also what the webhook spool keeps). */
export interface EdgeMessage {
  topic: string;
  /** The payment id: one partition per payment. Null when an unusable event names none. */
  key: string | null;
  value: Buffer;
  headers: EnvelopeHeaders;
}

/** The three topics an edge writes to. */
export interface EdgeTopics {
  raw: string;
  facts: string;
  quarantine: string;
}

/** Who an event is, wherever it travels: the same on its raw, fact and quarantine messages. */
export interface EventIdentity {
  source: EventSource;
  idempotencyKey: string;
  receivedAt: string;
  region?: string;
  /** Carried from upstream when it already has one; else derived from the idempotency key. */
  traceId?: string;
}

function envelopeHeaders(id: EventIdentity, schema: SchemaRef): EnvelopeHeaders {
  return {
    [HEADERS.idempotencyKey]: id.idempotencyKey,
    [HEADERS.traceId]: id.traceId ?? traceIdOf(id.idempotencyKey),
    [HEADERS.source]: id.source,
    [HEADERS.schema]: schemaHeader(schema),
    [HEADERS.receivedAt]: id.receivedAt,
    ...(id.region !== undefined && { [HEADERS.region]: id.region }),
  };
}

/** An event as received (tokenized) that is not mapped to a fact here: a CDC change, which the normalizer maps later. */
export function rawMessage(
  topic: string,
  key: string | null,
  value: Buffer,
  identity: EventIdentity,
  schema: SchemaRef,
): EdgeMessage {
  return { topic, key, value, headers: envelopeHeaders(identity, schema) };
}

/** What the raw event tells of an event that maps to no fact: its region, Kafka key and idempotency key. */
export interface Unmapped {
  region?: string;
  key: string | null;
  idempotencyKey: string;
}

/**
 * Writes what an edge produces for one received (tokenized) event: its raw message, then the fact it maps
 * to or, when it maps to none, its quarantine message with the reason. A mapped event takes its identity
 * from its fact; `unmapped` is used only when there is none.
 */
export type EdgeEnvelope = (
  receivedAt: string,
  event: unknown,
  mapped: ParseResult<PaymentEvent>,
  unmapped: Unmapped,
) => [raw: EdgeMessage, next: EdgeMessage];

/** One edge's envelope: its source, the topics it writes and the registered schemas of its raw events and facts. */
export function edgeEnvelope(
  source: EventSource,
  topics: EdgeTopics,
  schemas: { raw: SchemaRef; fact: SchemaRef },
): EdgeEnvelope {
  return (receivedAt, event, mapped, unmapped) => {
    const { key, ...id } = mapped.ok
      ? { key: mapped.value.paymentId, idempotencyKey: mapped.value.idempotencyKey, region: mapped.value.region }
      : unmapped;
    const identity = { ...id, source, receivedAt };
    const raw = rawMessage(topics.raw, key, Buffer.from(JSON.stringify(event)), identity, schemas.raw);
    if (!mapped.ok) {
      const headers = { ...raw.headers, [HEADERS.quarantineReason]: mapped.reason };
      return [raw, { ...raw, topic: topics.quarantine, headers }];
    }
    return [raw, factMessage(mapped.value, identity, topics.facts, schemas.fact)];
  };
}

/** A payment fact on the facts topic; its value carries the trace id on to the workflow and the ledger row. */
export function factMessage(
  fact: PaymentEvent,
  arrival: { receivedAt: string; traceId?: string },
  topic: string,
  schema: SchemaRef,
): EdgeMessage {
  const identity = {
    source: fact.source,
    idempotencyKey: fact.idempotencyKey,
    region: fact.region,
    receivedAt: arrival.receivedAt,
    // Carried when the upstream message had one (the CDC reader's), else derived here.
    traceId:
      arrival.traceId !== undefined && TRACE_ID_PATTERN.test(arrival.traceId)
        ? arrival.traceId
        : traceIdOf(fact.idempotencyKey),
  };
  // Set here, over anything the sender put in the fact: the trace id is PayLink's, derived at the edge.
  const value = Buffer.from(JSON.stringify({ ...fact, traceId: identity.traceId }));
  return { topic, key: fact.paymentId, value, headers: envelopeHeaders(identity, schema) };
}

/** A message as a consumer read it (headers decoded as UTF-8 text): enough to quarantine it as it was. */
export interface ReadMessage {
  key: Buffer | null;
  value: Buffer | null;
  headers: EnvelopeHeaders;
  offset: string;
}

/** A Kafka record's place: topic, partition and offset (a decimal string: offsets are 64-bit). */
export interface KafkaCoordinates {
  topic: string;
  partition: number;
  offset: string;
}

/** The source-topic/partition/offset headers naming where a message's origin was read. */
export function readFromHeaders(at: KafkaCoordinates): EnvelopeHeaders {
  return {
    [HEADERS.sourceTopic]: at.topic,
    [HEADERS.sourcePartition]: String(at.partition),
    [HEADERS.sourceOffset]: at.offset,
  };
}

/** The origin those headers name, or undefined when they are absent or not coordinates. */
export function readFromOf(headers: EnvelopeHeaders): KafkaCoordinates | undefined {
  const topic = headers[HEADERS.sourceTopic];
  const partition = headers[HEADERS.sourcePartition];
  const offset = headers[HEADERS.sourceOffset];
  if (!topic || !partition || !offset || !/^\d{1,10}$/.test(partition) || !/^\d{1,19}$/.test(offset)) return undefined;
  return { topic, partition: Number(partition), offset };
}

/**
 * A consumed message a consumer refuses: its own key, bytes and envelope headers (as the edge wrote them),
 * plus why and where it was read. Never dropped: the quarantine topic is where an operator looks.
 */
export function consumedQuarantineMessage(
  quarantineTopic: string,
  from: { topic: string; partition: number },
  message: ReadMessage,
  reason: string,
): { topic: string; key: Buffer | null; value: Buffer | null; headers: EnvelopeHeaders } {
  return {
    topic: quarantineTopic,
    key: message.key,
    value: message.value,
    headers: {
      ...message.headers,
      [HEADERS.quarantineReason]: reason,
      ...readFromHeaders({ topic: from.topic, partition: from.partition, offset: message.offset }),
    },
  };
}

import { createHash } from 'node:crypto';
import { type EdgeMessage, HEADERS } from '../contracts/envelope';
import { type Logger, errorMessage } from '../logger';
import type { KafkaTransaction, TransactionalProducer } from './kafka';

// The publish step every edge hands its events to (docs/edge.md, "Publishing"). A source event is what one
// upstream fact becomes at the edge: its raw record, then its fact or its quarantine record. One call is one
// Kafka transaction, so an event's records land together or not at all (consumers read committed).
// An event that cannot be produced (too large after tokenization, or refused by the broker) never blocks
// the others: its records go to S3 under a deterministic key (a claim check) and a quarantine record that
// names the reason and the object takes their place, in the same transaction as everything else.

/** What one upstream fact becomes at an edge: its raw record first, then its fact or quarantine record. */
export interface SourceEvent {
  records: EdgeMessage[];
}

// ---- Classifying produce errors -------------------------------------------------------------------

/**
 * retriable = the broker or the network (spool it, try again later); poison = this record can never be
 * produced (quarantine it); producer = this producer's state is broken (recreate it, then retry).
 */
export type ProduceErrorClass = 'retriable' | 'poison' | 'producer';

/** Broker answers that refuse the records themselves: resending them can never succeed. */
const POISON_TYPES = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
  'INVALID_TIMESTAMP',
  'UNSUPPORTED_FOR_MESSAGE_FORMAT',
]);
/** Broker answers that mean this producer's id, epoch or sequence numbers can no longer be used. */
const PRODUCER_TYPES = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'DUPLICATE_SEQUENCE_NUMBER',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_PRODUCER_ID_MAPPING',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_TXN_STATE',
  'TRANSACTION_COORDINATOR_FENCED',
  'PRODUCER_FENCED',
]);
/** Client-side refusals of a producer whose transaction state is stuck, and PRODUCER_FENCED (code 90), which
 * kafkajs 2.2 has no name for: it reports "Unknown error code 90". */
const PRODUCER_MESSAGES = [
  /^Unknown error code 90$/,
  /already an ongoing transaction/i,
  /Transaction state exception/i,
  /Cannot continue to use transaction once ended/i,
  /producer is disconnecting/i,
];
/** Client-side refusals of the records themselves (kafkajs validates before sending). */
const POISON_MESSAGES = [/Invalid message without value/i, /Invalid messages array/i, /^Invalid topic$/];

interface ErrorShape {
  name?: unknown;
  type?: unknown;
  code?: unknown;
  message?: unknown;
  cause?: unknown;
  errors?: unknown;
}

/** The error, what it wraps (kafkajs' NumberOfRetriesExceeded and NonRetriable wrap the last cause), and aggregates. */
function errorChain(err: unknown): ErrorShape[] {
  const chain: ErrorShape[] = [];
  const seen = new Set<unknown>();
  const walk = (e: unknown): void => {
    if (typeof e !== 'object' || e === null || seen.has(e) || chain.length > 20) return;
    seen.add(e);
    const shape = e as ErrorShape;
    chain.push(shape);
    walk(shape.cause);
    if (Array.isArray(shape.errors)) for (const inner of shape.errors) walk(inner);
  };
  walk(err);
  return chain;
}

/** Which of the three a produce, commit or abort failure is. Unknown failures are retriable: spooled, never dropped. */
export function classifyProduceError(err: unknown): ProduceErrorClass {
  const chain = errorChain(err);
  const message = (e: ErrorShape): string => (typeof e.message === 'string' ? e.message : '');
  if (chain.some((e) => PRODUCER_TYPES.has(String(e.type)) || PRODUCER_MESSAGES.some((re) => re.test(message(e))))) {
    return 'producer';
  }
  if (
    chain.some(
      (e) =>
        POISON_TYPES.has(String(e.type)) ||
        POISON_MESSAGES.some((re) => re.test(message(e))) ||
        // The record encoder's own refusal (a header or key of the wrong type): the same record fails every time.
        e instanceof TypeError,
    )
  ) {
    return 'poison';
  }
  return 'retriable';
}

// ---- Sizing ---------------------------------------------------------------------------------------

/** Below the broker's message.max.bytes (1,048,588 by default; src/stack/kafka-service.ts does not change it). */
export const DEFAULT_MAX_RECORD_BYTES = 1_000_000;
/** A record batch's fixed header (Kafka's v2 format): every produce carries at least one. */
export const RECORD_BATCH_OVERHEAD = 61;
// Per record: attributes, timestamp/offset deltas, lengths as varints (at most 5 bytes each, 10 for a delta).
const RECORD_OVERHEAD = 36;
const HEADER_OVERHEAD = 10;

/** What `record` adds to a record batch, an upper bound (the varints counted at their longest). */
export function recordBytes(record: Pick<EdgeMessage, 'key' | 'value' | 'headers'>): number {
  let bytes = RECORD_OVERHEAD + (record.key === null ? 0 : Buffer.byteLength(record.key)) + record.value.length;
  for (const [name, value] of Object.entries(record.headers)) {
    bytes += HEADER_OVERHEAD + Buffer.byteLength(name) + Buffer.byteLength(value);
  }
  return bytes;
}

/** Every record of the event, as produced. */
export function eventBytes(event: SourceEvent): number {
  return event.records.reduce((n, r) => n + recordBytes(r), 0);
}

const idempotencyKeyOf = (event: SourceEvent): string =>
  event.records[0]?.headers[HEADERS.idempotencyKey] ?? 'an event without an idempotency key';

/** Why `event` cannot be produced with records of at most `maxRecordBytes`, or undefined when it can. */
export function oversizeReason(event: SourceEvent, maxRecordBytes: number): string | undefined {
  const largest = event.records.reduce<EdgeMessage | undefined>(
    (big, r) => (big && recordBytes(big) >= recordBytes(r) ? big : r),
    undefined,
  );
  if (!largest || recordBytes(largest) + RECORD_BATCH_OVERHEAD <= maxRecordBytes) return undefined;
  return (
    `event ${idempotencyKeyOf(event)} is ${eventBytes(event)} bytes as produced (after tokenization); its ` +
    `${largest.topic} record is ${recordBytes(largest) + RECORD_BATCH_OVERHEAD} bytes, over the ` +
    `${maxRecordBytes}-byte record limit`
  );
}

/** Consecutive groups of `records` of at most `maxBytes` each (one record alone may be up to the limit). */
function chunksOf(records: readonly EdgeMessage[], maxBytes: number): EdgeMessage[][] {
  const chunks: EdgeMessage[][] = [];
  let current: EdgeMessage[] = [];
  let bytes = RECORD_BATCH_OVERHEAD;
  for (const r of records) {
    const size = recordBytes(r);
    if (current.length > 0 && bytes + size > maxBytes) {
      chunks.push(current);
      current = [];
      bytes = RECORD_BATCH_OVERHEAD;
    }
    current.push(r);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

// ---- Claim checks ---------------------------------------------------------------------------------

/** Where the bodies of events that cannot go on Kafka are kept (S3: src/stores/claim-checks.ts). */
export interface ClaimCheckStore {
  /** Stores `body` under `key` (the same key always gets the same bytes) and answers where, as a URI. */
  put(key: string, body: Buffer): Promise<string>;
}

/** The header on a quarantine record whose event's records are in the claim-check store. */
export const CLAIM_CHECK_HEADER = 'claim-check';
/** The schema header of a quarantine record's value when it is a claim check (its body is elsewhere). */
export const CLAIM_CHECK_SCHEMA = 'claim-check@1';

// Hex digits mapped to g–p: a hex digest can hold a Luhn-valid 12+ digit run, which the PII scan would
// rightly flag in the quarantine header and the S3 key that carry it.
const sha256 = (data: string | Buffer): string =>
  createHash('sha256')
    .update(data)
    .digest('hex')
    .replace(/[0-9]/g, (d) => 'ghijklmnop'[Number(d)]!);

/** The stored object: the event's records as they would have been produced (values are UTF-8 JSON text). */
function claimCheckBody(event: SourceEvent): Buffer {
  return Buffer.from(
    JSON.stringify({
      version: 1,
      idempotencyKey: idempotencyKeyOf(event),
      records: event.records.map((r) => ({
        topic: r.topic,
        key: r.key,
        headers: r.headers,
        value: r.value.toString(),
      })),
    }),
  );
}

/**
 * claim-check/<source>/<day received>/<sha256(idempotency key)>-<sha256(body)>.json: deterministic, so a
 * drain that runs twice writes the same object, and findable from the event's identity.
 */
export function claimCheckKey(event: SourceEvent, body: Buffer): string {
  const headers = event.records[0]?.headers ?? {};
  const source = (headers[HEADERS.source] ?? 'unknown').replace(/[^a-z0-9-]/g, '_');
  const day = /^\d{4}-\d{2}-\d{2}/.exec(headers[HEADERS.receivedAt] ?? '')?.[0] ?? 'unknown-day';
  return `claim-check/${source}/${day}/${sha256(idempotencyKeyOf(event)).slice(0, 32)}-${sha256(body).slice(0, 16)}.json`;
}

/** The quarantine record that replaces an event whose records are in the store at `uri`. */
function claimCheckRecord(event: SourceEvent, quarantineTopic: string, reason: string, uri: string): EdgeMessage {
  const first = event.records[0];
  const headers = {
    ...(first?.headers ?? {}),
    [HEADERS.schema]: CLAIM_CHECK_SCHEMA,
    [HEADERS.quarantineReason]: `${reason}; its records are at ${uri}`,
    [CLAIM_CHECK_HEADER]: uri,
  };
  const value = Buffer.from(
    JSON.stringify({
      claimCheck: uri,
      reason,
      records: event.records.map((r) => ({
        topic: r.topic,
        key: r.key,
        bytes: recordBytes(r),
        schema: r.headers[HEADERS.schema],
      })),
    }),
  );
  return { topic: quarantineTopic, key: first?.key ?? null, value, headers };
}

// ---- The spool's form of an event -----------------------------------------------------------------

/** Not a valid Kafka topic name ('#'), so a spooled event can never be mistaken for a record. */
const SPOOLED_EVENT_TOPIC = '#source-event@1';

/** One spool record for the whole event: a frame is fsynced and checksummed whole, so are its records. */
export function spoolRecordOf(event: SourceEvent): EdgeMessage {
  const parts: Buffer[] = [];
  const u32 = (n: number): Buffer => {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(n);
    return b;
  };
  const bytes = (b: Buffer | null): void => {
    if (b === null) {
      parts.push(u32(0xffffffff));
      return;
    }
    parts.push(u32(b.length), b);
  };
  parts.push(u32(event.records.length));
  for (const r of event.records) {
    bytes(Buffer.from(r.topic));
    bytes(r.key === null ? null : Buffer.from(r.key));
    bytes(Buffer.from(JSON.stringify(r.headers)));
    bytes(r.value);
  }
  return { topic: SPOOLED_EVENT_TOPIC, key: event.records[0]?.key ?? null, headers: {}, value: Buffer.concat(parts) };
}

function decodeSpooledEvent(value: Buffer): SourceEvent {
  let at = 0;
  const u32 = (): number => {
    if (at + 4 > value.length) throw new Error(`spooled event ends at byte ${value.length}, expected more`);
    const n = value.readUInt32BE(at);
    at += 4;
    return n;
  };
  const bytes = (): Buffer | null => {
    const n = u32();
    if (n === 0xffffffff) return null;
    if (at + n > value.length) throw new Error(`spooled event ends at byte ${value.length}, expected ${at + n}`);
    const b = value.subarray(at, at + n);
    at += n;
    return b;
  };
  const count = u32();
  const records: EdgeMessage[] = [];
  for (let i = 0; i < count; i++) {
    const topic = bytes()?.toString() ?? '';
    const key = bytes()?.toString() ?? null;
    const headers = JSON.parse(bytes()?.toString() ?? '{}') as Record<string, string>;
    records.push({ topic, key, headers, value: Buffer.from(bytes() ?? Buffer.alloc(0)) });
  }
  return { records };
}

/**
 * The events in a run of spool records. A spool written before events were spooled whole holds one record
 * per message: those are grouped by idempotency key, so a raw record and its fact still travel together.
 */
export function eventsOfSpooled(records: readonly EdgeMessage[]): SourceEvent[] {
  const events: SourceEvent[] = [];
  const legacy = new Map<string, SourceEvent>();
  for (const r of records) {
    if (r.topic === SPOOLED_EVENT_TOPIC) {
      events.push(decodeSpooledEvent(r.value));
      continue;
    }
    const key = r.headers[HEADERS.idempotencyKey];
    const grouped = key === undefined ? undefined : legacy.get(key);
    if (grouped) grouped.records.push(r);
    else {
      const event = { records: [r] };
      events.push(event);
      if (key !== undefined) legacy.set(key, event);
    }
  }
  return events;
}

/**
 * A transactional id for one process slot: `<prefix>-<24 letters>` from a digest of what identifies the slot
 * across restarts (host and state directory), so a restarted process fences its zombie.
 */
export function transactionalIdFor(prefix: string, identity: string): string {
  return `${prefix}-${sha256(identity).slice(0, 24)}`;
}

// ---- Publishing -----------------------------------------------------------------------------------

/**
 * published = its records are committed on Kafka; quarantined = a claim-check record is committed in their
 * place (the reason says why); deferred = it could be neither now (the claim-check store failed): keep it.
 */
export type EventOutcome =
  | { kind: 'published' }
  | { kind: 'quarantined'; reason: string; claimCheck: string }
  | { kind: 'deferred'; error: string };

/**
 * Nothing of the call was committed (`before-commit`: the transaction was aborted or will never be
 * committed), or the commit was sent and its outcome is unknown (`commit`: the events may be on Kafka).
 */
export class PublishError extends Error {
  constructor(
    readonly kind: ProduceErrorClass | 'timeout',
    readonly phase: 'before-commit' | 'commit',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PublishError';
  }
}

export interface PublisherCounters {
  /** Transactions committed, and the events in them. */
  committed: number;
  committedEvents: number;
  /** Transactions aborted (or abandoned) before commit: nothing of them is visible. */
  aborted: number;
  /** Failures by class, and commits whose outcome is unknown. */
  retriable: number;
  poison: number;
  producer: number;
  timeouts: number;
  commitUnknown: number;
  /** Producers recreated after a producer-state error or a failed abort or commit. */
  producersRecreated: number;
  /** Events replaced by a claim-check quarantine record; events whose claim check failed. */
  quarantined: number;
  deferred: number;
}

export interface Publisher {
  /**
   * Publishes `events` in one transaction and answers each one's outcome (in order). Throws PublishError
   * when nothing was committed, or when a commit's outcome is unknown. `timeoutMs` abandons the call only
   * before its commit starts (the transaction is then aborted, never committed); a commit is waited out.
   */
  publish(events: readonly SourceEvent[], options: { timeoutMs: number }): Promise<EventOutcome[]>;
  readonly counters: Readonly<PublisherCounters>;
  close(): Promise<void>;
}

export interface PublisherDeps {
  /** Makes a producer, again after one failed: the same transactional id, so the new one fences the old. */
  createProducer: () => TransactionalProducer;
  claimChecks: ClaimCheckStore;
  quarantineTopic: string;
  /** Largest record (with a batch's overhead) produced; larger events are quarantined (default 1,000,000). */
  maxRecordBytes?: number;
  log: Logger;
}

interface Attempt {
  abandoned: boolean;
  commitStarted: boolean;
}

type Prepared = { event: SourceEvent; records: EdgeMessage[]; outcome: EventOutcome };

export function createPublisher(deps: PublisherDeps): Publisher {
  const maxRecordBytes = deps.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const counters: PublisherCounters = {
    committed: 0,
    committedEvents: 0,
    aborted: 0,
    retriable: 0,
    poison: 0,
    producer: 0,
    timeouts: 0,
    commitUnknown: 0,
    producersRecreated: 0,
    quarantined: 0,
    deferred: 0,
  };
  let producer: TransactionalProducer | undefined;
  let connected: Promise<void> | undefined;
  // kafkajs allows one open transaction per producer: calls take turns.
  let turn: Promise<unknown> = Promise.resolve();
  let closed = false;

  const current = async (): Promise<TransactionalProducer> => {
    producer ??= deps.createProducer();
    const p = producer;
    connected ??= p.connect();
    try {
      await connected;
    } catch (err) {
      if (producer === p) connected = undefined;
      throw err;
    }
    return p;
  };

  /** Drops `p` (if still current): the next call makes a new one, whose first transaction fences it. */
  const recreate = (p: TransactionalProducer, why: unknown): void => {
    if (producer !== p) return;
    producer = undefined;
    connected = undefined;
    counters.producersRecreated += 1;
    deps.log.warn('recreating the transactional producer', {
      transactionalId: p.transactionalId,
      error: errorMessage(why),
    });
    void p.disconnect().catch(() => undefined);
  };

  const abort = async (p: TransactionalProducer, txn: KafkaTransaction): Promise<void> => {
    counters.aborted += 1;
    try {
      await txn.abort();
    } catch (err) {
      // Left open, it would block read-committed consumers until its timeout; a new producer aborts it now.
      recreate(p, err);
    }
  };

  /** One transaction of `records`; a producer-state failure gets one retry with a new producer. */
  const transact = async (records: EdgeMessage[], eventCount: number, attempt: Attempt): Promise<void> => {
    for (let tries = 0; ; tries++) {
      if (attempt.abandoned) throw new PublishError('timeout', 'before-commit', 'abandoned before it started');
      let p: TransactionalProducer | undefined;
      let txn: KafkaTransaction | undefined;
      try {
        p = await current();
        txn = await p.transaction();
        for (const chunk of chunksOf(records, maxRecordBytes)) {
          if (attempt.abandoned) break;
          await txn.send(chunk);
        }
        if (attempt.abandoned) throw new PublishError('timeout', 'before-commit', 'abandoned before its commit');
      } catch (err) {
        if (p && txn) await abort(p, txn);
        if (err instanceof PublishError) throw err; // abandoned after its sends succeeded: the producer is sound
        // Any failed send, not only a producer-state error: kafkajs rolls back the sequence numbers of every
        // partition in a failed produce, those the broker accepted too, so the next batch there would reuse
        // one and the broker would acknowledge it as a duplicate of the aborted batch without writing it
        // (seen with MESSAGE_TOO_LARGE on one partition). A new producer gets a new epoch and fresh sequences.
        if (p) recreate(p, err);
        const kind = classifyProduceError(err);
        counters[kind] += 1;
        if (kind === 'producer' && tries === 0 && !attempt.abandoned) continue;
        throw new PublishError(kind, 'before-commit', errorMessage(err), { cause: err });
      }
      attempt.commitStarted = true;
      try {
        await txn.commit();
      } catch (err) {
        // The coordinator may have the commit; a new producer settles the transaction either way.
        counters.commitUnknown += 1;
        recreate(p, err);
        throw new PublishError(classifyProduceError(err), 'commit', errorMessage(err), { cause: err });
      }
      counters.committed += 1;
      counters.committedEvents += eventCount;
      return;
    }
  };

  /** Runs `transact` in turn; past the deadline it is abandoned, unless its commit has started. */
  const inTurn = (records: EdgeMessage[], eventCount: number, deadline: number): Promise<void> => {
    const attempt: Attempt = { abandoned: false, commitStarted: false };
    const work = turn.then(() => transact(records, eventCount, attempt));
    turn = work.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      const fire = (): void => {
        if (attempt.commitStarted) return; // its outcome is what the caller gets
        attempt.abandoned = true;
        counters.timeouts += 1;
        reject(new PublishError('timeout', 'before-commit', `Kafka did not take the transaction within its deadline`));
      };
      timer = setTimeout(fire, Math.max(0, deadline - Date.now()));
    });
    return Promise.race([work, expired]).finally(() => clearTimeout(timer));
  };

  const quarantine = async (event: SourceEvent, reason: string): Promise<Prepared> => {
    const body = claimCheckBody(event);
    const key = claimCheckKey(event, body);
    try {
      const uri = await deps.claimChecks.put(key, body);
      deps.log.warn('event quarantined with a claim check', {
        idempotencyKey: idempotencyKeyOf(event),
        reason,
        claimCheck: uri,
      });
      return {
        event,
        records: [claimCheckRecord(event, deps.quarantineTopic, reason, uri)],
        outcome: { kind: 'quarantined', reason, claimCheck: uri },
      };
    } catch (err) {
      deps.log.warn('claim check failed; the event is kept for a later attempt', {
        idempotencyKey: idempotencyKeyOf(event),
        reason,
        error: errorMessage(err),
      });
      return { event, records: [], outcome: { kind: 'deferred', error: `claim check failed: ${errorMessage(err)}` } };
    }
  };

  const prepare = async (event: SourceEvent): Promise<Prepared> => {
    const reason = oversizeReason(event, maxRecordBytes);
    return reason === undefined
      ? { event, records: event.records, outcome: { kind: 'published' } }
      : quarantine(event, reason);
  };

  const count = (prepared: Prepared[]): EventOutcome[] => {
    for (const p of prepared) {
      if (p.outcome.kind === 'quarantined') counters.quarantined += 1;
      if (p.outcome.kind === 'deferred') counters.deferred += 1;
    }
    return prepared.map((p) => p.outcome);
  };

  const publishPrepared = async (prepared: Prepared[], deadline: number): Promise<EventOutcome[]> => {
    const records = prepared.flatMap((p) => p.records);
    if (records.length === 0) return count(prepared);
    try {
      await inTurn(records, prepared.filter((p) => p.records.length > 0).length, deadline);
      return count(prepared);
    } catch (err) {
      if (!(err instanceof PublishError) || err.kind !== 'poison') throw err;
      const sending = prepared.filter((p) => p.records.length > 0);
      if (sending.length > 1) {
        // Which event the broker refused is not said: each alone, so the others still land.
        const outcomes: EventOutcome[] = [];
        for (const p of prepared) outcomes.push(...(await publishPrepared([p], deadline)));
        return outcomes;
      }
      const [refused] = sending;
      if (!refused) throw err;
      if (refused.outcome.kind === 'quarantined') {
        // Even its claim-check record was refused: kept for a later attempt, never blocking the others.
        deps.log.error('claim-check record refused by Kafka', {
          idempotencyKey: idempotencyKeyOf(refused.event),
          error: err.message,
        });
        counters.deferred += 1;
        return [{ kind: 'deferred', error: `claim-check record refused: ${err.message}` }];
      }
      const reason = `Kafka refused event ${idempotencyKeyOf(refused.event)}: ${err.message}`;
      return publishPrepared(
        await Promise.all(prepared.map((p) => (p === refused ? quarantine(p.event, reason) : Promise.resolve(p)))),
        deadline,
      );
    }
  };

  return {
    counters,
    async publish(events, { timeoutMs }) {
      if (closed) throw new PublishError('retriable', 'before-commit', 'the publisher is closed');
      const deadline = Date.now() + timeoutMs;
      const prepared = await Promise.all(events.map(prepare));
      return publishPrepared(prepared, deadline);
    },
    async close() {
      closed = true;
      await turn;
      await producer?.disconnect().catch(() => undefined);
      producer = undefined;
    },
  };
}

import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { z } from 'zod';
import { type EdgeEnvelope, edgeEnvelope, webhookIdempotencyKey } from '../contracts/envelope';
import { AdyenNotification, WEBHOOK_RAW_SCHEMAS, adyenEventId, webhookItemToFact } from '../contracts/partner-webhooks';
import { type Logger, errorMessage } from '../logger';
import { CURRENT_SCHEMAS } from '../quality/schema-registry';
import type { Vault, VaultEntry } from '../stores/vault';
import { type TopicSet, edgeTopicsOf } from '../streams/kafka';
import {
  type EventOutcome,
  type Publisher,
  type PublisherCounters,
  PublishError,
  type SourceEvent,
  eventsOfSpooled,
  spoolRecordOf,
} from '../streams/publish';
import { STRIPE_SIGNATURE_HEADER, verifyAdyenSignature, verifyStripeSignature } from './signatures';
import { createBatcher } from './batcher';
import type { Spool } from './spool';
import { type Tokenizer, TokenizeBudgetError } from './tokenize';
import { type VaultJournal, type VaultJournalStatus, VaultJournalFullError } from './vault-journal';
import { WEBHOOK_OPENAPI } from './webhook-openapi';
import {
  HttpError,
  REQUEST_BUDGET,
  ReplayWindow,
  adyenReplayKey,
  checkContentType,
  eventIdOrDigest,
  parseJsonBody,
  partnerIdFromPath,
  stripeReplayKey,
} from './webhook-request';
import { describeIssues } from '../contracts/issues';
import { parseJsonSetting } from '../config';

// The webhook receiver: verify → tokenize → envelope → the publish step (one Kafka transaction per batch
// of requests), or an fsync'd spool when Kafka is unreachable (availability for ingest). It answers 2xx
// only once the event is committed on Kafka (or quarantined there with a claim check) or in the spool,
// and the originals it tokenized are durable too (fsynced vault journal, or the vault itself).

export const PartnerConfig = z.object({
  id: z.string().regex(/^[a-z0-9-]{1,60}$/),
  scheme: z.enum(['stripe', 'adyen']),
  region: z.string().min(1),
  secrets: z.array(z.string().min(8)).min(1).max(2),
});
export type PartnerConfig = z.infer<typeof PartnerConfig>;

export function parsePartners(json: string): PartnerConfig[] {
  return parseJsonSetting('WEBHOOK_PARTNERS', json, z.array(PartnerConfig));
}

export interface WebhookReceiverDeps {
  partners: PartnerConfig[];
  /** The publish step (src/streams/publish.ts): its transactions, size limit and claim checks. */
  publisher: Publisher;
  topics: TopicSet;
  spool: Spool;
  tokenizer: Tokenizer;
  /** Where originals go when there is no vault journal: straight into Postgres on the request path. */
  vault: Vault;
  /** Originals fsynced locally, drained to the vault in the background (Postgres down ≠ webhooks down). */
  vaultJournal?: VaultJournal;
  /** What /readyz reports; defaults to this receiver's own status (cluster workers report the sum). */
  readiness?: () => EdgeStatus;
  log: Logger;
  maxBodyBytes: number;
  /** How long a request waits for Kafka before its events are spooled (a commit in flight is waited out). */
  kafkaTimeoutMs: number;
  /** The same, for a spool drain's transaction (default 30 s). */
  drainTimeoutMs?: number;
}

/** A failed attempt to send the spool's records to Kafka; they stay in the spool for the next one. */
export interface SpoolDrainFailure {
  error: string;
  at: string;
  /** Records waiting in that spool when the attempt failed. */
  records: number;
}

/** What /readyz answers from: the Kafka spool and the vault journal. */
export interface EdgeStatus {
  spooled: number;
  kafkaHealthy: boolean;
  /** Failed spool drain attempts since start. */
  spoolDrainErrors: number;
  lastSpoolDrainError?: SpoolDrainFailure;
  vaultJournal?: VaultJournalStatus;
  /** The publish step's counters (transactions, failures by class, claim checks); absent when summed. */
  publisher?: Readonly<PublisherCounters>;
}

function readinessBody(status: EdgeStatus): {
  status: string;
  spooled: number;
  spoolDrainErrors: number;
  lastSpoolDrainError?: SpoolDrainFailure;
  vaultJournal?: number;
} {
  const degraded: string[] = [];
  // Named by the dependency, as every process's `degraded: <dependency>` log line is (src/resilience.ts).
  if (status.spooled > 0 || !status.kafkaHealthy) degraded.push('kafka (spooling)');
  if (status.vaultJournal?.drainError !== undefined)
    degraded.push(`postgres (vault journal ${status.vaultJournal.records})`);
  return {
    status: degraded.length > 0 ? `degraded: ${degraded.join(', ')}` : 'ready',
    spooled: status.spooled,
    spoolDrainErrors: status.spoolDrainErrors,
    ...(status.lastSpoolDrainError ? { lastSpoolDrainError: status.lastSpoolDrainError } : {}),
    ...(status.vaultJournal ? { vaultJournal: status.vaultJournal.records } : {}),
  };
}

/** Events by what became of them, and failures; every failure is also logged. */
export interface ReceiverCounters {
  /** Events committed on Kafka (their raw record and fact or quarantine record). */
  accepted: number;
  /** Events spooled (Kafka failed or timed out), and events drained from a spool to Kafka. */
  spooled: number;
  drained: number;
  /** Events that failed their contract (quarantined with the reason). */
  quarantined: number;
  /** Events that could not be produced (too large after tokenization, refused): claim check + quarantine. */
  claimChecked: number;
  /** Events a drain put back at the spool's end (their claim check failed), so the rest kept draining. */
  requeued: number;
  /** Requests answered 4xx/5xx. */
  rejected: number;
  /** Publishes on the request path that failed (the events were spooled instead). */
  publishFailures: number;
  spoolDrainErrors: number;
}

export interface WebhookReceiver {
  server: Server;
  counters: ReceiverCounters;
  status(): EdgeStatus;
  /**
   * Sends what the spool holds while Kafka answers; returns records drained. A failure leaves the
   * records in the spool, is counted and shown in status(), and logged when draining starts failing
   * and when it recovers; it resolves 0 then, so a timer can simply call it again.
   */
  drainSpool(): Promise<number>;
  /** Same, for a spool this receiver does not append to (one left by a worker that no longer runs). */
  drainSpoolFrom(spool: Spool): Promise<number>;
  close(): Promise<void>;
}

// Covers a Stripe-style signature's whole validity (300 s either side of its timestamp): a forgotten one
// is stale anyway. Adyen signs no time, so for it the window is simply how long a retry is recognized.
const REPLAY_WINDOW_MS = 10 * 60_000;
// ~100 bytes a key: bounds the set's memory at ~50 MB per process whatever the request rate.
const REPLAY_MAX_ENTRIES = 500_000;

/**
 * Bodies from this size on are prepared one at a time (a 256 KB body dense with PII look-alikes costs ~10–25 ms
 * of tokenization on one core); below it, a request's preparation is well under a millisecond.
 */
export const LARGE_BODY_BYTES = 32 * 1024;

type PreparedRequest =
  | { answer: { status: number; body: unknown } }
  | {
      events: SourceEvent[];
      vaultEntries: VaultEntry[];
      /** Replay keys of the Adyen-style items, remembered once the events are durable. */
      acceptedAdyenItems: string[];
      replayed: number;
      quarantined: number;
      /** Events accepted. */
      items: number;
    };

/** Work that takes turns: `take()` resolves when the previous taker is done and the event loop has turned once. */
function createTurns(): { take(): Promise<() => void> } {
  let last = Promise.resolve();
  return {
    async take() {
      const previous = last;
      let done!: () => void;
      last = new Promise<void>((resolve) => (done = resolve));
      await previous;
      await new Promise<void>((resolve) => setImmediate(resolve));
      return done;
    },
  };
}

export function createWebhookReceiver(deps: WebhookReceiverDeps): WebhookReceiver {
  const partners = new Map(deps.partners.map((p) => [p.id, p]));
  const counters: ReceiverCounters = {
    accepted: 0,
    spooled: 0,
    drained: 0,
    quarantined: 0,
    claimChecked: 0,
    requeued: 0,
    rejected: 0,
    publishFailures: 0,
    spoolDrainErrors: 0,
  };
  const drainTimeoutMs = deps.drainTimeoutMs ?? 30_000;
  let lastSpoolDrainError: SpoolDrainFailure | undefined;
  // Spools whose last drain failed: a drain retried every 500 ms is logged when it starts failing and when it recovers.
  const failingDrains = new Map<Spool, { since: string; attempts: number }>();
  // A Stripe-style signature is only valid once: partners re-sign every retry with a new timestamp.
  // An Adyen-style item already accepted is acknowledged again without producing it twice.
  const replays = new ReplayWindow(REPLAY_WINDOW_MS, REPLAY_MAX_ENTRIES);
  let kafkaHealthy = true;

  // One envelope per signature scheme: the raw items follow the scheme's registered schema.
  const envelopeOf = (raw: 'stripe-style-event' | 'adyen-notification-item'): EdgeEnvelope =>
    edgeEnvelope('webhook', edgeTopicsOf(deps.topics, 'rawWebhooks'), {
      raw: CURRENT_SCHEMAS[raw],
      fact: CURRENT_SCHEMAS['payment-fact'],
    });
  const envelopes = { stripe: envelopeOf(WEBHOOK_RAW_SCHEMAS.stripe), adyen: envelopeOf(WEBHOOK_RAW_SCHEMAS.adyen) };
  // Requests arriving within 2 ms share one transaction, and while one is in flight the next gathers.
  const kafkaBatch = createBatcher<SourceEvent, EventOutcome>(
    (events) => deps.publisher.publish(events, { timeoutMs: deps.kafkaTimeoutMs }),
    { maxItems: 500, maxDelayMs: 2, serial: true },
  );
  const largeBodies = createTurns();
  const vaultBatch = createBatcher<VaultEntry>((entries) => deps.vault.store(entries).then(() => undefined), {
    maxItems: 1000,
    maxDelayMs: 2,
  });

  const storeOriginals = async (entries: VaultEntry[]): Promise<void> => {
    if (!deps.vaultJournal) return vaultBatch.add(entries).then(() => undefined);
    try {
      await deps.vaultJournal.append(entries);
    } catch (err) {
      if (err instanceof VaultJournalFullError) throw new HttpError(503, err.message);
      throw err;
    }
  };

  const status = (): EdgeStatus => ({
    spooled: deps.spool.size().records,
    kafkaHealthy,
    spoolDrainErrors: counters.spoolDrainErrors,
    ...(lastSpoolDrainError ? { lastSpoolDrainError } : {}),
    ...(deps.vaultJournal ? { vaultJournal: deps.vaultJournal.status() } : {}),
    publisher: deps.publisher.counters,
  });

  /** Counts the events the publish step quarantined with a claim check (it logs each one). */
  const tally = (outcomes: readonly EventOutcome[]): number => {
    const claimChecked = outcomes.filter((o) => o.kind === 'quarantined').length;
    counters.claimChecked += claimChecked;
    return claimChecked;
  };

  const drainToKafka = async (spool: Spool, which: 'own' | 'orphaned'): Promise<number> => {
    try {
      // One transaction per spool batch: the cursor moves past a batch only once it is committed, so a
      // failure resends that batch alone. An event that cannot be produced is quarantined (claim check)
      // in the same transaction; one whose claim check failed goes back to the spool's end.
      const n = await spool.drain(async (records) => {
        const events = eventsOfSpooled(records);
        const outcomes = await deps.publisher.publish(events, { timeoutMs: drainTimeoutMs });
        tally(outcomes);
        for (const [i, outcome] of outcomes.entries()) {
          if (outcome.kind !== 'deferred') continue;
          const appended = await spool.append(spoolRecordOf(events[i]!));
          if (!appended.ok) throw new Error(`spool full: cannot put back an event whose ${outcome.error}`);
          counters.requeued += 1;
        }
        counters.drained += outcomes.filter((o) => o.kind !== 'deferred').length;
      });
      const failed = failingDrains.get(spool);
      if (failed) {
        failingDrains.delete(spool);
        deps.log.info('spool draining to kafka again', {
          spool: which,
          records: n,
          left: spool.size().records,
          failingSince: failed.since,
          failedAttempts: failed.attempts,
        });
      } else if (n > 0) {
        deps.log.info('spool drained to kafka', { spool: which, records: n, left: spool.size().records });
      }
      return n;
    } catch (err) {
      counters.spoolDrainErrors += 1;
      lastSpoolDrainError = { error: errorMessage(err), at: new Date().toISOString(), records: spool.size().records };
      const failing = failingDrains.get(spool);
      if (failing) failing.attempts += 1;
      else {
        failingDrains.set(spool, { since: lastSpoolDrainError.at, attempts: 1 });
        deps.log.warn('spool cannot drain to kafka; its records wait and webhooks keep being spooled', {
          spool: which,
          ...lastSpoolDrainError,
        });
      }
      return 0;
    }
  };

  /**
   * Durable = committed on Kafka (acks=all, one transaction) or fsynced to the spool, one spool record per
   * event. Full spool = 503. Answers how many events were quarantined with a claim check.
   */
  const makeDurable = async (events: SourceEvent[]): Promise<{ where: 'kafka' | 'spool'; claimChecked: number }> => {
    let toSpool = events;
    let claimChecked = 0;
    if (kafkaHealthy && deps.spool.size().records === 0) {
      try {
        const outcomes = await kafkaBatch.add(events);
        claimChecked = tally(outcomes);
        // An event whose claim check failed waits in the spool like any other.
        toSpool = events.filter((_, i) => outcomes[i]?.kind === 'deferred');
        if (toSpool.length === 0) return { where: 'kafka', claimChecked };
      } catch (err) {
        counters.publishFailures += 1;
        if (kafkaHealthy) {
          deps.log.warn('kafka unreachable, spooling', {
            error: errorMessage(err),
            ...(err instanceof PublishError ? { kind: err.kind, phase: err.phase } : {}),
          });
        }
        kafkaHealthy = false;
      }
    }
    // Appended in one synchronous pass: the request's events get consecutive seqs.
    const appended = await Promise.all(toSpool.map((event) => deps.spool.append(spoolRecordOf(event))));
    if (appended.some((a) => !a.ok)) {
      throw new HttpError(503, 'spool full: Kafka has been unreachable too long; retry later');
    }
    return { where: 'spool', claimChecked };
  };

  const handleWebhook = async (req: IncomingMessage, partnerId: string): Promise<{ status: number; body: unknown }> => {
    const partner = partners.get(partnerId);
    if (!partner) throw new HttpError(404, `unknown partner "${partnerId}"`);
    checkContentType(req.headers['content-type']);
    const raw = await readBody(req, deps.maxBodyBytes);
    // Verify, parse, tokenize and envelope run in one go; for a large body that is tens of ms, so large bodies
    // take turns, each after the event loop has served what arrived meanwhile (/healthz, small webhooks).
    const done = raw.length >= LARGE_BODY_BYTES ? await largeBodies.take() : undefined;
    let prepared: PreparedRequest;
    try {
      prepared = prepareEvents(req, partner, raw);
    } finally {
      done?.();
    }
    if ('answer' in prepared) return prepared.answer;
    const { events, vaultEntries, acceptedAdyenItems, replayed, items } = prepared;
    let { quarantined } = prepared;
    // The event and its originals become durable in parallel; 2xx only when both are.
    const [{ where, claimChecked }] = await Promise.all([makeDurable(events), storeOriginals(vaultEntries)]);
    for (const key of acceptedAdyenItems) replays.remember(key);
    counters.quarantined += quarantined;
    quarantined += claimChecked;
    if (where === 'spool') counters.spooled += items;
    else counters.accepted += items;
    // Authentic but invalid: accepted (the partner cannot fix it by retrying) and quarantined.
    return {
      status: quarantined > 0 || where === 'spool' ? 202 : 200,
      body: { accepted: items, quarantined, durable: where, ...(replayed > 0 ? { replayed } : {}) },
    };
  };

  /** A request's events, verified, tokenized and enveloped, or its answer when there is nothing to publish. */
  const prepareEvents = (req: IncomingMessage, partner: PartnerConfig, raw: Buffer): PreparedRequest => {
    const receivedAt = new Date().toISOString();

    // Verified items; each maps to a payment fact (webhookItemToFact) once tokenized.
    const items: {
      rawItem: unknown;
      /** The partner's id for the event, if it has one (a quarantined event may not). */
      partnerEventId: string | undefined;
    }[] = [];
    // Adyen-style items are remembered once durable: a retry of a failed delivery must get through.
    const acceptedAdyenItems: string[] = [];
    let replayed = 0;
    if (partner.scheme === 'stripe') {
      const header = req.headers[STRIPE_SIGNATURE_HEADER.toLowerCase()];
      const check = verifyStripeSignature(raw, Array.isArray(header) ? header[0] : header, {
        secrets: partner.secrets,
      });
      if (!check.ok) throw new HttpError(401, `${check.reason}: ${check.detail}`);
      const replayKey = stripeReplayKey(partner.id, check.timestamp ?? 0, check.digest);
      if (replays.has(replayKey)) {
        throw new HttpError(
          401,
          `replayed: a ${STRIPE_SIGNATURE_HEADER} with t=${check.timestamp} and this signature was already accepted`,
        );
      }
      const json = parseJsonBody(raw);
      replays.remember(replayKey);
      const id = isRecord(json) ? json['id'] : undefined;
      items.push({
        rawItem: json,
        partnerEventId: typeof id === 'string' ? id : undefined,
      });
    } else {
      const notification = AdyenNotification.safeParse(parseJsonBody(raw));
      if (!notification.success) {
        throw new HttpError(400, `not an Adyen-style notification: ${describeIssues(notification.error)}`);
      }
      const inThisRequest = new Set<string>();
      for (const [i, wrapper] of notification.data.notificationItems.entries()) {
        const item = wrapper.NotificationRequestItem;
        const check = verifyAdyenSignature(item, partner.secrets);
        if (!check.ok) throw new HttpError(401, `notificationItems.${i}: ${check.reason}: ${check.detail}`);
        const replayKey = adyenReplayKey(partner.id, check.digest);
        if (replays.has(replayKey) || inThisRequest.has(replayKey)) {
          replayed += 1;
          continue;
        }
        inThisRequest.add(replayKey);
        acceptedAdyenItems.push(replayKey);
        items.push({
          rawItem: item,
          partnerEventId: typeof item['pspReference'] === 'string' ? adyenEventId(item) : undefined,
        });
      }
    }
    // Every item was accepted before (Adyen retries what it thinks failed): acknowledged, nothing re-sent.
    if (items.length === 0) return { answer: { status: 200, body: { accepted: 0, quarantined: 0, replayed } } };

    // Tokenize once, before anything leaves the edge; originals go only to the vault. The fact is
    // mapped from the tokenized item, so it cannot carry what the raw event no longer does. One call for
    // the whole request, so its PII budget bounds the request's HMAC work.
    // The event id is tokenized with the item: a card number pasted into an id never becomes a key.
    const tokenized = tokenizeWithinBudget(items.map((item) => ({ item: item.rawItem, eventId: item.partnerEventId })));
    const vaultEntries: VaultEntry[] = tokenized.vault;
    const events: SourceEvent[] = [];
    const envelope = envelopes[partner.scheme];
    let quarantined = 0;
    for (const { item: tokenizedItem, eventId } of tokenized.payload as { item: unknown; eventId: unknown }[]) {
      // The same mapping replay runs on the archived item (src/streams/replay/replay-record.ts).
      const mapped = webhookItemToFact(partner, tokenizedItem, receivedAt);
      if (!mapped.ok) quarantined += 1;
      // A quarantined event stays findable by its payment and its event id (a digest when it has none).
      const unmapped = {
        region: partner.region,
        key: paymentIdOf(tokenizedItem),
        idempotencyKey: webhookIdempotencyKey(partner.id, eventIdOrDigest(eventId, tokenizedItem)),
      };
      events.push({ records: envelope(receivedAt, tokenizedItem, mapped, unmapped) });
    }
    return { events, vaultEntries, acceptedAdyenItems, replayed, quarantined, items: items.length };
  };

  const tokenizeWithinBudget = (payload: unknown): ReturnType<Tokenizer['tokenize']> => {
    try {
      return deps.tokenizer.tokenize(payload, { maxPiiValues: REQUEST_BUDGET.maxPiiValues });
    } catch (err) {
      // Over budget, authentic or not: it cannot be tokenized, so it cannot be quarantined either.
      if (err instanceof TokenizeBudgetError) {
        throw err.budget === 'depth'
          ? new HttpError(400, err.message)
          : new HttpError(413, `body holds ${err.message}`);
      }
      throw err;
    }
  };

  const server = createServer((req, res) => {
    void route(req, res);
  });

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // The path without the query string; a WHATWG URL per request costs more than the routing needs.
    const target = req.url ?? '/';
    const query = target.indexOf('?');
    const pathname = query === -1 ? target : target.slice(0, query);
    try {
      if (req.method === 'GET' && pathname === '/healthz') return reply(res, 200, { status: 'ok' });
      if (req.method === 'GET' && pathname === '/readyz') {
        return reply(res, 200, readinessBody(deps.readiness?.() ?? status()));
      }
      if (req.method === 'GET' && pathname === '/openapi.json') return reply(res, 200, WEBHOOK_OPENAPI);
      const m = /^\/webhooks\/([^/]+)$/.exec(pathname);
      if (m && req.method === 'POST') {
        const result = await handleWebhook(req, partnerIdFromPath(m[1]!));
        return reply(res, result.status, result.body);
      }
      throw new HttpError(404, `no route ${req.method ?? ''} ${pathname}`);
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      const message = errorMessage(err);
      counters.rejected += 1;
      if (status >= 500) deps.log.error('webhook failed', { status, error: message });
      else deps.log.info('webhook rejected', { status, reason: message, path: pathname });
      req.resume(); // drain any unread body so the connection can be reused
      return reply(res, status, { error: message });
    }
  };

  return {
    server,
    counters,
    status,
    async drainSpool() {
      if (deps.spool.size().records === 0) {
        kafkaHealthy = true;
        return 0;
      }
      const n = await drainToKafka(deps.spool, 'own');
      kafkaHealthy = deps.spool.size().records === 0;
      return n;
    },
    drainSpoolFrom: (spool) => drainToKafka(spool, 'orphaned'),
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Best-effort payment id of an event that failed its contract (Stripe-style or Adyen-style). */
function paymentIdOf(raw: unknown): string | null {
  const r = raw as { data?: { object?: { paymentId?: unknown } }; merchantReference?: unknown } | null;
  const id = r?.data?.object?.paymentId ?? r?.merchantReference;
  return typeof id === 'string' ? id : null;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new HttpError(413, `body of ${declared} bytes exceeds the ${limit}-byte limit`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, `body exceeds the ${limit}-byte limit`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

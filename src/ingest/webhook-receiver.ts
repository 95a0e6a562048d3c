import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { z } from 'zod';
import { type EdgeEnvelope, edgeEnvelope, webhookIdempotencyKey } from '../contracts/envelope';
import { AdyenNotification, adyenEventId, adyenItemToFact, stripeStyleToFact } from '../contracts/partner-webhooks';
import type { ParseResult, PaymentEvent } from '../contracts/payment-event';
import { type Logger, errorMessage } from '../logger';
import { CURRENT_SCHEMAS } from '../quality/schema-registry';
import type { Vault, VaultEntry } from '../stores/vault';
import { type Producer, type TopicSet, edgeTopicsOf, produce } from '../streams/kafka';
import { STRIPE_SIGNATURE_HEADER, verifyAdyenSignature, verifyStripeSignature } from './signatures';
import { createBatcher } from './batcher';
import type { Spool, SpoolRecord } from './spool';
import type { Tokenizer } from './tokenize';
import { type VaultJournal, type VaultJournalStatus, VaultJournalFullError } from './vault-journal';
import { WEBHOOK_OPENAPI } from './webhook-openapi';
import { describeIssues } from '../contracts/issues';
import { parseJsonSetting } from '../config';

// The webhook receiver: verify → tokenize → envelope → Kafka, or an fsync'd spool when Kafka is
// unreachable (availability for ingest). It answers 2xx only once the event is durable and the
// originals it tokenized are durable too (fsynced vault journal, or the vault itself).

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
  producer: Producer;
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
  kafkaTimeoutMs: number;
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

export interface WebhookReceiver {
  server: Server;
  counters: { accepted: number; spooled: number; quarantined: number; rejected: number; spoolDrainErrors: number };
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

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

// Covers a signature's whole validity (300 s either side of its timestamp): a forgotten one is stale anyway.
const REPLAY_WINDOW_MS = 10 * 60_000;

export function createWebhookReceiver(deps: WebhookReceiverDeps): WebhookReceiver {
  const partners = new Map(deps.partners.map((p) => [p.id, p]));
  const counters = { accepted: 0, spooled: 0, quarantined: 0, rejected: 0, spoolDrainErrors: 0 };
  let lastSpoolDrainError: SpoolDrainFailure | undefined;
  // Spools whose last drain failed: a drain retried every 500 ms is logged when it starts failing and when it recovers.
  const failingDrains = new Map<Spool, { since: string; attempts: number }>();
  // A Stripe-style signature is only valid once: partners re-sign every retry with a new timestamp.
  const seenSignatures = new Map<string, number>();
  let kafkaHealthy = true;

  // One envelope per signature scheme: the raw items follow the scheme's registered schema.
  const envelopeOf = (raw: 'stripe-style-event' | 'adyen-notification-item'): EdgeEnvelope =>
    edgeEnvelope('webhook', edgeTopicsOf(deps.topics, 'rawWebhooks'), {
      raw: CURRENT_SCHEMAS[raw],
      fact: CURRENT_SCHEMAS['payment-fact'],
    });
  const envelopes = { stripe: envelopeOf('stripe-style-event'), adyen: envelopeOf('adyen-notification-item') };
  const sendToKafka = async (messages: SpoolRecord[]): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Kafka did not acknowledge within ${deps.kafkaTimeoutMs} ms`)),
        deps.kafkaTimeoutMs,
      );
    });
    try {
      await Promise.race([produce(deps.producer, messages), timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  // Requests arriving within 2 ms share one produce request and one vault insert.
  const kafkaBatch = createBatcher<SpoolRecord>(sendToKafka, { maxItems: 500, maxDelayMs: 2 });
  const vaultBatch = createBatcher<VaultEntry>((entries) => deps.vault.store(entries).then(() => undefined), {
    maxItems: 1000,
    maxDelayMs: 2,
  });

  const storeOriginals = async (entries: VaultEntry[]): Promise<void> => {
    if (!deps.vaultJournal) return vaultBatch.add(entries);
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
  });

  const drainToKafka = async (spool: Spool, which: 'own' | 'orphaned'): Promise<number> => {
    try {
      const n = await spool.drain((records) => sendToKafka(records));
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

  /** Durable = acknowledged by Kafka (acks=all) or fsynced to the spool. Full spool = 503. */
  const makeDurable = async (messages: SpoolRecord[]): Promise<'kafka' | 'spool'> => {
    if (kafkaHealthy && deps.spool.size().records === 0) {
      try {
        await kafkaBatch.add(messages);
        return 'kafka';
      } catch (err) {
        kafkaHealthy = false;
        deps.log.warn('kafka unreachable, spooling', { error: errorMessage(err) });
      }
    }
    for (const m of messages) {
      const appended = await deps.spool.append(m);
      if (!appended.ok) throw new HttpError(503, 'spool full: Kafka has been unreachable too long; retry later');
    }
    return 'spool';
  };

  const handleWebhook = async (req: IncomingMessage, partnerId: string): Promise<{ status: number; body: unknown }> => {
    const partner = partners.get(partnerId);
    if (!partner) throw new HttpError(404, `unknown partner "${partnerId}"`);
    const raw = await readBody(req, deps.maxBodyBytes);

    const parseJson = (): unknown => {
      try {
        return JSON.parse(raw.toString('utf8'));
      } catch (err) {
        throw new HttpError(400, `malformed JSON body: ${errorMessage(err)}`);
      }
    };
    // Verified items and how each maps to a payment fact; the mapping runs on the tokenized item.
    const items: {
      rawItem: unknown;
      eventId: string;
      toFact: (tokenized: unknown) => ParseResult<PaymentEvent>;
    }[] = [];
    if (partner.scheme === 'stripe') {
      const header = req.headers[STRIPE_SIGNATURE_HEADER.toLowerCase()];
      const check = verifyStripeSignature(raw, Array.isArray(header) ? header[0] : header, {
        secrets: partner.secrets,
      });
      if (!check.ok) throw new HttpError(401, `${check.reason}: ${check.detail}`);
      const replayKey = `${partner.id}|${String(header)}`;
      if (seenSignatures.has(replayKey))
        throw new HttpError(401, `replayed: this ${STRIPE_SIGNATURE_HEADER} was already accepted`);
      const json = parseJson();
      rememberSignature(seenSignatures, replayKey);
      const eventId = typeof (json as { id?: unknown }).id === 'string' ? (json as { id: string }).id : 'unknown';
      items.push({
        rawItem: json,
        eventId,
        toFact: (t) => stripeStyleToFact(partner.id, partner.region, t),
      });
    } else {
      const notification = AdyenNotification.safeParse(parseJson());
      if (!notification.success) {
        throw new HttpError(400, `not an Adyen-style notification: ${describeIssues(notification.error)}`);
      }
      for (const [i, wrapper] of notification.data.notificationItems.entries()) {
        const item = wrapper.NotificationRequestItem;
        const check = verifyAdyenSignature(item, partner.secrets);
        if (!check.ok) throw new HttpError(401, `notificationItems.${i}: ${check.reason}: ${check.detail}`);
        items.push({
          rawItem: item,
          eventId: adyenEventId(item),
          toFact: (t) => adyenItemToFact(partner.id, partner.region, t),
        });
      }
    }

    // Tokenize once, before anything leaves the edge; originals go only to the vault. The fact is
    // mapped from the tokenized item, so it cannot carry what the raw event no longer does.
    const messages: SpoolRecord[] = [];
    const envelope = envelopes[partner.scheme];
    const vaultEntries: VaultEntry[] = [];
    const receivedAt = new Date().toISOString();
    let quarantined = 0;
    for (const item of items) {
      // The event id is tokenized with the item: a card number pasted into an id never becomes a key.
      const tokenized = deps.tokenizer.tokenize({ item: item.rawItem, eventId: item.eventId });
      vaultEntries.push(...tokenized.vault);
      const { item: tokenizedItem, eventId } = tokenized.payload as { item: unknown; eventId: string };
      const mapped = item.toFact(tokenizedItem);
      if (!mapped.ok) quarantined += 1;
      // A quarantined event stays findable by its payment and its event id.
      const unmapped = {
        region: partner.region,
        key: paymentIdOf(tokenizedItem),
        idempotencyKey: webhookIdempotencyKey(partner.id, eventId),
      };
      messages.push(...envelope(receivedAt, tokenizedItem, mapped, unmapped));
    }
    // The event and its originals become durable in parallel; 2xx only when both are.
    const [where] = await Promise.all([makeDurable(messages), storeOriginals(vaultEntries)]);
    counters.quarantined += quarantined;
    if (where === 'spool') counters.spooled += items.length;
    else counters.accepted += items.length;
    // Authentic but invalid: accepted (the partner cannot fix it by retrying) and quarantined.
    return {
      status: quarantined > 0 || where === 'spool' ? 202 : 200,
      body: { accepted: items.length, quarantined, durable: where },
    };
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
        const result = await handleWebhook(req, decodeURIComponent(m[1]!));
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

function rememberSignature(seen: Map<string, number>, key: string): void {
  const now = Date.now();
  // A Map iterates in insertion order, i.e. oldest first: stop at the first signature still in the window.
  for (const [k, at] of seen) {
    if (now - at <= REPLAY_WINDOW_MS) break;
    seen.delete(k);
  }
  seen.set(key, now);
}

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

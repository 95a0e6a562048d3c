import { createHash } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { GatewayEvent, GatewayFeedPage } from '../contracts/gateway-event';
import type { PaymentEvent } from '../contracts/payment-event';
import { channelOf } from './channels';
import { seededRandom } from './random';
import { describeIssues } from '../contracts/issues';

// A simulated regional payment gateway: an HTTP server over its append-only, sequenced event feed,
// in the gateway's own format (not PayLink's). Tests stop and start it to play a regional outage.

const MAX_PAGE_LIMIT = 1000;

export interface GatewayFeedOptions {
  region: string;
  /** Defaults to `gw-<region>`, the gateway id the simulator puts in idempotency keys. */
  gateway?: string;
  /** 0 = any free port (kept across stop/start). */
  port?: number;
}

export interface GatewayFeed {
  region: string;
  gateway: string;
  /** Valid once started. */
  readonly port: number;
  /** Appends the region's gateway facts in order; a fact delivered twice becomes a second entry. */
  publish(facts: readonly PaymentEvent[]): number;
  /** Appends an entry exactly as given (a drifted or broken event), with the next seq. */
  appendRaw(event: Record<string, unknown>): number;
  /** Listens (again, on the same port). */
  start(): Promise<void>;
  /** The region goes down: stops listening and drops open connections; the feed is kept. */
  stop(): Promise<void>;
}

const FeedQuery = z.object({
  after: z.coerce.number().int().nonnegative().default(0),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_LIMIT).default(100),
});

const FIRST_NAMES = ['Ana', 'Ben', 'Chloé', 'Dev', 'Eitan', 'Fatima', 'Goro', 'Hana', 'Ivan', 'Jia'] as const;
const LAST_NAMES = ['Silva', 'Okafor', 'Müller', 'Patel', 'Tanaka', 'Kowalski', 'Haddad', 'Nguyen'] as const;
const BINS = ['411111', '453201', '510510', '555544', '222300', '601100'] as const;
/** The BIN the injected card tester enumerates (src/simulator/fraud-injection.ts); no regular payment uses it. */
export const CARD_TESTING_BIN = '404242';
/** Payment ids of the injected card-testing attempts end in `-ct<n>`. */
export const CARD_TESTING_PAYMENT = /-ct\d+$/;

/** A Luhn check digit for `body`, so simulated card numbers look like (and scan as) real PANs. */
function luhnCheckDigit(body: string): string {
  let sum = 0;
  for (let i = body.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = body.charCodeAt(i) - 48;
    if (double) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return String((10 - (sum % 10)) % 10);
}

/** Card and shopper of a payment: seeded by the payment id, so every event of it carries the same card. */
export function simulatedCardholder(paymentId: string): Pick<GatewayEvent, 'card' | 'shopper'> {
  const rnd = seededRandom(createHash('sha256').update(paymentId).digest().readUInt32BE(0));
  let body: string = CARD_TESTING_PAYMENT.test(paymentId) ? CARD_TESTING_BIN : rnd.pick(BINS);
  while (body.length < 15) body += String(rnd.int(0, 9));
  const first = rnd.pick(FIRST_NAMES);
  const last = rnd.pick(LAST_NAMES);
  const month = String(rnd.int(1, 12)).padStart(2, '0');
  return {
    card: {
      number: body + luhnCheckDigit(body),
      holderName: `${first} ${last}`,
      expiry: `${month}/${rnd.int(27, 31)}`,
    },
    shopper: { email: `${first}.${last}.${rnd.int(1, 999)}@example.com`.normalize('NFD').replace(/[^\x20-\x7e]/g, '') },
  };
}

/** The transaction ref inside a simulator idempotency key `<gateway>:<txRef>:<type>:<seq>`. */
function txnRefOf(fact: PaymentEvent, gateway: string): string {
  const suffix = `:${fact.type}:${fact.sourceSequence}`;
  const key = fact.idempotencyKey;
  if (!key.startsWith(`${gateway}:`) || !key.endsWith(suffix)) {
    throw new RangeError(`fact ${key}: not a gateway key of the form ${gateway}:<txnRef>${suffix}`);
  }
  return key.slice(gateway.length + 1, key.length - suffix.length);
}

/** A gateway event before the feed gives it its seq (Omit distributed over the event types). */
export type UnsequencedGatewayEvent = GatewayEvent extends infer E
  ? E extends unknown
    ? Omit<E, 'seq'>
    : never
  : never;

/** A simulator fact as gateway `gateway` reports it (without its feed seq). */
export function encodeGatewayEvent(fact: PaymentEvent, gateway: string): UnsequencedGatewayEvent {
  const txnRef = txnRefOf(fact, gateway);
  const base = {
    // Same fact, same event id: a redelivery is recognisable as one.
    eventId: `evt_${createHash('sha256').update(fact.idempotencyKey).digest('hex').slice(0, 24)}`,
    txnRef,
    paymentReference: fact.paymentId,
    merchantId: fact.merchantId,
    factSeq: fact.sourceSequence,
    occurredAt: fact.occurredAt,
    ...simulatedCardholder(fact.paymentId),
  };
  switch (fact.type) {
    case 'authorized':
      return {
        ...base,
        eventType: 'AUTHORISATION',
        amount: { value: fact.amountMinor, currency: fact.currency },
      };
    case 'captured':
      return {
        ...base,
        eventType: 'CAPTURE',
        amount: { value: fact.amountMinor, currency: fact.currency },
        captureRef: fact.captureId,
        platformFee: fact.platformFeeMinor,
      };
    case 'voided':
      return { ...base, eventType: 'CANCELLATION', amount: { value: 0, currency: fact.currency } };
    case 'failed':
      return {
        ...base,
        eventType: 'REFUSAL',
        amount: { value: 0, currency: fact.currency },
        refusalReason: fact.reason,
      };
    default:
      throw new RangeError(`fact ${fact.idempotencyKey}: a ${fact.type} fact is not reported by a gateway`);
  }
}

export function createGatewayFeed(options: GatewayFeedOptions): GatewayFeed {
  const region = options.region;
  const gateway = options.gateway ?? `gw-${region}`;
  const host = '127.0.0.1';
  let port = options.port ?? 0;
  const entries: Record<string, unknown>[] = [];
  let server: Server | undefined;

  const append = (event: Record<string, unknown>): number => {
    entries.push({ seq: entries.length + 1, ...event });
    return entries.length;
  };

  const serve = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://gateway');
    const reply = (status: number, body: unknown): void => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (req.method !== 'GET' || url.pathname !== '/v1/events') {
      return reply(404, { error: `no route ${req.method ?? ''} ${url.pathname}` });
    }
    const query = FeedQuery.safeParse(Object.fromEntries(url.searchParams));
    if (!query.success) {
      return reply(400, { error: describeIssues(query.error) });
    }
    const { after, limit } = query.data;
    const events = entries.slice(after, after + limit);
    const page: GatewayFeedPage = { events, nextAfter: after + events.length, hasMore: after + limit < entries.length };
    reply(200, page);
  };

  const feed: GatewayFeed = {
    region,
    gateway,
    get port() {
      return port;
    },
    publish(facts) {
      for (const fact of facts) {
        if (channelOf(fact) !== 'gateway') {
          throw new RangeError(`fact ${fact.idempotencyKey}: ${fact.type} is not delivered by a gateway`);
        }
        if (fact.region !== region) {
          throw new RangeError(`fact ${fact.idempotencyKey}: region ${fact.region}, but this is ${gateway}`);
        }
        append(encodeGatewayEvent(fact, gateway));
      }
      return entries.length;
    },
    appendRaw: append,
    async start() {
      if (server) return;
      const s = createServer(serve);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, host, () => resolve());
      });
      port = (s.address() as AddressInfo).port;
      server = s;
    },
    async stop() {
      const s = server;
      if (!s) return;
      server = undefined;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      s.closeAllConnections();
      await closed;
    },
  };
  return feed;
}

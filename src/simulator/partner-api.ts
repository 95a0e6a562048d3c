import { createHash } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig, secretSetting } from '../config';
import { parsePartnerApis } from '../contracts/partner-api';
import type { FactOf, PaymentEvent } from '../contracts/payment-event';
import { createLogger, errorMessage } from '../logger';
import { splitByChannel } from './channels';
import { simulatePayments } from './payments';
import { seededRandom } from './random';

// The simulator plays a partner's settlement API: an append-only feed of settlement records in the
// partner's own format behind an opaque, never-ending cursor, a bearer token, a token-bucket rate
// limit (429 + Retry-After) and injectable 500s. It counts how clients behaved, for the tests.

export interface PartnerApiSimulatorOptions {
  /** Bearer tokens it accepts; each has its own bucket. */
  tokens: string[];
  /** Token bucket per bearer token: `burst` requests at once, refilled at `perSecond`. */
  rateLimit?: { burst: number; perSecond: number };
  /** Seeds the payout accounts (IBAN, holder) of the records. */
  seed?: number;
}

export interface PartnerApiCounters {
  requests: number;
  /** 200 pages served. */
  pages: number;
  throttled: number;
  failed: number;
  unauthorized: number;
  badRequests: number;
  /** Requests of a throttled token that arrived before its Retry-After had passed. */
  earlyRetries: number;
  /** First requests of a throttled token after its Retry-After had passed. */
  honouredRetries: number;
}

export interface PartnerApiSimulator {
  server: Server;
  counters: PartnerApiCounters;
  /** Listens (port 0 = any) and answers the base URL. */
  listen(port: number, host?: string): Promise<string>;
  /** Appends settled facts as partner records; a fact delivered twice appears twice, with one id. */
  publish(facts: PaymentEvent[]): number;
  /** Appends records as they are (tests use it for records that break the contract). */
  publishRecords(records: unknown[]): void;
  /** The next `n` authorized requests answer 500. */
  failNext(n: number): void;
  /** Records in the feed so far. */
  size(): number;
  /** Position a cursor stands for (tests check that a poller's cursor only moves forward). */
  cursorOffset(cursor: string): number;
  close(): Promise<void>;
}

const MAX_LIMIT = 500;
// A retry this much before Retry-After ends still counts as honouring it (clock granularity).
const RETRY_AFTER_SLACK_MS = 20;
const HOLDERS = ['Jane Doe', 'Ana Souza', 'Kenji Sato', 'Priya Natarajan', 'Lars Eriksen', 'Chloé Martin'];

/** Record id of a settlement delivery: deterministic from the fact, so a redelivery repeats it. */
export function partnerRecordId(fact: PaymentEvent): string {
  return `stl_${createHash('sha256').update(fact.idempotencyKey).digest('hex').slice(0, 24)}`;
}

/** A valid German IBAN (mod 97) for a seeded account number. */
function germanIban(bankCode: string, account: string): string {
  const bban = `${bankCode}${account}`;
  const numeric = `${bban}131400`; // D=13 E=14, check digits 00
  let rem = 0;
  for (const ch of numeric) rem = (rem * 10 + Number(ch)) % 97;
  return `DE${String(98 - rem).padStart(2, '0')}${bban}`;
}

/** A settled fact in the partner's format (gross and fee in integer minor units). */
export function toPartnerSettlement(fact: FactOf<'settled'>, seed = 1): Record<string, unknown> {
  const rnd = seededRandom(seed ^ createHash('sha256').update(fact.paymentId).digest().readUInt32BE(0));
  return {
    id: partnerRecordId(fact),
    payment_reference: fact.paymentId,
    capture_reference: fact.captureId,
    settlement_reference: fact.settlementId,
    gross: { value: fact.amountMinor, currency: fact.currency },
    fee: { value: fact.feeMinor, currency: fact.currency },
    merchant_id: fact.merchantId,
    region: fact.region,
    settled_at: fact.occurredAt,
    payout_account: {
      iban: germanIban(String(rnd.int(10_000_000, 99_999_999)), String(rnd.int(1_000_000_000, 9_999_999_999))),
      holder_name: rnd.pick(HOLDERS),
    },
  };
}

const CURSOR_PREFIX = 'c1_';
const encodeCursor = (offset: number): string =>
  CURSOR_PREFIX + Buffer.from(JSON.stringify({ o: offset })).toString('base64url');

function decodeCursor(cursor: string): number | undefined {
  if (cursor === '') return 0;
  if (!cursor.startsWith(CURSOR_PREFIX)) return undefined;
  try {
    const o = (JSON.parse(Buffer.from(cursor.slice(CURSOR_PREFIX.length), 'base64url').toString()) as { o?: unknown })
      .o;
    return typeof o === 'number' && Number.isSafeInteger(o) && o >= 0 ? o : undefined;
  } catch {
    return undefined;
  }
}

interface Bucket {
  tokens: number;
  at: number;
  /** While throttled: when its Retry-After ends. */
  retryAt?: number;
}

export function createPartnerApiSimulator(options: PartnerApiSimulatorOptions): PartnerApiSimulator {
  const records: unknown[] = [];
  const tokens = new Set(options.tokens);
  const buckets = new Map<string, Bucket>();
  const counters: PartnerApiCounters = {
    requests: 0,
    pages: 0,
    throttled: 0,
    failed: 0,
    unauthorized: 0,
    badRequests: 0,
    earlyRetries: 0,
    honouredRetries: 0,
  };
  let failures = 0;

  /** Takes one request from the token's bucket, or answers the seconds to wait. */
  const admit = (token: string): { ok: true } | { ok: false; retryAfterS: number } => {
    const limit = options.rateLimit;
    if (!limit) return { ok: true };
    const now = Date.now();
    const b = buckets.get(token) ?? { tokens: limit.burst, at: now };
    buckets.set(token, b);
    b.tokens = Math.min(limit.burst, b.tokens + ((now - b.at) / 1000) * limit.perSecond);
    b.at = now;
    if (b.retryAt !== undefined) {
      if (now < b.retryAt - RETRY_AFTER_SLACK_MS) counters.earlyRetries += 1;
      else {
        counters.honouredRetries += 1;
        b.retryAt = undefined;
      }
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    const retryAfterS = Math.max(1, Math.ceil((1 - b.tokens) / limit.perSecond));
    b.retryAt = now + retryAfterS * 1000;
    return { ok: false, retryAfterS };
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    counters.requests += 1;
    const url = new URL(req.url ?? '/', 'http://partner');
    if (req.method !== 'GET' || url.pathname !== '/v1/settlements') {
      counters.badRequests += 1;
      return reply(res, 404, { error: { type: 'not_found', message: `no route ${req.method ?? ''} ${url.pathname}` } });
    }
    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    const token = auth?.[1];
    if (token === undefined || !tokens.has(token)) {
      counters.unauthorized += 1;
      return reply(res, 401, { error: { type: 'unauthorized', message: 'missing or unknown bearer token' } });
    }
    if (failures > 0) {
      failures -= 1;
      counters.failed += 1;
      return reply(res, 500, { error: { type: 'internal', message: 'injected failure' } });
    }
    const admitted = admit(token);
    if (!admitted.ok) {
      counters.throttled += 1;
      return reply(
        res,
        429,
        { error: { type: 'rate_limited', message: 'slow down' } },
        {
          'retry-after': String(admitted.retryAfterS),
        },
      );
    }
    const offset = decodeCursor(url.searchParams.get('cursor') ?? '');
    const limit = Number(url.searchParams.get('limit') ?? '100');
    if (offset === undefined || offset > records.length || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      counters.badRequests += 1;
      return reply(res, 400, {
        error: { type: 'invalid_request', message: `bad cursor or limit (1..${MAX_LIMIT}): ${url.search}` },
      });
    }
    const data = records.slice(offset, offset + limit);
    counters.pages += 1;
    reply(res, 200, {
      data,
      next_cursor: encodeCursor(offset + data.length),
      has_more: offset + data.length < records.length,
    });
  };

  const server = createServer(handle);
  return {
    server,
    counters,
    listen: (port, host = '127.0.0.1') =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve(`http://${host}:${(server.address() as AddressInfo).port}`));
      }),
    publish(facts) {
      let n = 0;
      for (const fact of facts) {
        if (fact.type !== 'settled') throw new Error(`partner API publishes settled facts only, got ${fact.type}`);
        records.push(toPartnerSettlement(fact, options.seed));
        n += 1;
      }
      return n;
    },
    publishRecords(more) {
      records.push(...more);
    },
    failNext(n) {
      failures = n;
    },
    size: () => records.length,
    cursorOffset(cursor) {
      const o = decodeCursor(cursor);
      if (o === undefined) throw new Error(`not a cursor of this partner API: "${cursor}"`);
      return o;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

// Standalone: serve the local default partner (PARTNER_APIS' first entry) with a seeded run, adding a
// new batch of settlements every few seconds so the cursor never runs dry.
async function main(): Promise<void> {
  const log = createLogger('partner-api-simulator');
  const partner = parsePartnerApis(secretSetting(loadConfig(), 'PARTNER_APIS'))[0];
  if (!partner) throw new Error('PARTNER_APIS lists no partner');
  const sim = createPartnerApiSimulator({
    tokens: [partner.token],
    rateLimit: { burst: 10, perSecond: 5 },
  });
  const url = new URL(partner.url);
  await sim.listen(Number(url.port || 80), url.hostname);
  let batch = 0;
  const publishBatch = (): void => {
    const runId = `pa${Date.now().toString(36)}b${batch}`;
    const sim1 = simulatePayments({ payments: 20, seed: 1000 + batch, duplicateRate: 0.1, runId });
    const n = sim.publish(splitByChannel(sim1.deliveries)['partner-api']);
    log.info('published settlements', { batch, records: n, total: sim.size() });
    batch += 1;
  };
  publishBatch();
  setInterval(publishBatch, 10_000);
  log.info('ready', { partner: partner.id, url: partner.url });
}

if (require.main === module) {
  main().catch((err: unknown) => {
    createLogger('partner-api-simulator').error('simulator failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

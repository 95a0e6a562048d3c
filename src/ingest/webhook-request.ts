import { createHash } from 'node:crypto';

// The webhook edge's request-level checks (docs/edge.md, "Hostile input"): what a request may look like
// and cost before anything walks it, and what identifies it for replay detection and quarantine.

/** A request refused with an HTTP status and a reason in the sender's words. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/**
 * What one request may cost, checked before any recursive walk: nesting far above any partner's events
 * (Stripe's are ~8 deep, Adyen's ~5) and far below what a recursive walk can take; PII values (an HMAC
 * and a vault entry each) far above a real event's handful. Body bytes are WEBHOOK_MAX_BODY_BYTES.
 */
export const REQUEST_BUDGET = { maxDepth: 32, maxPiiValues: 1000 } as const;

/** The partner id of `/webhooks/<segment>`; a segment that is not valid percent-encoding is the sender's error. */
export function partnerIdFromPath(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `path segment "${segment.slice(0, 100)}" is not valid percent-encoding`);
  }
}

/**
 * JSON only: `application/json` or a `+json` type, any parameters, a charset only if UTF-8. No header at
 * all is read as JSON (the body still has to parse); anything else (a form, text/plain) is 415.
 */
export function checkContentType(header: string | undefined): void {
  if (header === undefined || header.trim() === '') return;
  const [type = '', ...params] = header.split(';').map((part) => part.trim().toLowerCase());
  if (type !== 'application/json' && !/^application\/[a-z0-9.+-]+\+json$/.test(type)) {
    throw new HttpError(415, `Content-Type "${header.slice(0, 100)}" is not application/json`);
  }
  for (const param of params) {
    const [name, value = ''] = param.split('=').map((s) => s.trim());
    if (name === 'charset' && !['utf-8', 'utf8', '"utf-8"'].includes(value)) {
      throw new HttpError(415, `Content-Type "${header.slice(0, 100)}": the body must be UTF-8`);
    }
  }
}

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The first byte offset at which `json` opens more than `maxDepth` nested arrays/objects, or -1. One pass
 * over the bytes, no recursion: brackets inside strings do not count (UTF-8 continuation bytes never
 * equal an ASCII quote or bracket). Malformed JSON is left to JSON.parse.
 */
export function nestingBeyond(json: Uint8Array, maxDepth: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > maxDepth) return i;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
  }
  return -1;
}

/**
 * The body as JSON, nesting checked first. Keys such as `__proto__` and `constructor` stay what JSON.parse
 * makes them, own data properties of plain objects, and every copy the edge makes keeps them so
 * (tokenize.ts): the raw event and the fact are read from the same fields.
 */
export function parseJsonBody(raw: Uint8Array, maxDepth: number = REQUEST_BUDGET.maxDepth): unknown {
  const beyond = nestingBeyond(raw, maxDepth);
  if (beyond !== -1) {
    throw new HttpError(400, `JSON body nests more than ${maxDepth} arrays/objects deep (at byte ${beyond})`);
  }
  try {
    return JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `malformed JSON body: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Signatures already accepted, by meaning: a key is what the sender signed (partner, signed timestamp,
 * the digest we computed), never the header's spelling. Entries leave after `windowMs`, and the oldest
 * leave first past `maxEntries`: replay detection saves work, downstream dedup by idempotency key is
 * what keeps money safe, so a bounded memory is the right trade.
 */
export class ReplayWindow {
  private readonly seen = new Map<string, number>();

  constructor(
    readonly windowMs: number,
    readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  has(key: string): boolean {
    const at = this.seen.get(key);
    return at !== undefined && this.now() - at <= this.windowMs;
  }

  remember(key: string): void {
    const now = this.now();
    // A Map iterates in insertion order, i.e. oldest first: stop at the first entry still in the window.
    for (const [k, at] of this.seen) {
      if (now - at <= this.windowMs && this.seen.size < this.maxEntries) break;
      this.seen.delete(k);
    }
    this.seen.delete(key); // re-inserted at the end: its window starts now
    this.seen.set(key, now);
  }

  get size(): number {
    return this.seen.size;
  }
}

/** Stripe-style: partner, the signed unix time and the HMAC that matched (what `t=` and `v1=` mean). */
export const stripeReplayKey = (partnerId: string, timestamp: number, digestHex: string): string =>
  `stripe|${partnerId}|${timestamp}|${digestHex}`;

/** Adyen-style: partner and the HMAC over the eight signed fields (Adyen signs no timestamp). */
export const adyenReplayKey = (partnerId: string, digestHex: string): string => `adyen|${partnerId}|${digestHex}`;

/** Longest partner event id the edge uses as is; longer ones fail the contract and get a digest. */
const MAX_EVENT_ID_LENGTH = 200;

/**
 * The event id of a (tokenized) event: the partner's, when it has a usable one, else `unidentified-` and
 * a digest of the tokenized event, so two id-less events never share a quarantine key and a partner's
 * retry of one keeps it. A digest of tokens, never of originals: a hash of a bare card number can be
 * reversed by trying every card number.
 */
export function eventIdOrDigest(partnerEventId: unknown, tokenizedEvent: unknown): string {
  if (typeof partnerEventId === 'string' && partnerEventId.length > 0 && partnerEventId.length <= MAX_EVENT_ID_LENGTH) {
    return partnerEventId;
  }
  const digest = createHash('sha256')
    .update(JSON.stringify(tokenizedEvent) ?? 'undefined')
    .digest('hex');
  return `unidentified-${digest.slice(0, 32)}`;
}

import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { HEADERS, webhookIdempotencyKey } from '../contracts/envelope';
import { adyenEventId } from '../contracts/partner-webhooks';
import { STRIPE_SIGNATURE_HEADER, signAdyen, signStripe } from '../ingest/signatures';
import type { PartnerConfig } from '../ingest/webhook-receiver';
import { CLAIM_CHECK_HEADER } from '../streams/publish';
import { type HealthzStats, pollHealthz } from './healthz-poller';
import { seededRandom as simulatorRandom } from '../simulator/random';

// The webhook edge under a seeded stream of hostile requests (issue 11): sizes, types, encodings, nesting,
// header oddities, forgeries, replays and `__proto__` keys, interleaved with validly signed, schema-valid
// events of both schemes. The same generator drives `npm run fuzz:edge` and test/integration/edge-fuzz.test.ts;
// both then check the committed topics: every event answered 2xx is on the raw topic exactly once.

/** mulberry32 (the simulator's): the same sequence for the same seed on every machine. */
export function seededRandom(seed: number): () => number {
  const random = simulatorRandom(seed);
  return () => random.next();
}

/**
 * A number spelled in the letters g–v (base 16): ids without digits or `@`, which the tokenizer leaves as
 * they are, so a valid event's idempotency key is known before it is sent.
 */
export const lettersOf = (n: number): string =>
  Math.floor(n)
    .toString(16)
    .replace(/[0-9a-f]/g, (c) => String.fromCharCode(103 + parseInt(c, 16)));

/**
 * authentic: sent by the partner (signed with a configured secret, fresh); forgery: anything else, a replayed
 * Stripe-style signature included. A forgery answered 2xx with an accepted event is an accepted forgery.
 * An Adyen-style replay is authentic: it may be answered 2xx, but must produce nothing again.
 */
export type FuzzTrust = 'authentic' | 'forgery' | 'adyen-replay';

export interface FuzzRequest {
  index: number;
  /** What kind of input it is (the summary counts answers per class). */
  cls: string;
  trust: FuzzTrust;
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body: Buffer;
  /** Idempotency keys of the events it carries, when they are known before sending (ids without PII). */
  keys: string[];
  /** Send only after this request was answered (a replay of it). */
  after?: number;
}

export interface FuzzAnswer {
  status: number;
  /** Events the receiver took (`accepted` of a 2xx body). */
  accepted: number;
  body: string;
  ms: number;
}

export interface FuzzPartners {
  stripe: PartnerConfig;
  adyen: PartnerConfig;
}

export function fuzzPartners(partners: readonly PartnerConfig[]): FuzzPartners {
  const stripe = partners.find((p) => p.scheme === 'stripe');
  const adyen = partners.find((p) => p.scheme === 'adyen');
  if (!stripe || !adyen)
    throw new Error('the edge fuzz needs a Stripe-style and an Adyen-style partner in WEBHOOK_PARTNERS');
  return { stripe, adyen };
}

const JSON_TYPE = 'application/json';

/** `depth` arrays/objects around `leaf`, alternating, without recursion. */
function nestedJson(depth: number, leaf: string): string {
  let open = '';
  let close = '';
  for (let i = 0; i < depth; i++) {
    open += i % 2 === 0 ? '{"n":' : '[';
    close = (i % 2 === 0 ? '}' : ']') + close;
  }
  return open + leaf + close;
}

type Kind = (g: EdgeFuzzer, index: number) => Omit<FuzzRequest, 'index'>;

interface SentStripe {
  index: number;
  body: Buffer;
  /** As signed (`t=<unix>,v1=<hex>`), whatever spelling was sent. */
  header: string;
}

interface SentAdyen {
  index: number;
  item: Record<string, unknown>;
}

/** Generates request `index` from the seed and what it generated before (replays refer back). */
export class EdgeFuzzer {
  readonly random: () => number;
  private readonly stripeSent: SentStripe[] = [];
  private readonly adyenSent: SentAdyen[] = [];
  private readonly onceUsed = new Set<string>();
  private serial = 0;

  constructor(
    readonly seed: number,
    /** Letters only; makes this run's event ids unique on shared topics. */
    readonly runTag: string,
    readonly partners: FuzzPartners,
    readonly maxBodyBytes: number,
    readonly mix: FuzzMix = 'all',
    readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {
    this.random = seededRandom(seed);
  }

  int(min: number, max: number): number {
    return min + Math.floor(this.random() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  /** A new id of this run, letters only. */
  id(prefix: string): string {
    return `${prefix}_fz_${this.runTag}_${lettersOf(this.serial++)}`;
  }

  once(name: string): boolean {
    if (this.onceUsed.has(name)) return false;
    this.onceUsed.add(name);
    return true;
  }

  stripeEvent(extraObject: Record<string, unknown> = {}): Record<string, unknown> {
    const paymentId = this.id('pay');
    const object: Record<string, unknown> = {
      paymentId,
      merchantId: 'm-1',
      currency: this.pick(['EUR', 'USD', 'GBP']),
      captureId: this.id('cap'),
      amountMinor: this.int(1, 500_000),
      platformFeeMinor: this.int(0, 100),
      ...extraObject,
    };
    if (this.random() < 0.5) {
      object['customer'] = {
        email: `${lettersOf(this.serial)}@example.com`,
        name: 'Jane Doe',
        card: '4242 4242 4242 4242',
      };
    }
    return { id: this.id('evt'), type: 'payment.captured', created: this.now(), data: { object } };
  }

  stripeKey(event: Record<string, unknown>): string {
    return webhookIdempotencyKey(this.partners.stripe.id, String(event['id']));
  }

  signedStripe(
    cls: string,
    body: Buffer | string,
    keys: string[],
    options: { t?: number; secret?: string; headers?: Record<string, string | string[]>; path?: string } = {},
  ): Omit<FuzzRequest, 'index'> {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    const t = options.t ?? this.now();
    const header = signStripe(bytes, options.secret ?? this.pick(this.partners.stripe.secrets), t);
    return {
      cls,
      trust: 'authentic',
      method: 'POST',
      path: options.path ?? `/webhooks/${this.partners.stripe.id}`,
      headers: { 'content-type': JSON_TYPE, [STRIPE_SIGNATURE_HEADER]: header, ...options.headers },
      body: bytes,
      keys,
    };
  }

  /** A schema-valid Adyen-style item, signed (with or without its base64 padding). */
  adyenItem(extra: Record<string, unknown> = {}, key?: string): Record<string, unknown> {
    const item: Record<string, unknown> = {
      pspReference: this.id('psp'),
      merchantAccountCode: 'm-2',
      merchantReference: this.id('pay'),
      amount: { value: this.int(1, 900_000), currency: this.pick(['USD', 'EUR']) },
      eventCode: this.pick(['CAPTURE', 'AUTHORISATION', 'REFUND']),
      eventDate: new Date(this.now() * 1000).toISOString(),
      success: this.pick(['true', 'false']),
      ...extra,
    };
    const signature = signAdyen(item, key ?? this.pick(this.partners.adyen.secrets));
    const additional = (extra['additionalData'] as Record<string, unknown> | undefined) ?? {};
    item['additionalData'] = {
      ...additional,
      hmacSignature: this.random() < 0.2 ? signature.replace(/=+$/, '') : signature,
    };
    return item;
  }

  adyenKey(item: Record<string, unknown>): string {
    return webhookIdempotencyKey(this.partners.adyen.id, adyenEventId(item));
  }

  adyenRequest(
    cls: string,
    trust: FuzzTrust,
    items: Record<string, unknown>[],
    keys: string[],
    body?: string,
  ): Omit<FuzzRequest, 'index'> {
    const text =
      body ??
      JSON.stringify({
        live: 'false',
        notificationItems: items.map((NotificationRequestItem) => ({ NotificationRequestItem })),
      });
    return {
      cls,
      trust,
      method: 'POST',
      path: `/webhooks/${this.partners.adyen.id}`,
      headers: { 'content-type': JSON_TYPE },
      body: Buffer.from(text),
      keys,
    };
  }

  unsigned(cls: string, body: Buffer | string, headers: Record<string, string | string[]> = {}, path?: string) {
    return {
      cls,
      trust: 'forgery' as const,
      method: 'POST',
      path: path ?? `/webhooks/${this.pick([this.partners.stripe.id, this.partners.adyen.id])}`,
      headers: { 'content-type': JSON_TYPE, ...headers },
      body: typeof body === 'string' ? Buffer.from(body) : body,
      keys: [],
    };
  }

  /** Printable ASCII, tabs and Latin-1 (what an HTTP header value may carry). */
  garbageText(length: number): string {
    let s = '';
    for (let i = 0; i < length; i++) {
      const r = this.random();
      s += String.fromCharCode(r < 0.05 ? 9 : r < 0.8 ? this.int(0x20, 0x7e) : this.int(0x80, 0xff));
    }
    return s;
  }

  randomBytes(length: number): Buffer {
    const b = Buffer.alloc(length);
    for (let i = 0; i < length; i++) b[i] = this.int(0, 255);
    return b;
  }

  rememberStripe(index: number, request: Omit<FuzzRequest, 'index'>, header: string): void {
    this.stripeSent.push({ index, body: request.body, header });
    if (this.stripeSent.length > 64) this.stripeSent.shift(); // replays stay well inside the 300 s tolerance
  }

  rememberAdyen(index: number, items: Record<string, unknown>[]): void {
    for (const item of items) this.adyenSent.push({ index, item });
    if (this.adyenSent.length > 64) this.adyenSent.shift();
  }

  recentStripe(): SentStripe | undefined {
    return this.stripeSent.length > 0 ? this.pick(this.stripeSent) : undefined;
  }

  recentAdyen(): SentAdyen | undefined {
    return this.adyenSent.length > 0 ? this.pick(this.adyenSent) : undefined;
  }

  next(index: number): FuzzRequest {
    const kinds = MIXES[this.mix];
    const r = this.random() * kinds.reduce((n, [w]) => n + w, 0);
    let acc = 0;
    for (const [weight, kind] of kinds) {
      acc += weight;
      if (r < acc) return { index, ...kind(this, index) };
    }
    return { index, ...kinds[0]![1](this, index) };
  }
}

/**
 * Other spellings of the Stripe-style signature header `header` (`t=<unix>,v1=<hex>`) that carry the same
 * signature: case, spaces, order, an extra `v0`, a repeated or a malformed `v1` beside the real one, a leading
 * zero in `t`. The edge must verify each as `header` and refuse each as a replay once `header` was accepted.
 */
export function stripeSignatureSpellings(header: string): string[] {
  const t = /t=(\d+)/.exec(header)![1]!;
  const hex = /v1=([0-9a-f]{64})/i.exec(header)![1]!.toLowerCase();
  return [
    `t=${t},v1=${hex.toUpperCase()}`,
    ` t=${t} , v1=${hex} `,
    ` t = ${t} , v1 = ${hex} `,
    `v1=${hex},t=${t}`,
    `t=${t},v0=${'a'.repeat(64)},v1=${hex}`,
    `t=${t},v1=${hex},v1=${hex}`,
    `t=0${t},v1=${hex}`,
    `t=${t},v1=${'0'.repeat(64)},v1=${hex}`,
  ];
}

const respell = (g: EdgeFuzzer, header: string): string => g.pick(stripeSignatureSpellings(header));

const validStripe: Kind = (g, index) => {
  const event = g.stripeEvent();
  const req = g.signedStripe('valid-stripe', JSON.stringify(event), [g.stripeKey(event)]);
  g.rememberStripe(index, req, req.headers[STRIPE_SIGNATURE_HEADER] as string);
  return req;
};

const validStripeRespelled: Kind = (g, index) => {
  const event = g.stripeEvent();
  const req = g.signedStripe('valid-stripe-respelled', JSON.stringify(event), [g.stripeKey(event)]);
  const signed = req.headers[STRIPE_SIGNATURE_HEADER] as string;
  req.headers[STRIPE_SIGNATURE_HEADER] = respell(g, signed);
  g.rememberStripe(index, req, signed);
  return req;
};

const validAdyen: Kind = (g, index) => {
  const items = Array.from({ length: g.int(1, 3) }, () => g.adyenItem());
  g.rememberAdyen(index, items);
  return g.adyenRequest(
    'valid-adyen',
    'authentic',
    items,
    items.map((i) => g.adyenKey(i)),
  );
};

/** Signed bodies that are not an event object: quarantined (each one distinct, so each has its own key). */
const signedNonObject: Kind = (g) => {
  const nonce = g.id('n');
  const options = [
    ...(['null', 'true', 'false', '{}', '[]', '""', '0'] as const).filter((b) => g.once(`signed ${b}`)),
    `${g.int(1, 1e9)}.${g.int(0, 999)}`,
    JSON.stringify(nonce),
    JSON.stringify([nonce, null, { id: nonce }]),
    JSON.stringify([g.stripeEvent()]),
  ];
  return g.signedStripe('signed-non-object', g.pick(options), []);
};

/** Schema fields of the wrong type: quarantined with the reason (or a fact, where the contract allows it). */
const signedWrongTypes: Kind = (g) => {
  const event = g.stripeEvent();
  const object = (event['data'] as { object: Record<string, unknown> }).object;
  const mutate = g.pick<(e: Record<string, unknown>) => boolean>([
    (e) => ((e['data'] = null), true),
    (e) => ((e['data'] = { object: [object] }), true),
    (e) => ((e['data'] = 'object'), true),
    (e) => ((e['created'] = String(e['created'])), true),
    (e) => ((e['created'] = g.pick([1e15, 253_402_300_800, -1, 0, 1.5, 8.64e12 + 1])), true),
    (e) => ((e['type'] = g.pick([[], 7, null, 'captured', 'payment.CAPTURED'])), true),
    (e) => ((e['id'] = g.pick([42, null, [], { id: 'x' }, '', 'x'.repeat(201)])), false),
    () => ((object['amountMinor'] = g.pick(['100', null, -5, 1.25, [1], 1e13])), true),
    () => ((object['currency'] = g.pick([978, 'euro', null, ''])), true),
    () => ((object['paymentId'] = g.pick([null, 7, { a: 1 }, ''])), true),
  ]);
  const keepsId = mutate(event);
  event['nonce'] = g.id('n'); // distinct content, so an id-less one still has its own key
  return g.signedStripe('signed-wrong-types', JSON.stringify(event), keepsId ? [g.stripeKey(event)] : []);
};

const signedProtoKeys: Kind = (g) => {
  const event = g.stripeEvent();
  const inner = JSON.stringify(event);
  const choice = g.int(0, 3);
  if (choice === 0) {
    // A top-level __proto__ wrapping an event: no id of its own, quarantined.
    const body = `{"__proto__":${inner},"constructor":{"prototype":{"polluted":true}},"nonce":"${g.id('n')}"}`;
    return g.signedStripe('signed-proto', body, []);
  }
  const object = JSON.stringify((event['data'] as { object: unknown }).object);
  const poisoned =
    choice === 1
      ? `{"__proto__":{"polluted":true,"amountMinor":1},${object.slice(1)}`
      : choice === 2
        ? `{"constructor":{"prototype":{"polluted":true}},${object.slice(1)}`
        : `{"hasOwnProperty":1,"toString":"x","valueOf":[],${object.slice(1)}`;
  const body = inner.replace(object, poisoned);
  return g.signedStripe('signed-proto', body, [g.stripeKey(event)]);
};

const signedNesting: Kind = (g) => {
  const event = g.stripeEvent();
  const depth = g.pick([g.int(1, 28), g.int(29, 40), g.int(100, 3000), 5000, 20_000]);
  const leaf = g.pick(['"jane@example.com"', '1', 'null', '"x"', '{}', '[]']);
  const body = JSON.stringify(event).replace('"paymentId"', `"deep":${nestedJson(depth, leaf)},"paymentId"`);
  return g.signedStripe(depth <= 28 ? 'signed-nested' : 'signed-nested-deep', body, [g.stripeKey(event)]);
};

const signedEncodings: Kind = (g) => {
  const event = g.stripeEvent({ note: 'NOTE' });
  const text = JSON.stringify(event);
  const [before, after] = text.split('NOTE') as [string, string];
  const choice = g.pick(['invalid-utf8', 'overlong-utf8', 'bom', 'utf16le', 'utf16be', 'nul', 'lone-surrogate']);
  const bodies: Record<string, () => Buffer> = {
    'invalid-utf8': () =>
      Buffer.concat([Buffer.from(before), Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0]), Buffer.from(after)]),
    'overlong-utf8': () =>
      Buffer.concat([Buffer.from(before), Buffer.from([0xc0, 0xaf, 0xe0, 0x80, 0xaf]), Buffer.from(after)]),
    bom: () => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]),
    utf16le: () => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]),
    utf16be: () => Buffer.from(text, 'utf16le').swap16(),
    nul: () => Buffer.from(`${before}\\u0000\\u0001${after}`),
    'lone-surrogate': () => Buffer.from(`${before}\\ud800\\udfff\\udc00${after}`),
  };
  return g.signedStripe(`signed-encoding-${choice}`, bodies[choice]!(), [g.stripeKey(event)]);
};

/** Bodies around the limit: just under it (accepted), just over it, far over it. */
const signedSizes: Kind = (g) => {
  const event = g.stripeEvent({ note: 'NOTE' });
  const shell = JSON.stringify(event);
  const choice = g.pick(['just-under', 'at-limit', 'just-over', 'emails-under']);
  const target =
    choice === 'just-over'
      ? g.maxBodyBytes + g.int(1, 2048)
      : choice === 'at-limit'
        ? g.maxBodyBytes
        : g.maxBodyBytes - g.int(1, 4096);
  const room = target - Buffer.byteLength(shell) + 'NOTE'.length;
  let note = '';
  if (choice === 'emails-under') {
    // Grows under tokenization (each address a ~45-byte token), within the PII budget.
    const emails = Array.from({ length: 900 }, (_, i) => `${lettersOf(i)}@x.io`).join(' ');
    note = emails.slice(0, room);
  }
  note += 'z'.repeat(Math.max(0, room - note.length));
  const body = shell.replace('NOTE', note);
  return g.signedStripe(`signed-size-${choice}`, body, [g.stripeKey(event)]);
};

const signedPiiBudget: Kind = (g) => {
  const n = g.pick([10, 999, 1001, 5000]);
  const event = g.stripeEvent({ note: Array.from({ length: n }, (_, i) => `${lettersOf(i)}q@x.io`).join(' ') });
  return g.signedStripe(`signed-pii-${n > 1000 ? 'over' : 'under'}`, JSON.stringify(event), [g.stripeKey(event)]);
};

/**
 * Signed bodies just under the limit, dense with what one PII detector looks at but mostly is not PII (numbers
 * that fail Luhn, mod 97 or a phone shape, addresses without a domain), or with thousands of short strings: the
 * most scanning one request can ask of the tokenizer. Accepted, or 413 where the look-alikes are PII after all.
 */
const signedDense: Kind = (g) => {
  const event = g.stripeEvent({ note: 'NOTE' });
  const shell = JSON.stringify(event);
  const shapes: Record<string, string> = {
    'card-groups': '4242 4242 4242 4241 ',
    'digit-pairs': '12 34 ',
    'dashed-digits': g.pick(['1-', '2-']),
    'trunk-phones': '01 23 ',
    'plus-digits': '+1 ',
    'iban-like': 'DE00 0000 0000 0000 0000 00 ',
    'email-like': 'ab@cd.e1 ',
    'short-strings': '"a12345678",',
  };
  const shape = g.pick(Object.keys(shapes));
  const unit = shapes[shape]!;
  const room = g.maxBodyBytes - g.int(1, 4096) - Buffer.byteLength(shell) + '"NOTE"'.length - 4;
  const fill = unit.repeat(Math.max(0, Math.floor(room / unit.length)));
  const note = shape === 'short-strings' ? `[${fill}"x"]` : `"${fill}"`;
  const body = shell.replace('"NOTE"', note);
  return g.signedStripe(`signed-dense-${shape}`, body, [g.stripeKey(event)]);
};

const signedContentType: Kind = (g) => {
  const event = g.stripeEvent();
  const type = g.pick([
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/json; charset=latin1',
    'application/json; charset=utf-16',
    '',
    'application/vnd.partner+json',
    'Application/JSON; Charset="UTF-8"',
    ['application/json', 'text/plain'],
    'application/json\t',
  ]);
  const req = g.signedStripe('signed-content-type', JSON.stringify(event), [g.stripeKey(event)]);
  if (type === '') delete req.headers['content-type'];
  else req.headers['content-type'] = type;
  return req;
};

const signedPathEncoding: Kind = (g) => {
  const event = g.stripeEvent();
  const id = g.partners.stripe.id;
  const path = g.pick([
    `/webhooks/${encodeURIComponent(id).replace(/-/g, '%2D')}`,
    `/webhooks/%${id.charCodeAt(0).toString(16)}${id.slice(1)}`,
    `/webhooks/${id}?x=%`,
    `/webhooks/${id}%2F`,
    `/webhooks/${id}/`,
    `/webhooks/${id.toUpperCase()}`,
  ]);
  return g.signedStripe('signed-path-encoding', JSON.stringify(event), [g.stripeKey(event)], { path });
};

/** Signed Adyen items whose signed or unsigned fields are hostile. */
const adyenHostileSigned: Kind = (g) => {
  const choice = g.int(0, 7);
  const extras: Record<string, unknown>[] = [
    { amount: { value: '5000', currency: 'USD' } },
    { success: true },
    { eventCode: 'NOT_A_CODE' },
    { amount: [5000, 'USD'] },
    { eventDate: 'yesterday', reason: nestedJson(3, '"x"') },
    { additionalData: { __proto__: 1, constructor: { prototype: { polluted: true } }, note: 'jane@example.com' } },
    { additionalData: JSON.parse(`{"deep":${nestedJson(g.int(1, 25), '"x"')}}`) as Record<string, unknown> },
    { merchantReference: '' },
  ];
  const item = g.adyenItem(extras[choice]);
  if (choice === 5) {
    // JSON.stringify drops a __proto__ set by a literal; spell it into the body as a partner would.
    const body = JSON.stringify({ live: 'false', notificationItems: [{ NotificationRequestItem: item }] }).replace(
      '"additionalData":{',
      '"additionalData":{"__proto__":{"polluted":true},',
    );
    return g.adyenRequest('adyen-signed-hostile', 'authentic', [item], [g.adyenKey(item)], body);
  }
  return g.adyenRequest('adyen-signed-hostile', 'authentic', [item], [g.adyenKey(item)]);
};

/** A valid signature with an unsigned field nested past the budget: refused before the signature is checked. */
const adyenDeepUnsigned: Kind = (g) => {
  const item = g.adyenItem();
  const depth = g.pick([33, 200, 5000, 50_000]);
  const body = JSON.stringify({ live: 'false', notificationItems: [{ NotificationRequestItem: item }] }).replace(
    '"hmacSignature"',
    `"deep":${nestedJson(depth, '"jane@example.com"')},"hmacSignature"`,
  );
  return g.adyenRequest('adyen-deep-unsigned', 'authentic', [item], [g.adyenKey(item)], body);
};

const forgedStripe: Kind = (g) => {
  const event = g.stripeEvent();
  const body = JSON.stringify(event);
  const choice = g.pick(['wrong-secret', 'tampered', 'unsigned', 'stale', 'future', 'other-partner-secret']);
  const t = g.now();
  const secret =
    choice === 'wrong-secret'
      ? `whsec_${g.id('forged')}`
      : choice === 'other-partner-secret'
        ? g.partners.adyen.secrets[0]!
        : g.partners.stripe.secrets[0]!;
  const when = choice === 'stale' ? t - g.int(301, 100_000) : choice === 'future' ? t + g.int(301, 100_000) : t;
  const req = g.signedStripe(`forged-stripe-${choice}`, body, [g.stripeKey(event)], { secret, t: when });
  req.trust = 'forgery';
  if (choice === 'unsigned') delete req.headers[STRIPE_SIGNATURE_HEADER];
  if (choice === 'tampered') {
    const tampered = g.pick([
      body.replace(/"amountMinor":\d+/, '"amountMinor":1'),
      `${body} `,
      body.replace('"m-1"', '"m-9"'),
      body.replace('payment.captured', 'payment.refunded'),
      `{"id":"${g.id('evt')}",${body.slice(1)}`,
    ]);
    req.body = Buffer.from(tampered === body ? `${body}\n` : tampered);
  }
  return req;
};

const garbageSignatureHeader: Kind = (g) => {
  const event = g.stripeEvent();
  const body = JSON.stringify(event);
  const t = g.now();
  const hex = (n: number): string => Array.from({ length: n }, () => g.int(0, 15).toString(16)).join('');
  const header = g.pick<string | string[]>([
    g.garbageText(g.int(0, 200)),
    `t=${t}`,
    `v1=${hex(64)}`,
    `t=${t},v1=${hex(63)}`,
    `t=${t},v1=${hex(64)}z`,
    `t=${t},${Array.from({ length: 9 }, () => `v1=${hex(64)}`).join(',')}`,
    `t=${t},v1=${'ab'.repeat(3000)}`,
    `t=abc,v1=${hex(64)}`,
    `t=${t}${t},v1=${hex(64)}`,
    `t=-${t},v1=${hex(64)}`,
    `t=${t},t=${t},v1=${hex(64)}`,
    `=,=,,,`,
    [`t=${t},v1=${hex(64)}`, `t=${t},v1=${hex(64)}`],
    [signStripe(body, `whsec_${g.id('x')}`, t), g.garbageText(40)],
  ]);
  const req = g.signedStripe('forged-stripe-garbage-header', body, [g.stripeKey(event)]);
  req.trust = 'forgery';
  req.headers[STRIPE_SIGNATURE_HEADER] = header;
  return req;
};

const forgedAdyen: Kind = (g) => {
  const choice = g.pick([
    'wrong-key',
    'tampered-amount',
    'tampered-reference',
    'no-signature',
    'malformed',
    'mixed',
    'stripe-secret',
  ]);
  const key = choice === 'wrong-key' ? 'ab'.repeat(32) : undefined;
  const item = g.adyenItem({}, key);
  const additional = item['additionalData'] as Record<string, unknown>;
  if (choice === 'tampered-amount') item['amount'] = { value: 1, currency: 'USD' };
  if (choice === 'tampered-reference') item['merchantReference'] = g.id('pay');
  if (choice === 'no-signature') delete additional['hmacSignature'];
  if (choice === 'malformed')
    additional['hmacSignature'] = g.pick([g.garbageText(44), 42, null, ['x'], 'A'.repeat(45)]);
  if (choice === 'stripe-secret')
    additional['hmacSignature'] = signStripe(JSON.stringify(item), g.partners.stripe.secrets[0]!, 1);
  const items =
    choice === 'mixed' ? [g.adyenItem(), { ...g.adyenItem(), amount: { value: 7, currency: 'EUR' } }] : [item];
  return g.adyenRequest(
    `forged-adyen-${choice}`,
    'forgery',
    items,
    items.map((i) => g.adyenKey(i)),
  );
};

const replayStripe: Kind = (g, index) => {
  const sent = g.recentStripe();
  if (!sent) return validStripe(g, index);
  const header = g.random() < 0.4 ? sent.header : respell(g, sent.header);
  return {
    cls: 'replay-stripe',
    trust: 'forgery',
    method: 'POST',
    path: `/webhooks/${g.partners.stripe.id}`,
    headers: { 'content-type': JSON_TYPE, [STRIPE_SIGNATURE_HEADER]: header },
    body: sent.body,
    keys: [],
    after: sent.index,
  };
};

const replayAdyen: Kind = (g, index) => {
  const sent = g.recentAdyen();
  if (!sent) return validAdyen(g, index);
  const item = structuredClone(sent.item);
  const additional = item['additionalData'] as Record<string, unknown>;
  const choice = g.int(0, 2);
  if (choice === 1) additional['hmacSignature'] = String(additional['hmacSignature']).replace(/=+$/, '');
  if (choice === 2) item['eventDate'] = '2030-01-01T00:00:00Z';
  const items = g.random() < 0.3 ? [item, item] : [item];
  return { ...g.adyenRequest('replay-adyen', 'adyen-replay', items, []), after: sent.index };
};

const garbageBody: Kind = (g) => {
  const choice = g.pick([
    'empty',
    'random-bytes',
    'random-text',
    'truncated',
    'over-limit',
    'declared-over-limit',
    'deep-brackets',
    'deep-strings',
    'numbers',
    'proto',
  ]);
  const bodies: Record<string, () => Buffer | string> = {
    empty: () => '',
    'random-bytes': () => g.randomBytes(g.int(1, 4096)),
    'random-text': () => g.garbageText(g.int(1, 2048)),
    truncated: () => JSON.stringify(g.stripeEvent()).slice(0, g.int(1, 100)),
    'over-limit': () => 'x'.repeat(g.maxBodyBytes + g.int(1, 100_000)),
    'declared-over-limit': () => 'x'.repeat(g.maxBodyBytes * 4),
    'deep-brackets': () => '['.repeat(g.int(33, 200_000)),
    'deep-strings': () => `[${'"[",'.repeat(g.int(1, 20_000))}1]`,
    numbers: () => g.pick(['1e999', '-0', '123456789012345678901234567890', 'NaN', 'Infinity', '0x10']),
    proto: () => '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}',
  };
  return g.unsigned(`garbage-body-${choice}`, bodies[choice]!());
};

const garbagePath: Kind = (g) => {
  const path = g.pick([
    '/webhooks/%',
    '/webhooks/%E0%A4%A',
    '/webhooks/%zz',
    '/webhooks/acme%',
    '/webhooks/%00',
    '/webhooks/%C0%AF',
    '/webhooks/..%2F..%2Fetc%2Fpasswd',
    '/webhooks/nobody',
    '/webhooks/',
    '/webhooks//',
    '/webhooks/a/b',
    `/webhooks/${'%41'.repeat(3000)}`,
    '/webhook',
    '/',
    '/healthz/../webhooks/x',
  ]);
  const req = g.unsigned('garbage-path', JSON.stringify(g.stripeEvent()), {}, path);
  req.method = g.pick(['POST', 'POST', 'GET', 'PUT', 'DELETE']);
  return req;
};

const garbageAdyen: Kind = (g) => {
  const body = g.pick([
    '{"notificationItems":null}',
    '{"notificationItems":[]}',
    '{"notificationItems":"x"}',
    '{"notificationItems":[1,2]}',
    '{"notificationItems":[{"NotificationRequestItem":"x"}]}',
    '{"notificationItems":[{"NotificationRequestItem":null}]}',
    '{"notificationItems":[{"NotificationRequestItem":{}}]}',
    '{"notificationItems":[{"NotificationRequestItem":{"additionalData":{"hmacSignature":[]}}}]}',
    '{"notificationItems":[{"NotificationRequestItem":{"amount":{"value":{"__proto__":1}}}}]}',
    `{"notificationItems":[{"NotificationRequestItem":${nestedJson(g.int(10, 31), '1')}}]}`,
    '[]',
    'null',
  ]);
  return g.unsigned('garbage-adyen', body, {}, `/webhooks/${g.partners.adyen.id}`);
};

const duplicatedHeaders: Kind = (g) => {
  const event = g.stripeEvent();
  const req = g.signedStripe('duplicated-headers', JSON.stringify(event), [g.stripeKey(event)]);
  const header = req.headers[STRIPE_SIGNATURE_HEADER] as string;
  // Node joins repeated unknown headers with ", "; a second `t=` is refused, so these stay authentic-or-4xx.
  req.headers[STRIPE_SIGNATURE_HEADER] = g.pick([
    [header, header],
    [header, ''],
    ['', header],
  ]);
  return req;
};

// Weights: about a third validly signed events, the rest spread over the hostile kinds.
const KINDS: [number, Kind][] = [
  [18, validStripe],
  [4, validStripeRespelled],
  [14, validAdyen],
  [3, signedNonObject],
  [4, signedWrongTypes],
  [3, signedProtoKeys],
  [4, signedNesting],
  [3, signedEncodings],
  [2, signedSizes],
  [1, signedPiiBudget],
  [2, signedDense],
  [3, signedContentType],
  [2, signedPathEncoding],
  [4, adyenHostileSigned],
  [2, adyenDeepUnsigned],
  [5, forgedStripe],
  [4, garbageSignatureHeader],
  [5, forgedAdyen],
  [5, replayStripe],
  [4, replayAdyen],
  [5, garbageBody],
  [3, garbagePath],
  [2, garbageAdyen],
  [2, duplicatedHeaders],
];

// The bodies that cost the receiver most (size, nesting, PII scanning), between valid events whose delivery is checked.
const HEAVY_KINDS: [number, Kind][] = [
  [6, validStripe],
  [4, validAdyen],
  [4, signedSizes],
  [8, signedDense],
  [2, signedPiiBudget],
  [3, signedNesting],
  [2, adyenDeepUnsigned],
  [3, garbageBody],
];

/** all: every kind of input; heavy: the most expensive bodies only (for the receiver's stalls, docs/edge.md). */
export type FuzzMix = 'all' | 'heavy';
const MIXES: Record<FuzzMix, [number, Kind][]> = { all: KINDS, heavy: HEAVY_KINDS };
export const FUZZ_MIXES = Object.keys(MIXES) as FuzzMix[];

// ---- Sending, and /healthz while it runs ---------------------------------------------------------

/** One raw HTTP exchange: fetch would refuse or normalize paths and headers a hostile sender writes. */
function send(
  agent: Agent,
  base: URL,
  req: Pick<FuzzRequest, 'method' | 'path' | 'headers' | 'body'>,
  timeoutMs: number,
): Promise<FuzzAnswer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const r = request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method: req.method,
        path: req.path,
        // Framed explicitly: Node sends a DELETE's body unframed, which the server reads as the next request.
        headers: req.method === 'GET' ? req.headers : { ...req.headers, 'content-length': String(req.body.length) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let accepted = 0;
          try {
            const parsed = JSON.parse(body) as { accepted?: unknown };
            if (typeof parsed.accepted === 'number') accepted = parsed.accepted;
          } catch {
            // a non-JSON answer is reported by its status
          }
          resolve({ status: res.statusCode ?? 0, accepted, body: body.slice(0, 300), ms: performance.now() - started });
        });
      },
    );
    r.on('timeout', () => r.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    r.on('error', reject);
    if (req.method === 'GET') r.end();
    else r.end(req.body);
  });
}

export interface FuzzExchange {
  request: FuzzRequest;
  /** The answer, or why there was none (the connection failed). */
  answer: FuzzAnswer | { error: string };
}

export interface FuzzSendOptions {
  /** http://127.0.0.1:<port> of the receiver. */
  base: string;
  partners: FuzzPartners;
  maxBodyBytes: number;
  requests: number;
  seed: number;
  /** Letters only: this run's event ids (generated from the clock when absent). */
  runTag?: string;
  /** Requests in flight at once (default 8). */
  concurrency?: number;
  /** Which inputs (default all). */
  mix?: FuzzMix;
  onProgress?: (answered: number, total: number) => void;
}

export interface FuzzSendResult {
  exchanges: FuzzExchange[];
  healthz: HealthzStats;
  durationMs: number;
}

/** Sends `requests` generated requests, `concurrency` at a time, polling /healthz throughout. */
export async function sendEdgeFuzz(options: FuzzSendOptions): Promise<FuzzSendResult> {
  const base = new URL(options.base);
  const tag = options.runTag ?? lettersOf(Date.now());
  const fuzzer = new EdgeFuzzer(options.seed, tag, options.partners, options.maxBodyBytes, options.mix);
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency ?? 8 });
  const exchanges: FuzzExchange[] = [];
  const answered = new Map<number, Promise<void>>();
  const started = performance.now();
  const healthz = pollHealthz(options.base);
  let next = 0;
  let done = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (next < options.requests && !failed) {
      const request = fuzzer.next(next++);
      let finish!: () => void;
      answered.set(request.index, new Promise<void>((r) => (finish = r)));
      try {
        if (request.after !== undefined) {
          await answered.get(request.after);
          // A replay of a request that was not accepted (no answer, say) is its first delivery: a retry.
          const original = exchanges[request.after];
          if (original && !isSuccess(original.answer)) {
            request.trust = 'authentic';
            request.keys = original.request.keys;
          }
        }
        const answer = await send(agent, base, request, 60_000).catch((err: unknown) => ({
          error: err instanceof Error ? err.message : String(err),
        }));
        exchanges[request.index] = { request, answer };
      } finally {
        finish();
        done += 1;
        options.onProgress?.(done, options.requests);
      }
    }
  };
  const workers = Array.from({ length: options.concurrency ?? 8 }, worker);
  const sending = Promise.all(workers);
  await sending.catch(() => (failed = true)); // the other workers stop after their request in flight
  const stats = await healthz.stop();
  await Promise.allSettled(workers);
  agent.destroy();
  await sending; // a failure of the generator itself, once nothing is in flight
  return { exchanges, healthz: stats, durationMs: Math.round(performance.now() - started) };
}

// ---- What the topics must hold afterwards ---------------------------------------------------------

/** A committed record as read back (read committed). */
export interface CommittedEdgeRecord {
  topic: string;
  headers: Record<string, string>;
}

export interface DeliveryCheck {
  /** Events the receiver answered 2xx for (Σ `accepted`). */
  acceptedEvents: number;
  rawRecords: number;
  quarantineRecords: number;
  /** Events on the quarantine topic with a claim check instead of a raw record. */
  claimChecked: number;
  /** Keys on the raw topic more than once. */
  duplicates: string[];
  /** Keys of events answered 2xx that are neither on the raw topic nor claim-checked. */
  missing: string[];
  /** Keys of events refused (or replayed) that are on the raw topic all the same. */
  unexpected: string[];
  /** Quarantine records without a `quarantine-reason`. */
  quarantineWithoutReason: number;
  /** Raw records + claim checks − accepted events (0 = every accepted event is there, and nothing else). */
  unaccounted: number;
  ok: boolean;
}

const isSuccess = (a: FuzzExchange['answer']): a is FuzzAnswer => 'status' in a && a.status >= 200 && a.status < 300;

/** Every event answered 2xx is on the raw topic exactly once by idempotency key, or claim-checked in quarantine. */
export function checkDelivery(
  exchanges: readonly FuzzExchange[],
  records: readonly CommittedEdgeRecord[],
  topics: { raw: string; quarantine: string },
): DeliveryCheck {
  const rawCount = new Map<string, number>();
  let quarantineRecords = 0;
  let quarantineWithoutReason = 0;
  const claimChecked = new Set<string>();
  for (const r of records) {
    const key = r.headers[HEADERS.idempotencyKey] ?? '(none)';
    if (r.topic === topics.raw) rawCount.set(key, (rawCount.get(key) ?? 0) + 1);
    if (r.topic === topics.quarantine) {
      quarantineRecords += 1;
      if (!r.headers[HEADERS.quarantineReason]) quarantineWithoutReason += 1;
      if (r.headers[CLAIM_CHECK_HEADER]) claimChecked.add(key);
    }
  }
  let acceptedEvents = 0;
  const missing: string[] = [];
  const unexpected: string[] = [];
  for (const { request, answer } of exchanges) {
    if (isSuccess(answer)) {
      acceptedEvents += answer.accepted;
      if (request.trust === 'authentic') {
        for (const key of request.keys) if (!rawCount.has(key) && !claimChecked.has(key)) missing.push(key);
      }
    } else {
      for (const key of request.keys) if (rawCount.has(key)) unexpected.push(key);
    }
  }
  const rawRecords = [...rawCount.values()].reduce((n, c) => n + c, 0);
  const duplicates = [...rawCount].filter(([, c]) => c > 1).map(([k]) => k);
  const unaccounted = rawRecords + claimChecked.size - acceptedEvents;
  return {
    acceptedEvents,
    rawRecords,
    quarantineRecords,
    claimChecked: claimChecked.size,
    duplicates,
    missing,
    unexpected,
    quarantineWithoutReason,
    unaccounted,
    ok:
      duplicates.length === 0 &&
      missing.length === 0 &&
      unexpected.length === 0 &&
      quarantineWithoutReason === 0 &&
      unaccounted === 0,
  };
}

export interface EdgeFuzzSummary {
  seed: number;
  requests: number;
  durationMs: number;
  /** Answers per class of input: status (or `error`) → count. */
  byClass: Record<string, Record<string, number>>;
  statuses: Record<string, number>;
  forgeriesAccepted: number;
  /** Answers 5xx, and exchanges with no answer at all. */
  serverErrors: number;
  transportErrors: number;
  /** Adyen-style replays that produced an event again. */
  replaysProduced: number;
  examples: { forgeries: string[]; serverErrors: string[]; transportErrors: string[] };
  healthz: HealthzStats;
  delivery: DeliveryCheck;
}

const describe = (e: FuzzExchange): string =>
  `#${e.request.index} ${e.request.cls} ${e.request.method} ${e.request.path.slice(0, 80)} → ${
    'status' in e.answer ? `${e.answer.status} ${e.answer.body.slice(0, 160)}` : e.answer.error
  }`;

export function summarizeEdgeFuzz(seed: number, sent: FuzzSendResult, delivery: DeliveryCheck): EdgeFuzzSummary {
  const byClass: Record<string, Record<string, number>> = {};
  const statuses: Record<string, number> = {};
  const forgeries: FuzzExchange[] = [];
  const serverErrors: FuzzExchange[] = [];
  const transportErrors: FuzzExchange[] = [];
  let replaysProduced = 0;
  for (const e of sent.exchanges) {
    const status = 'status' in e.answer ? String(e.answer.status) : 'error';
    const cls = (byClass[e.request.cls] ??= {});
    cls[status] = (cls[status] ?? 0) + 1;
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (!('status' in e.answer)) transportErrors.push(e);
    else if (e.answer.status >= 500) serverErrors.push(e);
    if (isSuccess(e.answer) && e.answer.accepted > 0) {
      if (e.request.trust === 'forgery') forgeries.push(e);
      if (e.request.trust === 'adyen-replay') replaysProduced += 1;
    }
  }
  return {
    seed,
    requests: sent.exchanges.length,
    durationMs: sent.durationMs,
    byClass: Object.fromEntries(Object.entries(byClass).sort(([a], [b]) => a.localeCompare(b))),
    statuses,
    forgeriesAccepted: forgeries.length,
    serverErrors: serverErrors.length,
    transportErrors: transportErrors.length,
    replaysProduced,
    examples: {
      forgeries: forgeries.slice(0, 5).map(describe),
      serverErrors: serverErrors.slice(0, 5).map(describe),
      transportErrors: transportErrors.slice(0, 5).map(describe),
    },
    healthz: sent.healthz,
    delivery,
  };
}

/** Everything the fuzz asserts, as reasons (empty = passed). */
export function fuzzFailures(s: EdgeFuzzSummary): string[] {
  const failures: string[] = [];
  if (s.forgeriesAccepted > 0)
    failures.push(`${s.forgeriesAccepted} forgeries accepted: ${s.examples.forgeries.join(' | ')}`);
  if (s.serverErrors > 0) failures.push(`${s.serverErrors} answers 5xx: ${s.examples.serverErrors.join(' | ')}`);
  if (s.transportErrors > 0)
    failures.push(`${s.transportErrors} requests without an answer: ${s.examples.transportErrors.join(' | ')}`);
  if (s.replaysProduced > 0) failures.push(`${s.replaysProduced} Adyen-style replays produced an event again`);
  if (s.healthz.failures > 0 || s.healthz.polls === 0)
    failures.push(
      `/healthz failed ${s.healthz.failures} of ${s.healthz.polls} polls: ${s.healthz.failureExamples.join(' | ')}`,
    );
  const d = s.delivery;
  if (!d.ok) {
    failures.push(
      `delivery: ${d.acceptedEvents} events answered 2xx, ${d.rawRecords} raw records + ${d.claimChecked} claim checks ` +
        `(unaccounted ${d.unaccounted}); duplicates ${d.duplicates.slice(0, 5).join(', ') || 'none'}; ` +
        `missing ${d.missing.slice(0, 5).join(', ') || 'none'}; refused yet on the raw topic ${d.unexpected.slice(0, 5).join(', ') || 'none'}; ` +
        `quarantine records without a reason ${d.quarantineWithoutReason}`,
    );
  }
  return failures;
}

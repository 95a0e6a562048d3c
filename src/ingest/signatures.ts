import { createHmac, timingSafeEqual } from 'node:crypto';

// Webhook signature checks, one per partner scheme. Every comparison is between two 32-byte
// digests with timingSafeEqual, and every presented signature is compared with each secret's digest.
// Stripe-style stops at the first secret that matches: only a sender who already holds a valid
// signature can observe that, and it spares the second HMAC while a rotation's old secret is listed.

export type SignatureFailureReason =
  'missing-signature' | 'malformed-signature' | 'stale-timestamp' | 'future-timestamp' | 'mismatch';

/**
 * `secretIndex` says which of the configured secrets matched, so rotation can be tracked. `digest` is the
 * HMAC we computed (hex) and `timestamp` the signed time (Stripe-style only): what the sender signed,
 * whatever the spelling of the header that carried it, so replay detection keys on them.
 */
export type SignatureCheck =
  | { ok: true; secretIndex: number; digest: string; timestamp?: number }
  | { ok: false; reason: SignatureFailureReason; detail: string };

const fail = (reason: SignatureFailureReason, detail: string): SignatureCheck => ({ ok: false, reason, detail });

const hmacSha256 = (key: string | Buffer, data: Buffer | string): Buffer =>
  createHmac('sha256', key).update(data).digest();

// Compares every expected digest with every presented one; returns the first matching secret's index.
function firstMatchingSecret(expected: readonly Buffer[], presented: readonly Buffer[]): number | undefined {
  let match: number | undefined;
  for (const [index, digest] of expected.entries()) {
    for (const candidate of presented) {
      if (timingSafeEqual(digest, candidate) && match === undefined) match = index;
    }
  }
  return match;
}

// ---------------------------------------------------------------------------------------------
// Stripe-style: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 over `${t}.${rawBody}`.

export const STRIPE_SIGNATURE_HEADER = 'Stripe-Signature';

export interface StripeVerifyOptions {
  /** Every secret currently valid (during rotation: the new one and the old one). */
  secrets: readonly string[];
  /** Unix seconds; defaults to the clock. */
  nowSeconds?: number;
  /** How old a timestamp may be, in seconds (default 300). */
  toleranceSeconds?: number;
  /** How far ahead of our clock a timestamp may be, in seconds (default 300). */
  futureToleranceSeconds?: number;
}

const MAX_STRIPE_HEADER_LENGTH = 4096;
const MAX_V1_SIGNATURES = 8; // bounds the HMAC comparisons a single request can make us do

type StripeHeader = { t: number; v1: Buffer[]; malformedV1: number } | { error: string };

function parseStripeHeader(header: string): StripeHeader {
  const name = STRIPE_SIGNATURE_HEADER;
  if (header.length > MAX_STRIPE_HEADER_LENGTH) {
    return { error: `${name} is ${header.length} characters (max ${MAX_STRIPE_HEADER_LENGTH})` };
  }
  let t: number | undefined;
  let v1Count = 0;
  const v1: Buffer[] = [];
  // As Stripe's libraries do, a malformed v1 cannot match and is skipped; it matters only when no v1 is well-formed.
  const malformed: string[] = [];
  for (const [position, item] of header.split(',').entries()) {
    const eq = item.indexOf('=');
    const key = item.slice(0, Math.max(eq, 0)).trim();
    const value = item.slice(eq + 1).trim();
    if (eq <= 0) return { error: `${name} item ${position + 1} is not key=value` };
    if (key === 't') {
      if (t !== undefined) return { error: `${name} has more than one t=` };
      if (!/^[0-9]{1,12}$/.test(value)) return { error: `${name} t= is not a unix timestamp in seconds` };
      t = Number(value);
    } else if (key === 'v1') {
      v1Count++;
      if (/^[0-9a-fA-F]{64}$/.test(value)) v1.push(Buffer.from(value, 'hex'));
      else malformed.push(`v1 #${v1Count} is not 64 hex characters (${value.length} characters)`);
    }
  }
  if (t === undefined) return { error: `${name} has no t= timestamp` };
  if (v1Count > MAX_V1_SIGNATURES) {
    return { error: `${name} carries ${v1Count} v1 signatures (max ${MAX_V1_SIGNATURES})` };
  }
  if (v1Count === 0) return { error: `${name} at t=${t} has no v1 signature` };
  if (v1.length === 0) return { error: `${name} has no well-formed v1 signature: ${malformed.join('; ')}` };
  return { t, v1, malformedV1: malformed.length };
}

/** Verifies a Stripe-style signature header against the raw request body bytes. */
export function verifyStripeSignature(
  rawBody: Uint8Array,
  header: string | undefined,
  options: StripeVerifyOptions,
): SignatureCheck {
  if (options.secrets.length === 0) throw new RangeError('verifyStripeSignature needs at least one secret');
  const name = STRIPE_SIGNATURE_HEADER;
  if (header === undefined || header.trim() === '') return fail('missing-signature', `${name} header is absent`);
  const parsed = parseStripeHeader(header);
  if ('error' in parsed) return fail('malformed-signature', parsed.error);

  const signedPayload = Buffer.concat([Buffer.from(`${parsed.t}.`, 'utf8'), rawBody]);
  let secretIndex: number | undefined;
  let digest: Buffer | undefined;
  for (const [index, secret] of options.secrets.entries()) {
    const expected = hmacSha256(secret, signedPayload);
    if (firstMatchingSecret([expected], parsed.v1) === undefined) continue;
    secretIndex = index;
    digest = expected;
    break;
  }
  if (secretIndex === undefined || digest === undefined) {
    return fail(
      'mismatch',
      `${name} at t=${parsed.t}: none of ${parsed.v1.length} v1 signature(s) matches any of ${options.secrets.length} secret(s)` +
        (parsed.malformedV1 > 0 ? ` (${parsed.malformedV1} malformed v1 ignored)` : ''),
    );
  }

  // Time is checked after authenticity, so "stale" always means a genuine but old (replayed) delivery.
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSeconds ?? 300;
  const futureTolerance = options.futureToleranceSeconds ?? 300;
  const age = now - parsed.t;
  if (age > tolerance) {
    return fail('stale-timestamp', `${name} t=${parsed.t} is ${age} s old (tolerance ${tolerance} s)`);
  }
  if (-age > futureTolerance) {
    return fail(
      'future-timestamp',
      `${name} t=${parsed.t} is ${-age} s ahead of our clock (tolerance ${futureTolerance} s)`,
    );
  }
  return { ok: true, secretIndex, digest: digest.toString('hex'), timestamp: parsed.t };
}

/** The `Stripe-Signature` header value a sender with `secret` would attach at unix time `t`. */
export function signStripe(body: string | Uint8Array, secret: string, t: number): string {
  const payload = Buffer.concat([Buffer.from(`${t}.`, 'utf8'), typeof body === 'string' ? Buffer.from(body) : body]);
  return `t=${t},v1=${hmacSha256(secret, payload).toString('hex')}`;
}

// ---------------------------------------------------------------------------------------------
// Adyen standard notifications: HMAC-SHA256 (hex key) over eight item fields joined with ":",
// base64, in additionalData.hmacSignature. Fields are NOT escaped: Adyen's docs once said to escape
// ":" and "\", but Adyen signs the raw values, and its libraries dropped the escaping to match
// (Adyen/adyen-python-api-library#117, Adyen/adyen-php-api-library#165; Node/Java HmacValidator
// getDataToSign(NotificationRequestItem)). Escaping applies only to the classic HPP key/value scheme.
// https://docs.adyen.com/development-resources/webhooks/secure-webhooks/verify-hmac-signatures

/** The fields of a NotificationRequestItem that the signature covers, as parsed from JSON. */
export interface AdyenNotificationItem {
  pspReference?: string;
  originalReference?: string;
  merchantAccountCode?: string;
  merchantReference?: string;
  amount?: { value?: number | string; currency?: string };
  eventCode?: string;
  success?: string | boolean;
  additionalData?: Record<string, unknown>;
}

const field = (value: unknown): string =>
  typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : '';

/** `pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success`. */
export function adyenSigningString(item: AdyenNotificationItem): string {
  return [
    item.pspReference,
    item.originalReference,
    item.merchantAccountCode,
    item.merchantReference,
    item.amount?.value,
    item.amount?.currency,
    item.eventCode,
    item.success,
  ]
    .map(field)
    .join(':');
}

function adyenKey(hexKey: string, index: number): Buffer {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hexKey)) {
    throw new RangeError(`Adyen HMAC key #${index + 1} is not an even-length hex string`);
  }
  return Buffer.from(hexKey, 'hex');
}

/** Verifies one NotificationRequestItem against every currently valid hex HMAC key. */
export function verifyAdyenSignature(item: AdyenNotificationItem, hexKeys: readonly string[]): SignatureCheck {
  if (hexKeys.length === 0) throw new RangeError('verifyAdyenSignature needs at least one HMAC key');
  const keys = hexKeys.map(adyenKey);
  const where = `NotificationRequestItem pspReference=${field(item.pspReference).slice(0, 64) || '(none)'}`;
  const signature = item.additionalData?.['hmacSignature'];
  if (signature === undefined || signature === null || signature === '') {
    return fail('missing-signature', `${where}: additionalData.hmacSignature is absent`);
  }
  // A SHA-256 digest in base64 is 43 characters plus one "=" of padding, which some senders leave off.
  if (typeof signature !== 'string' || !/^[A-Za-z0-9+/]{43}=?$/.test(signature)) {
    return fail('malformed-signature', `${where}: additionalData.hmacSignature is not a base64 SHA-256 digest`);
  }
  const data = adyenSigningString(item);
  const expected = keys.map((key) => hmacSha256(key, data));
  const secretIndex = firstMatchingSecret(expected, [Buffer.from(signature, 'base64')]);
  if (secretIndex === undefined) {
    return fail('mismatch', `${where}: hmacSignature matches none of ${keys.length} key(s)`);
  }
  return { ok: true, secretIndex, digest: expected[secretIndex]!.toString('hex') };
}

/** The base64 `additionalData.hmacSignature` Adyen would send for `item` with `hexKey`. */
export function signAdyen(item: AdyenNotificationItem, hexKey: string): string {
  return hmacSha256(adyenKey(hexKey, 0), adyenSigningString(item)).toString('base64');
}

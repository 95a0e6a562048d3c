import { createHash } from 'node:crypto';
import { HEADERS, TRACE_ID_PATTERN } from '../contracts/envelope';
import { ID_PATTERN } from '../contracts/payment-event';
import type { JournalLine } from '../ledger/posting-rules';
import { CLAIM_CHECK_HEADER } from '../streams/publish';

// What a quarantined message tells finance (issue 15 item 4): who it is, why it was refused, and the
// money it carries, read from the (tokenized) record without trusting it further than that. Pure: the
// quarantine consumer records it and opens its suspense entry; `quality -- release` closes it.

/** The money a quarantined record carries: integer minor units only, never a guess from a decimal. */
export type QuarantinedAmount =
  | { status: 'parsed'; amountMinor: number; currency: string }
  /** An amount field is there but is not integer minor units + an ISO code (e.g. 10.5, "10.00"). */
  | { status: 'unparseable'; raw: string }
  | { status: 'none' };

export interface QuarantineItem {
  /** q + 24 letters: derived from the event's identity and bytes, so a redelivery is the same item. */
  quarantineId: string;
  idempotencyKey: string;
  source: string;
  schema: string | null;
  reason: string;
  /** The payment it names, when that is a usable payment id; else null (a named suspense record). */
  paymentId: string | null;
  merchantId: string | null;
  /** The type the record says it is (payment.captured, CAPTURE, …), as the sender wrote it. */
  eventType: string | null;
  amount: QuarantinedAmount;
  /** The `received-at` header when it is ISO 8601 in years 1970–9999 (what Postgres takes), else null. */
  receivedAt: string | null;
  traceId: string | null;
  /** Where the record was first read: the quarantine topic, partition and offset. */
  read: { topic: string; partition: number; offset: string };
  key: string | null;
  headers: Record<string, string>;
  /** The record as quarantined (tokenized), or null when its records are in a claim check. */
  value: string | null;
  claimCheck: string | null;
}

// Hex digits mapped to g–p (as claim-check keys are): a hex digest can hold a Luhn-valid digit run.
const letters = (hex: string): string => hex.replace(/[0-9]/g, (d) => 'ghijklmnop'[Number(d)]!);

/** The item's id: the event's idempotency key and its bytes, so re-quarantining the same event is one item. */
export function quarantineIdOf(idempotencyKey: string, value: Buffer | null, claimCheck: string | null): string {
  const body = createHash('sha256')
    .update(claimCheck ?? value ?? Buffer.alloc(0))
    .digest('hex');
  return `q${letters(createHash('sha256').update(`${idempotencyKey}\n${body}`).digest('hex')).slice(0, 24)}`;
}

export const QUARANTINE_ID_PATTERN = /^q[a-p]{24}$/;

// A quarantined message is hostile input: every field below is cut to what Postgres, its indexes and the
// ledger's checks accept (no NUL, well-formed text, bounded length), so no message can stall the consumer.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Text Postgres can keep: NUL and lone surrogates replaced by U+FFFD, at most `max` characters (the cut marked). */
export function keepable(text: string, max: number): string {
  const clean = text.replace(/\u0000/g, '\uFFFD').replace(LONE_SURROGATE, '\uFFFD');
  if (clean.length <= max) return clean;
  const marker = `…(+${clean.length - max} chars)`;
  return clean.slice(0, Math.max(0, max - marker.length)).replace(LONE_SURROGATE, '\uFFFD') + marker;
}

/** A value as short JSON text for a reason or an amount; nesting too deep for JSON.stringify is said so. */
function shortJson(value: unknown, max: number): string {
  try {
    return keepable(JSON.stringify(value) ?? String(value), max);
  } catch {
    return '(not representable: nested too deep)';
  }
}

/** An idempotency key as a column and an index can hold it: long ones keep a prefix and their digest. */
function keepableKey(key: string): string {
  if (key.length <= 256 && keepable(key, 256) === key) return key;
  return `${keepable(key, 180)}~sha256:${createHash('sha256').update(key).digest('hex').slice(0, 32)}`;
}

/** A timestamp Postgres accepts (ISO 8601, years 1970–9999), else null. */
function keepableTime(text: string | undefined): string | null {
  if (text === undefined || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/.test(text))
    return null;
  const year = Number(text.slice(0, 4));
  return year >= 1970 && !Number.isNaN(Date.parse(text)) ? text : null;
}

const MAX_HEADERS = 64;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const at = (v: unknown, path: readonly string[]): unknown =>
  path.reduce<unknown>((o, k) => (isRecord(o) ? o[k] : undefined), v);

/** Where each known shape keeps its money: [amount path, currency path]; the first present wins. */
const AMOUNT_PATHS: readonly (readonly [readonly string[], readonly string[]])[] = [
  [['amountMinor'], ['currency']], // a payment fact (refused by a consumer)
  [
    ['data', 'object', 'amountMinor'],
    ['data', 'object', 'currency'],
  ], // Stripe-style webhook
  [
    ['amount', 'value'],
    ['amount', 'currency'],
  ], // gateway feed, Adyen-style item
  [
    ['gross', 'value'],
    ['gross', 'currency'],
  ], // partner settlement API
  [
    ['after', 'amount_minor'],
    ['after', 'currency'],
  ], // Debezium change (created: moves no money)
  [
    ['payload', 'after', 'amount_minor'],
    ['payload', 'after', 'currency'],
  ],
];
const PAYMENT_PATHS = [
  ['paymentId'],
  ['data', 'object', 'paymentId'],
  ['paymentReference'],
  ['merchantReference'],
  ['payment_reference'],
  ['after', 'id'],
  ['payload', 'after', 'id'],
];
const MERCHANT_PATHS = [
  ['merchantId'],
  ['data', 'object', 'merchantId'],
  ['merchant_id'],
  ['merchantAccountCode'],
  ['after', 'merchant_id'],
];
const TYPE_PATHS = [['type'], ['eventType'], ['eventCode']];

/** The amount of a record: integer minor units and an ISO currency, else unparseable (kept as text), else none. */
export function amountOf(record: unknown): QuarantinedAmount {
  for (const [amountPath, currencyPath] of AMOUNT_PATHS) {
    const amount = at(record, amountPath);
    if (amount === undefined) continue;
    const currency = at(record, currencyPath);
    if (
      typeof amount === 'number' &&
      Number.isSafeInteger(amount) &&
      amount >= 0 &&
      typeof currency === 'string' &&
      /^[A-Z]{3}$/.test(currency)
    ) {
      return { status: 'parsed', amountMinor: amount, currency };
    }
    return { status: 'unparseable', raw: shortJson({ amount, currency }, 200) };
  }
  return { status: 'none' };
}

const firstString = (record: unknown, paths: readonly (readonly string[])[]): string | null => {
  for (const p of paths) {
    const v = at(record, p);
    if (typeof v === 'string' && v !== '') return v;
  }
  return null;
};

/** A quarantine message, as read: its envelope headers, key and (tokenized) value. */
export interface QuarantineMessage {
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
  offset: string;
}

/**
 * One quarantine message → the item to record. `claimed` is the raw record of a claim-checked event (read
 * from S3 by the caller), since its message carries only where the records are.
 */
export function quarantineItemOf(
  read: { topic: string; partition: number },
  message: QuarantineMessage,
  claimed?: unknown,
  /** Why the claim check could not be read (ClaimCheckUnreadable): recorded, its money unknown. */
  claimUnreadable?: string,
): QuarantineItem {
  const h = message.headers;
  const claimCheck = h[CLAIM_CHECK_HEADER] ?? null;
  const valueText = claimCheck === null && message.value !== null ? message.value.toString('utf8') : null;
  let record: unknown = claimed;
  if (valueText !== null) {
    try {
      record = JSON.parse(valueText) as unknown;
    } catch {
      record = undefined; // not JSON: recorded with its reason, no money to read
    }
  }
  const idempotencyKey = h[HEADERS.idempotencyKey] ?? `offset:${read.topic}:${read.partition}:${message.offset}`;
  const key = message.key?.toString('utf8') ?? null;
  const payment = [key, firstString(record, PAYMENT_PATHS)].find((id) => id != null && ID_PATTERN.test(id)) ?? null;
  const merchantId = firstString(record, MERCHANT_PATHS);
  const eventType = firstString(record, TYPE_PATHS);
  const traceId = h[HEADERS.traceId];
  const reason = h[HEADERS.quarantineReason] ?? '(no quarantine-reason header)';
  const schema = h[HEADERS.schema];
  return {
    quarantineId: quarantineIdOf(idempotencyKey, message.value, claimCheck),
    idempotencyKey: keepableKey(idempotencyKey),
    source: keepable(h[HEADERS.source] ?? 'unknown', 64),
    schema: schema === undefined ? null : keepable(schema, 256),
    reason: keepable(claimUnreadable === undefined ? reason : `${reason}; ${claimUnreadable}`, 2000),
    paymentId: payment,
    // Names too long to be one are not guessed at: the ledger's merchant is then 'unknown'.
    merchantId: merchantId !== null && merchantId.length <= 128 ? keepable(merchantId, 128) : null,
    eventType: eventType !== null && eventType.length <= 64 ? keepable(eventType, 64) : null,
    amount:
      claimUnreadable === undefined
        ? amountOf(record)
        : { status: 'unparseable', raw: keepable(`money unknown: ${claimUnreadable}`, 200) },
    receivedAt: keepableTime(h[HEADERS.receivedAt]),
    traceId: traceId !== undefined && TRACE_ID_PATTERN.test(traceId) ? traceId : null,
    read: { ...read, offset: message.offset },
    key: key === null ? null : keepable(key, 1024),
    headers: Object.fromEntries(
      Object.entries(h)
        .slice(0, MAX_HEADERS)
        .map(([name, value]) => [keepable(name, 256), keepable(value, 4096)]),
    ),
    value: valueText === null ? null : keepable(valueText, Number.MAX_SAFE_INTEGER),
    claimCheck: claimCheck === null ? null : keepable(claimCheck, 1200),
  };
}

/** Types whose facts move no money (authorizations, voids, refusals, new payment rows): no suspense. */
const NO_MONEY = new Set([
  'payment.created',
  'payment.authorized',
  'payment.voided',
  'payment.failed',
  'created',
  'authorized',
  'voided',
  'failed',
  'AUTHORISATION',
  'CANCELLATION',
  'REFUSAL',
]);
/** Money leaving PayLink (refunds, chargebacks): held on the other side of suspense. */
const OUTBOUND = new Set([
  'payment.refunded',
  'payment.chargeback_opened',
  'payment.chargeback_lost',
  'refunded',
  'chargeback_opened',
  'chargeback_lost',
  'REFUND',
  'CHARGEBACK',
  'SECOND_CHARGEBACK',
]);

/**
 * The suspense entry of an item, or [] when it holds no money. Money a source reports but PayLink cannot book
 * yet is an unidentified receipt: Dr gateway_clearing / Cr suspense (refunds and chargebacks the reverse).
 * CDC rows are PayLink's own `created` facts and never move money.
 */
export function quarantineSuspenseLines(item: Pick<QuarantineItem, 'amount' | 'eventType' | 'source'>): JournalLine[] {
  const a = item.amount;
  if (a.status !== 'parsed' || a.amountMinor === 0 || item.source === 'cdc') return [];
  if (item.eventType !== null && NO_MONEY.has(item.eventType)) return [];
  const { amountMinor, currency } = a;
  return item.eventType !== null && OUTBOUND.has(item.eventType)
    ? [
        { account: 'suspense', side: 'debit', amountMinor, currency },
        { account: 'gateway_clearing', side: 'credit', amountMinor, currency },
      ]
    : [
        { account: 'gateway_clearing', side: 'debit', amountMinor, currency },
        { account: 'suspense', side: 'credit', amountMinor, currency },
      ];
}

export const quarantineOpenKey = (quarantineId: string): string => `quarantine/${quarantineId}/open`;
export const quarantineCloseKey = (quarantineId: string): string => `quarantine/${quarantineId}/close`;
/** The ledger's payment id of an item that names no usable payment: a named suspense record. */
export const namedSuspenseId = (quarantineId: string): string => `quarantine-${quarantineId}`;

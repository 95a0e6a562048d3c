import { z } from 'zod';
import { parseJsonSetting } from '../config';
import { partnerIdempotencyKey } from './envelope';
import { describeIssues } from './issues';
import { CurrencyCode, MinorUnits } from './money';
import { PaymentEvent, type ParseResult } from './payment-event';

// Partners' settlement APIs (polled, not pushed): the page envelope, one settlement record in the
// partner's own format, and its mapping onto a `settled` payment fact (v1). Unknown fields pass
// (partners add fields); missing or mistyped required ones are quarantine reasons, named by path.

export const PartnerApiConfig = z.object({
  id: z.string().regex(/^[a-z0-9-]{1,60}$/, 'id: 1–60 of a-z, 0-9, -'),
  url: z.url(),
  token: z.string().min(8),
  /** Used when a record does not name its region. */
  region: z.string().min(1).max(40).optional(),
});
export type PartnerApiConfig = z.infer<typeof PartnerApiConfig>;

/** PARTNER_APIS JSON → partners; the error names the failing entry (never the token). */
export function parsePartnerApis(json: string): PartnerApiConfig[] {
  const partners = parseJsonSetting('PARTNER_APIS', json, z.array(PartnerApiConfig));
  const ids = partners.map((p) => p.id);
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice) throw new Error(`PARTNER_APIS: partner "${twice}" is listed twice`);
  return partners;
}

/** GET /v1/settlements?cursor=&limit= → one page; the cursor is opaque and never ends. */
export const PartnerSettlementPage = z.object({
  data: z.array(z.unknown()),
  next_cursor: z.string().min(1).max(2000),
  has_more: z.boolean(),
});
export type PartnerSettlementPage = z.infer<typeof PartnerSettlementPage>;

/** Money in the partner's format: integer minor units (`value`) and an ISO currency. */
const PartnerMoney = z.object({ value: MinorUnits, currency: CurrencyCode });

export const PartnerSettlementRecord = z
  .object({
    /** The partner's record id; a redelivered settlement repeats it. */
    id: z.string().min(1).max(200),
    /** PayLink's payment id, as the partner echoes it. */
    payment_reference: z.string().min(1).max(120),
    capture_reference: z.string().min(1).max(120),
    settlement_reference: z.string().min(1).max(120),
    gross: PartnerMoney,
    fee: PartnerMoney,
    merchant_id: z.string().min(1).max(120),
    region: z.string().min(1).max(40).optional(),
    settled_at: z.iso.datetime({ offset: true }),
    /** PII: tokenized before anything leaves the edge; the fact never carries it. */
    payout_account: z.object({ iban: z.string().min(1), holder_name: z.string().min(1) }).optional(),
  })
  .refine((r) => r.fee.currency === r.gross.currency, {
    message: 'fee currency differs from the gross currency',
    path: ['fee', 'currency'],
  });
export type PartnerSettlementRecord = z.infer<typeof PartnerSettlementRecord>;

// Name the partner's fields, not the fact's, so a quarantine reason points at the record.
const PARTNER_FIELD_OF: Readonly<Record<string, string>> = {
  paymentId: 'payment_reference',
  captureId: 'capture_reference',
  settlementId: 'settlement_reference',
  amountMinor: 'gross.value',
  feeMinor: 'fee.value',
  merchantId: 'merchant_id',
};

/** A settlement record (tokenized) → `settled` fact; the reason names the failing field. */
export function partnerSettlementToFact(
  partnerId: string,
  defaultRegion: string | undefined,
  raw: unknown,
): ParseResult<PaymentEvent> {
  const parsed = PartnerSettlementRecord.safeParse(raw);
  if (!parsed.success) return { ok: false, reason: describeIssues(parsed.error, { root: '(record)' }) };
  const r = parsed.data;
  const region = r.region ?? defaultRegion;
  if (region === undefined) return { ok: false, reason: 'region: missing, and the partner has no default region' };
  const fact = PaymentEvent.safeParse({
    version: 1,
    type: 'settled',
    idempotencyKey: partnerIdempotencyKey(partnerId, r.id),
    paymentId: r.payment_reference,
    merchantId: r.merchant_id,
    region,
    currency: r.gross.currency,
    occurredAt: r.settled_at,
    source: 'partner',
    sourceSequence: Date.parse(r.settled_at),
    settlementId: r.settlement_reference,
    captureId: r.capture_reference,
    amountMinor: r.gross.value,
    feeMinor: r.fee.value,
  });
  if (fact.success) return { ok: true, value: fact.data };
  return {
    ok: false,
    reason: describeIssues(fact.error, { rename: (field) => PARTNER_FIELD_OF[field] ?? field }),
  };
}

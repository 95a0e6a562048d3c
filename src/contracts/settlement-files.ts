import { z } from 'zod';
import { CsvError, decodeUtf8, readCsv, writeCsv } from './csv';
import { MoneyFormatError, currencyExponent, fromMajorUnits, toMajorUnits } from './currency-units';
import { describeIssues } from './issues';

// The settlement files partners publish, as finance receives them: an Adyen-style Settlement details
// report and a Stripe-style itemized payout reconciliation report (docs/reconciliation.md). Parsing turns
// a file into typed lines with integer minor units; writing is its inverse (the simulator uses it).

export type SettlementProvider = 'adyen' | 'stripe';

/** Adyen's Settlement details report, standard columns in their documented order. */
export const ADYEN_SETTLEMENT_COLUMNS = [
  'Company Account',
  'Merchant Account',
  'Psp Reference',
  'Merchant Reference',
  'Payment Method',
  'Creation Date',
  'TimeZone',
  'Type',
  'Modification Reference',
  'Gross Currency',
  'Gross Debit (GC)',
  'Gross Credit (GC)',
  'Exchange Rate',
  'Net Currency',
  'Net Debit (NC)',
  'Net Credit (NC)',
  'Commission (NC)',
  'Markup (NC)',
  'Scheme Fees (NC)',
  'Interchange (NC)',
  'Payment Method Variant',
  'Modification Merchant Reference',
  'Batch Number',
  'Reserved4',
  'Reserved5',
  'Reserved6',
  'Reserved7',
  'Reserved8',
  'Reserved9',
  'Reserved10',
] as const;

/** Stripe's itemized payout reconciliation report (payout_reconciliation.itemized.5): the columns PayLink requests. */
export const STRIPE_PAYOUT_COLUMNS = [
  'automatic_payout_id',
  'automatic_payout_effective_at',
  'balance_transaction_id',
  'created_utc',
  'available_on_utc',
  'currency',
  'gross',
  'fee',
  'net',
  'reporting_category',
  'source_id',
  'description',
  'charge_id',
  'payment_intent_id',
  'payment_metadata[paylink_payment_id]',
  'payment_metadata[paylink_reference]',
] as const;

/** Adyen journal types (record types) the report carries. */
export const AdyenRecordType = z.enum([
  'Settled',
  'Refunded',
  'Chargeback',
  'SecondChargeback',
  'ChargebackReversed',
  'RefundedReversed',
  'Fee',
  'MiscCosts',
  'MerchantPayout',
  'DepositCorrection',
  'InvoiceDeduction',
  'MatchedStatement',
  'ManualCorrected',
  'BankInstructionReturned',
  'EpaPaid',
  'Balancetransfer',
  'PaymentCost',
  'PaidOut',
  'PaidOutReversed',
]);
export type AdyenRecordType = z.infer<typeof AdyenRecordType>;

/** Stripe reporting categories PayLink's payouts carry. */
export const StripeReportingCategory = z.enum([
  'charge',
  'refund',
  'dispute',
  'dispute_reversal',
  'fee',
  'other_adjustment',
  'payout',
]);
export type StripeReportingCategory = z.infer<typeof StripeReportingCategory>;

const Currency = z.string().regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR');
const OptionalCurrency = z.union([z.literal(''), Currency]);
const Minor = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const SignedMinor = z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER);
const DateTime = z.string().regex(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/, 'a time as YYYY-MM-DD HH:MM:SS');
const Text = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(s), 'control characters');

export const AdyenSettlementRow = z
  .object({
    companyAccount: Text(80),
    merchantAccount: Text(80),
    pspReference: Text(16),
    merchantReference: Text(80),
    paymentMethod: Text(30),
    creationDate: DateTime,
    timeZone: z.string().regex(/^[A-Z]{2,5}$/, 'a time zone code such as UTC or CET'),
    type: AdyenRecordType,
    modificationReference: Text(80),
    grossCurrency: OptionalCurrency,
    grossDebitMinor: Minor.nullable(),
    grossCreditMinor: Minor.nullable(),
    exchangeRate: z.union([z.literal(''), z.string().regex(/^\d+(\.\d+)?$/, 'a decimal rate')]),
    netCurrency: OptionalCurrency,
    netDebitMinor: Minor.nullable(),
    netCreditMinor: Minor.nullable(),
    commissionMinor: Minor.nullable(),
    markupMinor: Minor.nullable(),
    schemeFeesMinor: Minor.nullable(),
    interchangeMinor: Minor.nullable(),
    paymentMethodVariant: Text(50),
    modificationMerchantReference: Text(80),
    batchNumber: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).nullable(),
    reserved: z.array(Text(256)).length(7),
  })
  .refine((r) => r.grossDebitMinor === null || r.grossCreditMinor === null, {
    message: 'a line is a debit or a credit, not both',
    path: ['grossCreditMinor'],
  })
  .refine((r) => r.netDebitMinor === null || r.netCreditMinor === null, {
    message: 'a line is a debit or a credit, not both',
    path: ['netCreditMinor'],
  })
  .refine((r) => adyenNetIsConsistent(r), {
    message: 'net ≠ gross − fees (Commission + Markup + Scheme Fees + Interchange)',
    path: ['netCreditMinor'],
  });
export type AdyenSettlementRow = z.infer<typeof AdyenSettlementRow>;

export const StripePayoutRow = z
  .object({
    automaticPayoutId: z.string().regex(/^po_[A-Za-z0-9]{1,64}$/, 'a payout id po_…'),
    automaticPayoutEffectiveAt: DateTime,
    balanceTransactionId: z.string().regex(/^txn_[A-Za-z0-9]{1,64}$/, 'a balance transaction id txn_…'),
    createdUtc: DateTime,
    availableOnUtc: DateTime,
    currency: Currency,
    grossMinor: SignedMinor,
    feeMinor: SignedMinor,
    netMinor: SignedMinor,
    reportingCategory: StripeReportingCategory,
    sourceId: Text(120),
    description: Text(500),
    chargeId: Text(120),
    paymentIntentId: Text(120),
    paylinkPaymentId: Text(120),
    paylinkReference: Text(120),
  })
  .refine((r) => r.netMinor === r.grossMinor - r.feeMinor, { message: 'net ≠ gross − fee', path: ['netMinor'] });
export type StripePayoutRow = z.infer<typeof StripePayoutRow>;

/** A parsed line: the row plus where it stood (1-based physical line; the header is line 1). */
export type Located<T> = T & { line: number };

function adyenNetIsConsistent(r: {
  grossCurrency: string;
  netCurrency: string;
  exchangeRate: string;
  grossDebitMinor: number | null;
  grossCreditMinor: number | null;
  netDebitMinor: number | null;
  netCreditMinor: number | null;
  commissionMinor: number | null;
  markupMinor: number | null;
  schemeFeesMinor: number | null;
  interchangeMinor: number | null;
}): boolean {
  if (r.grossDebitMinor === null && r.grossCreditMinor === null) return true; // payout, fee lines: no gross
  if (r.grossCurrency !== r.netCurrency || Number(r.exchangeRate) !== 1) return true; // converted: rate decides
  const fees = (r.commissionMinor ?? 0) + (r.markupMinor ?? 0) + (r.schemeFeesMinor ?? 0) + (r.interchangeMinor ?? 0);
  const gross = (r.grossCreditMinor ?? 0) - (r.grossDebitMinor ?? 0);
  const net = (r.netCreditMinor ?? 0) - (r.netDebitMinor ?? 0);
  return net === gross - fees;
}

// Which column holds each row field: the names errors use, in the sender's words.
const ADYEN_FIELDS: Record<keyof Omit<AdyenSettlementRow, 'reserved'>, (typeof ADYEN_SETTLEMENT_COLUMNS)[number]> = {
  companyAccount: 'Company Account',
  merchantAccount: 'Merchant Account',
  pspReference: 'Psp Reference',
  merchantReference: 'Merchant Reference',
  paymentMethod: 'Payment Method',
  creationDate: 'Creation Date',
  timeZone: 'TimeZone',
  type: 'Type',
  modificationReference: 'Modification Reference',
  grossCurrency: 'Gross Currency',
  grossDebitMinor: 'Gross Debit (GC)',
  grossCreditMinor: 'Gross Credit (GC)',
  exchangeRate: 'Exchange Rate',
  netCurrency: 'Net Currency',
  netDebitMinor: 'Net Debit (NC)',
  netCreditMinor: 'Net Credit (NC)',
  commissionMinor: 'Commission (NC)',
  markupMinor: 'Markup (NC)',
  schemeFeesMinor: 'Scheme Fees (NC)',
  interchangeMinor: 'Interchange (NC)',
  paymentMethodVariant: 'Payment Method Variant',
  modificationMerchantReference: 'Modification Merchant Reference',
  batchNumber: 'Batch Number',
};
const ADYEN_GROSS_AMOUNTS = ['grossDebitMinor', 'grossCreditMinor'] as const;
const ADYEN_NET_AMOUNTS = [
  'netDebitMinor',
  'netCreditMinor',
  'commissionMinor',
  'markupMinor',
  'schemeFeesMinor',
  'interchangeMinor',
] as const;

const STRIPE_FIELDS: Record<keyof StripePayoutRow, (typeof STRIPE_PAYOUT_COLUMNS)[number]> = {
  automaticPayoutId: 'automatic_payout_id',
  automaticPayoutEffectiveAt: 'automatic_payout_effective_at',
  balanceTransactionId: 'balance_transaction_id',
  createdUtc: 'created_utc',
  availableOnUtc: 'available_on_utc',
  currency: 'currency',
  grossMinor: 'gross',
  feeMinor: 'fee',
  netMinor: 'net',
  reportingCategory: 'reporting_category',
  sourceId: 'source_id',
  description: 'description',
  chargeId: 'charge_id',
  paymentIntentId: 'payment_intent_id',
  paylinkPaymentId: 'payment_metadata[paylink_payment_id]',
  paylinkReference: 'payment_metadata[paylink_reference]',
};

/** The settlement file error: a CsvError naming the file, line and column. */
export { CsvError as SettlementFileError } from './csv';

interface Table {
  file: string;
  /** Row values by column name, and the row's line. */
  rows: { line: number; get: (column: string) => string }[];
}

/** Reads the header (every documented column present once; extra columns are allowed and ignored) and the rows. */
function readTable(file: string, content: string | Uint8Array, columns: readonly string[]): Table {
  const text = typeof content === 'string' ? content : decodeUtf8(file, content);
  const records = readCsv(file, text);
  const header = records[0];
  if (!header || (header.fields.length === 1 && header.fields[0] === '')) {
    throw new CsvError(file, 1, undefined, `no header line (expected: ${columns.join(', ')})`);
  }
  const index = new Map<string, number>();
  header.fields.forEach((name, i) => {
    if (index.has(name)) throw new CsvError(file, header.line, name, 'column appears twice in the header');
    index.set(name, i);
  });
  const missing = columns.filter((c) => !index.has(c));
  if (missing.length > 0) {
    throw new CsvError(
      file,
      header.line,
      undefined,
      `header lacks column(s) ${missing.map((m) => `"${m}"`).join(', ')}`,
    );
  }
  const width = header.fields.length;
  const rows: Table['rows'] = [];
  for (const record of records.slice(1)) {
    if (record.fields.length === 1 && record.fields[0] === '') continue; // a blank line
    if (record.fields.length !== width) {
      throw new CsvError(file, record.line, undefined, `${record.fields.length} fields, the header has ${width}`);
    }
    rows.push({ line: record.line, get: (column) => record.fields[index.get(column)!]! });
  }
  return { file, rows };
}

/** Throws naming the currency column when money in `currency` cannot be converted (no known exponent). */
function knownCurrency(file: string, line: number, column: string, currency: string): void {
  try {
    currencyExponent(currency);
  } catch (err) {
    if (err instanceof MoneyFormatError) throw new CsvError(file, line, column, err.message);
    throw err;
  }
}

function amount(file: string, line: number, column: string, text: string, currency: string): number | null {
  if (text === '') return null;
  if (currency === '') throw new CsvError(file, line, column, `amount "${text}" without a currency`);
  try {
    return fromMajorUnits(text, currency);
  } catch (err) {
    if (err instanceof MoneyFormatError) throw new CsvError(file, line, column, err.message);
    throw err;
  }
}

function validated<T>(
  file: string,
  line: number,
  schema: z.ZodType<T>,
  candidate: unknown,
  columnOf: (field: string) => string,
): T {
  const parsed = schema.safeParse(candidate);
  if (parsed.success) return parsed.data;
  const first = parsed.error.issues[0]!;
  const column = first.path.length > 0 ? columnOf(String(first.path[0])) : undefined;
  throw new CsvError(file, line, column, describeIssues(parsed.error, { rename: columnOf }));
}

/** Parses an Adyen-style Settlement details report; throws SettlementFileError naming file, line and column. */
export function parseAdyenSettlementReport(file: string, content: string | Uint8Array): Located<AdyenSettlementRow>[] {
  const table = readTable(file, content, ADYEN_SETTLEMENT_COLUMNS);
  return table.rows.map(({ line, get }) => {
    const grossCurrency = get('Gross Currency');
    const netCurrency = get('Net Currency');
    const candidate: Record<string, unknown> = {};
    for (const [field, column] of Object.entries(ADYEN_FIELDS)) candidate[field] = get(column);
    if (Currency.safeParse(grossCurrency).success || grossCurrency === '') {
      if (grossCurrency !== '') knownCurrency(file, line, 'Gross Currency', grossCurrency);
      for (const f of ADYEN_GROSS_AMOUNTS)
        candidate[f] = amount(file, line, ADYEN_FIELDS[f], get(ADYEN_FIELDS[f]), grossCurrency);
    }
    if (Currency.safeParse(netCurrency).success || netCurrency === '') {
      if (netCurrency !== '') knownCurrency(file, line, 'Net Currency', netCurrency);
      for (const f of ADYEN_NET_AMOUNTS)
        candidate[f] = amount(file, line, ADYEN_FIELDS[f], get(ADYEN_FIELDS[f]), netCurrency);
    }
    const batch = get('Batch Number');
    candidate['batchNumber'] = batch === '' ? null : /^\d{1,15}$/.test(batch) ? Number(batch) : batch;
    candidate['reserved'] = [
      'Reserved4',
      'Reserved5',
      'Reserved6',
      'Reserved7',
      'Reserved8',
      'Reserved9',
      'Reserved10',
    ].map(get);
    const row = validated(
      file,
      line,
      AdyenSettlementRow,
      candidate,
      (f) => ADYEN_FIELDS[f as keyof typeof ADYEN_FIELDS] ?? f,
    );
    return { ...row, line };
  });
}

/** Parses a Stripe-style itemized payout reconciliation report; throws SettlementFileError naming file, line and column. */
export function parseStripePayoutReport(file: string, content: string | Uint8Array): Located<StripePayoutRow>[] {
  const table = readTable(file, content, STRIPE_PAYOUT_COLUMNS);
  return table.rows.map(({ line, get }) => {
    const candidate: Record<string, unknown> = {};
    for (const [field, column] of Object.entries(STRIPE_FIELDS)) candidate[field] = get(column);
    // Stripe writes currencies in lower case.
    const currency = get('currency');
    if (!/^[a-z]{3}$/.test(currency))
      throw new CsvError(file, line, 'currency', `"${clip(currency)}" is not a lower-case ISO 4217 code`);
    knownCurrency(file, line, 'currency', currency.toUpperCase());
    candidate['currency'] = currency.toUpperCase();
    for (const f of ['grossMinor', 'feeMinor', 'netMinor'] as const) {
      const value = amount(file, line, STRIPE_FIELDS[f], get(STRIPE_FIELDS[f]), currency.toUpperCase());
      if (value === null) throw new CsvError(file, line, STRIPE_FIELDS[f], 'empty amount');
      candidate[f] = value;
    }
    const row = validated(
      file,
      line,
      StripePayoutRow,
      candidate,
      (f) => STRIPE_FIELDS[f as keyof typeof STRIPE_FIELDS] ?? f,
    );
    return { ...row, line };
  });
}

const major = (minor: number | null, currency: string): string => (minor === null ? '' : toMajorUnits(minor, currency));

/** Writes rows as an Adyen-style Settlement details report (the inverse of parseAdyenSettlementReport). */
export function writeAdyenSettlementReport(rows: readonly AdyenSettlementRow[]): string {
  return writeCsv([
    ADYEN_SETTLEMENT_COLUMNS,
    ...rows.map((r) => [
      r.companyAccount,
      r.merchantAccount,
      r.pspReference,
      r.merchantReference,
      r.paymentMethod,
      r.creationDate,
      r.timeZone,
      r.type,
      r.modificationReference,
      r.grossCurrency,
      major(r.grossDebitMinor, r.grossCurrency),
      major(r.grossCreditMinor, r.grossCurrency),
      r.exchangeRate,
      r.netCurrency,
      major(r.netDebitMinor, r.netCurrency),
      major(r.netCreditMinor, r.netCurrency),
      major(r.commissionMinor, r.netCurrency),
      major(r.markupMinor, r.netCurrency),
      major(r.schemeFeesMinor, r.netCurrency),
      major(r.interchangeMinor, r.netCurrency),
      r.paymentMethodVariant,
      r.modificationMerchantReference,
      r.batchNumber === null ? '' : String(r.batchNumber),
      ...r.reserved,
    ]),
  ]);
}

/** Writes rows as a Stripe-style itemized payout reconciliation report (the inverse of parseStripePayoutReport). */
export function writeStripePayoutReport(rows: readonly StripePayoutRow[]): string {
  return writeCsv([
    STRIPE_PAYOUT_COLUMNS,
    ...rows.map((r) => [
      r.automaticPayoutId,
      r.automaticPayoutEffectiveAt,
      r.balanceTransactionId,
      r.createdUtc,
      r.availableOnUtc,
      r.currency.toLowerCase(),
      toMajorUnits(r.grossMinor, r.currency),
      toMajorUnits(r.feeMinor, r.currency),
      toMajorUnits(r.netMinor, r.currency),
      r.reportingCategory,
      r.sourceId,
      r.description,
      r.chargeId,
      r.paymentIntentId,
      r.paylinkPaymentId,
      r.paylinkReference,
    ]),
  ]);
}

const clip = (s: string): string => (s.length > 40 ? `${s.slice(0, 40)}…` : s);

/** What a settlement line means, whichever partner wrote it. */
export type SettlementItemKind = 'settlement' | 'refund' | 'chargeback' | 'chargeback_reversal' | 'payout' | 'other';

/**
 * One line of either format in PayLink's terms, for matching: amounts signed as money to PayLink
 * (a settlement's gross is positive, a refund's negative), fee withheld by the partner, net = gross − fee.
 */
export interface SettlementItem {
  provider: SettlementProvider;
  file: string;
  line: number;
  kind: SettlementItemKind;
  /** PayLink's payment id, as PayLink sent it (Merchant Reference / payment metadata). */
  paymentId: string;
  /** PayLink's id of the settlement, refund or chargeback (Modification Merchant Reference / metadata). */
  reference: string;
  /** The partner's id of this line (Modification Reference / balance transaction id). */
  lineReference: string;
  currency: string;
  grossMinor: number;
  feeMinor: number;
  netMinor: number;
  /** Booking day as the file states it (YYYY-MM-DD). */
  bookedDate: string;
}

const ADYEN_KIND: Partial<Record<AdyenRecordType, SettlementItemKind>> = {
  Settled: 'settlement',
  Refunded: 'refund',
  Chargeback: 'chargeback',
  ChargebackReversed: 'chargeback_reversal',
  MerchantPayout: 'payout',
};
const STRIPE_KIND: Partial<Record<StripeReportingCategory, SettlementItemKind>> = {
  charge: 'settlement',
  refund: 'refund',
  dispute: 'chargeback',
  dispute_reversal: 'chargeback_reversal',
  payout: 'payout',
};

/** Parses a settlement file of either provider into SettlementItems (throws SettlementFileError). */
export function parseSettlementItems(
  provider: SettlementProvider,
  file: string,
  content: string | Uint8Array,
): SettlementItem[] {
  if (provider === 'stripe') {
    return parseStripePayoutReport(file, content).map((r) => ({
      provider,
      file,
      line: r.line,
      kind: STRIPE_KIND[r.reportingCategory] ?? 'other',
      paymentId: r.paylinkPaymentId,
      reference: r.paylinkReference,
      lineReference: r.balanceTransactionId,
      currency: r.currency,
      grossMinor: r.grossMinor,
      feeMinor: r.feeMinor,
      netMinor: r.netMinor,
      bookedDate: r.createdUtc.slice(0, 10),
    }));
  }
  return parseAdyenSettlementReport(file, content).map((r) => {
    const feeMinor =
      (r.commissionMinor ?? 0) + (r.markupMinor ?? 0) + (r.schemeFeesMinor ?? 0) + (r.interchangeMinor ?? 0);
    const netMinor = (r.netCreditMinor ?? 0) - (r.netDebitMinor ?? 0);
    const hasGross = r.grossCreditMinor !== null || r.grossDebitMinor !== null;
    return {
      provider,
      file,
      line: r.line,
      kind: ADYEN_KIND[r.type] ?? 'other',
      paymentId: r.merchantReference,
      reference: r.modificationMerchantReference,
      lineReference: r.modificationReference,
      currency: r.grossCurrency || r.netCurrency,
      grossMinor: hasGross ? (r.grossCreditMinor ?? 0) - (r.grossDebitMinor ?? 0) : netMinor + feeMinor,
      feeMinor,
      netMinor,
      bookedDate: r.creationDate.slice(0, 10),
    };
  });
}

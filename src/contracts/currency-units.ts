// Settlement files carry money as decimal strings in major units ("12.34", JPY "1234", BHD "1.234");
// PayLink keeps integer minor units. The conversion is string ↔ bigint arithmetic: never a float.

/** ISO 4217 minor-unit exponents that differ from 2; every other code known here has 2. */
const EXPONENT_NOT_2: Readonly<Record<string, number>> = {
  BIF: 0,
  CLP: 0,
  DJF: 0,
  GNF: 0,
  ISK: 0,
  JPY: 0,
  KMF: 0,
  KRW: 0,
  PYG: 0,
  RWF: 0,
  UGX: 0,
  VND: 0,
  VUV: 0,
  XAF: 0,
  XOF: 0,
  XPF: 0,
  BHD: 3,
  IQD: 3,
  JOD: 3,
  KWD: 3,
  LYD: 3,
  OMR: 3,
  TND: 3,
};
const EXPONENT_2 = [
  'AED',
  'AMD',
  'ARS',
  'AUD',
  'AZN',
  'BAM',
  'BDT',
  'BGN',
  'BOB',
  'BRL',
  'BWP',
  'BYN',
  'CAD',
  'CHF',
  'CNY',
  'COP',
  'CRC',
  'CZK',
  'DKK',
  'DOP',
  'DZD',
  'EGP',
  'ETB',
  'EUR',
  'FJD',
  'GBP',
  'GEL',
  'GHS',
  'GTQ',
  'HKD',
  'HNL',
  'HUF',
  'IDR',
  'ILS',
  'INR',
  'JMD',
  'KES',
  'KGS',
  'KHR',
  'KZT',
  'LBP',
  'LKR',
  'MAD',
  'MDL',
  'MKD',
  'MNT',
  'MOP',
  'MUR',
  'MXN',
  'MYR',
  'NAD',
  'NGN',
  'NIO',
  'NOK',
  'NPR',
  'NZD',
  'PAB',
  'PEN',
  'PHP',
  'PKR',
  'PLN',
  'QAR',
  'RON',
  'RSD',
  'RUB',
  'SAR',
  'SEK',
  'SGD',
  'THB',
  'TRY',
  'TTD',
  'TWD',
  'TZS',
  'UAH',
  'USD',
  'UYU',
  'UZS',
  'XCD',
  'ZAR',
  'ZMW',
];

/** An amount or currency a settlement file cannot mean exactly; the message names the offending text. */
export class MoneyFormatError extends Error {
  override name = 'MoneyFormatError';
}

/** Digits after the decimal point for `currency` (ISO 4217); throws for a code it does not know. */
export function currencyExponent(currency: string): number {
  const code = currency.toUpperCase();
  const exponent = EXPONENT_NOT_2[code] ?? (EXPONENT_2.includes(code) ? 2 : undefined);
  if (exponent === undefined) throw new MoneyFormatError(`unknown currency "${currency}": no ISO 4217 exponent`);
  return exponent;
}

/** The currencies the conversion knows (tests iterate them). */
export const KNOWN_CURRENCIES: readonly string[] = [...Object.keys(EXPONENT_NOT_2), ...EXPONENT_2];

/** Integer minor units as a major-unit decimal with exactly the currency's digits: 1234 EUR → "12.34", -5 → "-0.05". */
export function toMajorUnits(minor: number | bigint, currency: string): string {
  if (typeof minor === 'number' && !Number.isSafeInteger(minor)) {
    throw new MoneyFormatError(`${minor} ${currency}: not a safe integer of minor units`);
  }
  const exponent = currencyExponent(currency);
  const value = BigInt(minor);
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(exponent + 1, '0');
  const whole = digits.slice(0, digits.length - exponent);
  const fraction = digits.slice(digits.length - exponent);
  return `${negative ? '-' : ''}${whole}${exponent > 0 ? `.${fraction}` : ''}`;
}

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/**
 * A major-unit decimal as integer minor units: "12.34" EUR → 1234, "7.5" EUR → 750, "1234" JPY → 1234.
 * Refuses more fraction digits than the currency has, exponents, spaces, and results beyond 2^53−1.
 */
export function fromMajorUnits(text: string, currency: string): number {
  const exponent = currencyExponent(currency);
  const m = DECIMAL.exec(text);
  if (!m) throw new MoneyFormatError(`"${clip(text)}" is not a decimal amount (digits, optional "." and fraction)`);
  const [, sign, whole, fraction = ''] = m;
  if (fraction.length > exponent) {
    throw new MoneyFormatError(
      `"${clip(text)}" has ${fraction.length} fraction digits; ${currency.toUpperCase()} has ${exponent}`,
    );
  }
  const minor = BigInt(`${whole}${fraction.padEnd(exponent, '0')}`) * (sign === '-' ? -1n : 1n);
  if (minor > BigInt(Number.MAX_SAFE_INTEGER) || minor < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new MoneyFormatError(`"${clip(text)}" ${currency} is beyond 2^53−1 minor units`);
  }
  return Number(minor);
}

const clip = (s: string): string => (s.length > 40 ? `${s.slice(0, 40)}…` : s);

// The tokenizer's detectors: raw card numbers, emails, IBANs and phone numbers in text. The tokenizer
// replaces exactly what locatePii finds. The leak scanner (src/quality/pii-scanner.ts) is written
// apart and stricter, so a blind spot here is not a blind spot there.

export type PiiKind = 'pan' | 'email' | 'iban' | 'phone';

/** Where one piece of PII sits in a text, and its canonical form (the tokenizer's HMAC input). */
export interface PiiSpan {
  kind: PiiKind;
  start: number;
  end: number;
  normalized: string;
}

export const TOKEN_KINDS = ['pan', 'email', 'phone', 'iban', 'name', 'address'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

/** `tok_<kind>_<key version>_<32 hex>`: the shape of every token the tokenizer emits. */
export const TOKEN_PATTERN = new RegExp(`^tok_(${TOKEN_KINDS.join('|')})_([1-9][0-9]{0,8})_([0-9a-f]{32})$`);
const TOKEN_IN_TEXT = new RegExp(`tok_(?:${TOKEN_KINDS.join('|')})_[1-9][0-9]{0,8}_[0-9a-f]{32}`, 'g');

export function isToken(value: string): boolean {
  return TOKEN_PATTERN.test(value);
}

/** Luhn (mod 10) check over a string of digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = digits.length - 1, double = false; i >= 0; i--, double = !double) {
    let d = digits.charCodeAt(i) - 48;
    if (double) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return digits.length > 0 && sum % 10 === 0;
}

/** ISO 13616 mod-97 check over a compact, upper-case IBAN. */
export function ibanValid(compact: string): boolean {
  const expected = IBAN_LENGTHS[compact.slice(0, 2)];
  if (expected === undefined || compact.length !== expected || !/^[A-Z]{2}[0-9]{2}[A-Z0-9]+$/.test(compact)) {
    return false;
  }
  const rearranged = compact.slice(4) + compact.slice(0, 4);
  let remainder = 0;
  for (const ch of rearranged) {
    const code = ch.charCodeAt(0);
    const value = code >= 65 ? String(code - 55) : ch;
    for (const d of value) remainder = (remainder * 10 + (d.charCodeAt(0) - 48)) % 97;
  }
  return remainder === 1;
}

/** A card number: 12–19 digits, Luhn-valid, leading digit 2–9 (0/1 are not card-brand ranges). */
export function panCandidateValid(digits: string): boolean {
  return /^[2-9][0-9]{11,18}$/.test(digits) && luhnValid(digits);
}

// IBAN lengths by country (SWIFT IBAN registry); a fixed length keeps neighbouring words out of the match.
// prettier-ignore
const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28,
  CH: 21, CR: 22, CY: 28, CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18,
  FK: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HR: 21, HU: 28, IE: 22,
  IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20, LU: 20,
  LV: 21, LY: 25, MC: 27, MD: 24, ME: 22, MK: 19, MN: 20, MR: 27, MT: 31, MU: 30, NI: 28, NL: 18,
  NO: 15, OM: 23, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24, RS: 22, RU: 33, SA: 24, SC: 31,
  SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, SO: 23, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26, UA: 29,
  VA: 22, VG: 24, XK: 20, YE: 30,
};

// By index (charCodeAt; NaN outside the text): the detectors run over every character of 256 KB bodies.
const isDigit = (text: string, i: number): boolean => {
  const c = text.charCodeAt(i);
  return c >= 48 && c <= 57;
};
// Word characters as in regex \b: a number glued to one is part of an identifier ("pay_4242…", "INV4242…").
const isWordChar = (text: string, i: number): boolean => {
  const c = text.charCodeAt(i);
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
};

const isUpperOrDigit = (text: string, i: number): boolean => {
  const c = text.charCodeAt(i);
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90);
};

// A letter right after a backslash is a JSON escape (\n, \t…), so it does not glue a number to a word.
function wordCharBefore(text: string, i: number): boolean {
  if (!isWordChar(text, i - 1)) return false;
  return !(text[i - 2] === '\\' && 'nrtbf'.includes(text[i - 1]!));
}

function findEmails(text: string, limit: number): PiiSpan[] {
  const spans: PiiSpan[] = [];
  const re = /(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+/g;
  for (const m of text.matchAll(re)) {
    let start = m.index;
    let found = m[0];
    // As for numbers: the letter of a JSON escape (\n@type.googleapis.com) is not part of a local part.
    if (text[start - 1] === '\\' && 'nrtbf'.includes(found[0]!)) {
      start += 1;
      found = found.slice(1);
      if (found.startsWith('@')) continue;
    }
    const tld = found.slice(found.lastIndexOf('.') + 1);
    if (!/^[A-Za-z]{2,24}$/.test(tld)) continue;
    spans.push({ kind: 'email', start, end: start + found.length, normalized: found.toLowerCase() });
    if (spans.length > limit) break;
  }
  return spans;
}

// Country code, check digits, then exactly the country's length of [A-Z0-9], single spaces allowed.
// Upper case only in free text (lower-case letter+digit runs are mostly ids); iban fields take any case.
function findIbans(text: string, limit: number): PiiSpan[] {
  const spans: PiiSpan[] = [];
  for (const m of text.matchAll(/(?<![A-Za-z0-9_])[A-Z]{2}[0-9]{2}/g)) {
    const length = IBAN_LENGTHS[m[0].slice(0, 2)];
    if (length === undefined) continue;
    let compact = m[0];
    let i = m.index + 4;
    while (compact.length < length && i < text.length) {
      if (isUpperOrDigit(text, i)) compact += text[i];
      else if (!(text[i] === ' ' && isUpperOrDigit(text, i + 1))) break;
      i++;
    }
    if (compact.length === length && !isWordChar(text, i) && ibanValid(compact)) {
      spans.push({ kind: 'iban', start: m.index, end: i, normalized: compact });
      if (spans.length > limit) break;
    }
  }
  return spans;
}

// "+" then digit groups split by one of " .-" or a "(…)" group, up to the E.164 maximum of 15 digits.
function findPhones(text: string, limit: number): PiiSpan[] {
  const spans: PiiSpan[] = [];
  for (let plus = text.indexOf('+'); plus !== -1; plus = text.indexOf('+', plus + 1)) {
    if (!isDigit(text, plus + 1) || text[plus + 1] === '0' || wordCharBefore(text, plus) || text[plus - 1] === '+') {
      continue;
    }
    let digits = '';
    let end = -1;
    let i = plus + 1;
    for (;;) {
      let j = i;
      if (digits.length > 0 && ' .-'.includes(text[j] ?? 'x')) j++;
      const paren = text[j] === '(' && digits.length > 0;
      if (paren) j++;
      let k = j;
      while (isDigit(text, k)) k++;
      if (k === j || (paren && text[k] !== ')')) break;
      if (digits.length + (k - j) > 15) break;
      digits += text.slice(j, k);
      end = paren ? k + 1 : k;
      i = end;
    }
    if (digits.length >= 8 && !isWordChar(text, end)) {
      spans.push({ kind: 'phone', start: plus, end, normalized: `+${digits}` });
      if (spans.length > limit) break;
    }
  }
  return spans;
}

// Maximal runs of digit groups split by one space or dash; inside a run, the first and longest
// consecutive groups that form a card number win (so "4242 4242 4242 4242 12/26" still finds the PAN).
// A single group counts wherever it sits, glued inside an identifier too ("evt_4242…_x", "INV4242…"):
// a card number pasted into an id is still a card number. A separated run glued to a word character is
// an identifier (a UUID like 88085465-8270-46ac-…), so only its single groups are candidates.
// Digits right after "+" are a phone number unless they are longer than E.164's 15 digits.
function findPans(text: string, limit: number): PiiSpan[] {
  const spans: PiiSpan[] = [];
  let i = 0;
  while (i < text.length) {
    if (!isDigit(text, i) || isDigit(text, i - 1)) {
      i++;
      continue;
    }
    const groups: { start: number; end: number }[] = [];
    let j = i;
    for (;;) {
      const start = j;
      while (isDigit(text, j)) j++;
      groups.push({ start, end: j });
      if ((text[j] === ' ' || text[j] === '-') && isDigit(text, j + 1)) j++;
      else break;
    }
    const runEnd = groups[groups.length - 1]!.end;
    const glued = wordCharBefore(text, i) || isWordChar(text, runEnd);
    const afterPlus = text[i - 1] === '+';
    let a = 0;
    while (a < groups.length) {
      let found = -1;
      // Only a run that starts with a brand digit (2–9) can be a card number (panCandidateValid).
      const brand = text.charCodeAt(groups[a]!.start) >= 50;
      // Extended one group at a time, in O(1) per digit: the length, whether every group so far has at most 6 digits,
      // and the Luhn sum as it stands (`luhn`) and as it would be with one more digit after (`luhnShifted`).
      let length = 0;
      let shortGroups = true;
      let luhn = 0;
      let luhnShifted = 0;
      for (let b = a; brand && b < groups.length; b++) {
        const { start, end } = groups[b]!;
        length += end - start;
        if (length > 19 || (glued && b > a)) break;
        for (let k = start; k < end; k++) {
          const d = text.charCodeAt(k) - 48;
          const next = d + luhnShifted;
          luhnShifted = (d > 4 ? d * 2 - 9 : d * 2) + luhn;
          luhn = next;
        }
        shortGroups &&= end - start <= 6;
        const phoneLike = a === 0 && afterPlus && length <= 15;
        // Printed card numbers group digits by 4–6 (4-4-4-4, 4-6-5); longer groups are other numbers.
        const cardGrouping = a === b || shortGroups;
        if (length >= 12 && !phoneLike && cardGrouping && luhn % 10 === 0) found = b;
      }
      if (found === -1) {
        a++;
        continue;
      }
      const start = groups[a]!.start;
      const end = groups[found]!.end;
      spans.push({ kind: 'pan', start, end, normalized: text.slice(start, end).replace(/[^0-9]/g, '') });
      if (spans.length > limit) return spans;
      a = found + 1;
    }
    i = runEnd;
  }
  return spans;
}

// National phone formats of the regions we serve, written with separators (a bare run of digits is
// too often an amount or an id): NANP "(415) 555-2671" / "415-555-2671" / "415.555.2671" with an
// optional "1"; a trunk "0" number split in groups (UK "020 7946 0958", "07700 900123", FR
// "01 23 45 67 89", DE "030 12345678", IN "011 2345 6789", NL "06-12345678"), 10–12 digits in all;
// Indian mobiles "98765 43210"; Spanish "612 345 678" / "912 34 56 78".
const NATIONAL_PHONES: readonly RegExp[] = [
  /(?<![\w+.-])(?:1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}(?![\w]|[.-][0-9])/g,
  /(?<![\w+.-])(?:\(0[1-9][0-9]{0,4}\)|0[1-9][0-9]{0,4})(?:[ .-]?[0-9]{2,8}){1,4}(?![\w]|[.-][0-9])/g,
  /(?<![\w+.-])(?:0|91[ -]?)?[6-9][0-9]{4}[ -][0-9]{5}(?![\w]|[.-][0-9])/g,
  /(?<![\w+.-])[6-9][0-9]{2}(?: [0-9]{3} [0-9]{3}| [0-9]{2} [0-9]{2} [0-9]{2})(?![\w]|[ .-][0-9])/g,
];

function findNationalPhones(text: string, limit: number): PiiSpan[] {
  const spans: PiiSpan[] = [];
  let masked = text;
  for (const [n, re] of NATIONAL_PHONES.entries()) {
    const found: PiiSpan[] = [];
    for (const m of masked.matchAll(re)) {
      const digits = m[0].replace(/[^0-9]/g, '');
      // The trunk-"0" shape needs a separator: "07700900123" alone is as likely an id as a phone.
      if (n === 1 && (digits.length < 10 || digits.length > 12 || !/[^0-9]/.test(m[0]))) continue;
      found.push({ kind: 'phone', start: m.index, end: m.index + m[0].length, normalized: digits });
      if (spans.length + found.length > limit) break;
    }
    for (const span of found) spans.push(span);
    if (spans.length > limit) break;
    masked = blankAll(masked, found);
  }
  return spans;
}

/**
 * Every PII span in `text`, left to right, never overlapping each other or a token. With a `limit`, it may stop
 * once it has found more than that many (a caller with a budget refuses the text then: the rest is not needed).
 */
export function locatePii(text: string, limit = Infinity): PiiSpan[] {
  // Each detector sees the text with earlier claims blanked out, so a greedy phone number can
  // never swallow the first group of a card number and leave the rest of it in clear.
  // Each pass blanks all its spans in one copy of the text, never one copy per span: 36K emails in one
  // body cost 36K whole-text copies (seconds) that way, so the work per request stays linear in its size.
  let masked = text.includes('tok_')
    ? blankAll(
        text,
        [...text.matchAll(TOKEN_IN_TEXT)].map((m) => ({ start: m.index, end: m.index + m[0].length })),
      )
    : text;
  const found: PiiSpan[] = [];
  const digits = digitCount(text);
  for (const { detect, applies } of DETECTORS) {
    if (!applies(text, digits)) continue;
    const spans = detect(masked, limit - found.length);
    for (const span of spans) found.push(span);
    if (found.length > limit) break;
    masked = blankAll(masked, spans);
  }
  return found.sort((x, y) => x.start - y.start);
}

// In the order they claim text. Each runs only where what it finds could be: an event's many short strings
// (ids, dates, amounts) then cost one pass, not five detectors each.
const DETECTORS: readonly {
  detect: (text: string, limit: number) => PiiSpan[];
  applies: (text: string, digits: number) => boolean;
}[] = [
  { detect: findEmails, applies: (text) => text.includes('@') },
  // The shortest IBAN (NO) is 15 characters; every IBAN has its two check digits.
  { detect: findIbans, applies: (text, digits) => text.length >= 15 && digits >= 2 },
  { detect: findPans, applies: (_, digits) => digits >= 12 },
  { detect: findPhones, applies: (text, digits) => digits >= 8 && text.includes('+') },
  // The shortest national shape: Spanish "612 345 678", 9 digits.
  { detect: findNationalPhones, applies: (_, digits) => digits >= 9 },
];

function digitCount(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) if (isDigit(text, i)) n++;
  return n;
}

// Blanked text is U+0000: neither a word character nor a separator any detector accepts.
/** `text` with every span blanked, built in one pass; spans may come in any order and may overlap. */
function blankAll(text: string, spans: readonly { start: number; end: number }[]): string {
  if (spans.length === 0) return text;
  const sorted = [...spans].sort((x, y) => x.start - y.start);
  const parts: string[] = [];
  let at = 0;
  for (const { start, end } of sorted) {
    if (end <= at) continue;
    const from = Math.max(start, at);
    parts.push(text.slice(at, from), '\u0000'.repeat(end - from));
    at = end;
  }
  parts.push(text.slice(at));
  return parts.join('');
}

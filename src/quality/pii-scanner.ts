import { TOKEN_KINDS, ibanValid, luhnValid } from '../ingest/pii-detect';

// The leak scanner: finds raw card numbers, emails, IBANs and phone numbers in any text that left
// the edge. It is written apart from the tokenizer's detectors and is stricter than they are — no
// field names, no neighbours that excuse a number, no money exemption — so a tokenizer blind spot
// shows up here as a finding instead of being shared. It shares only arithmetic (Luhn, mod-97) and
// the token format. What it still tolerates, each for a stated reason:
// - digits inside a hex run of 32+ characters that has a letter (a digest or token), or a UUID;
// - a card-number window whose edge digit group sits in a run of 24+ hex characters (our hex ids);
// - lower-case IBAN look-alikes made only of hex characters (ids such as "stl_ee141c6cbd77…");
// - digit strings without separators that are not card-length (an id or amount, not a phone).

export type PiiKind = 'pan' | 'email' | 'iban' | 'phone';

/** A finding safe to log: its position and a masked sample, never the raw value. */
export interface PiiFinding {
  kind: PiiKind;
  offset: number;
  length: number;
  sample: string;
}

const TOKEN_IN_TEXT = new RegExp(`tok_(?:${TOKEN_KINDS.join('|')})_[0-9]+_[0-9a-f]{32}`, 'g');
// The hot loops walk char codes and never retry a pattern from every character: the scanner reads
// every message, row and log line of every store, so its cost per character bounds `npm run pii-scan`.
const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isHex = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);

// UUIDs (8-4-4-4-12 hex): their dashed digit groups can add up to a Luhn-valid 13 digits.
const UUID_GROUPS = [8, 4, 4, 4, 12];
function uuidAt(text: string, start: number): boolean {
  let i = start;
  for (const [g, length] of UUID_GROUPS.entries()) {
    if (g > 0 && text.charCodeAt(i++) !== 45) return false;
    for (const end = i + length; i < end; i++) if (!isHex(text.charCodeAt(i))) return false;
  }
  return true;
}

interface Hit {
  kind: PiiKind;
  start: number;
  end: number;
  digitsOrText: string;
}

/** Spans the scanner must not read as numbers: tokens, and hex digests that contain a letter. */
function opaqueSpans(text: string): [number, number][] {
  const spans: [number, number][] = [];
  if (text.includes('tok_')) for (const m of text.matchAll(TOKEN_IN_TEXT)) spans.push([m.index, m.index + m[0].length]);
  // Hex runs long enough to be digests (SHA-256, HMACs, our 128-bit tokens) are not numbers: every
  // maximal run of 32+ hex characters with a letter in it. Such a run covers one of any 32
  // consecutive positions, so probing every 32nd character finds each one.
  for (let probe = 31; probe < text.length;) {
    if (!isHex(text.charCodeAt(probe))) {
      probe += 32;
      continue;
    }
    let start = probe;
    while (start > 0 && isHex(text.charCodeAt(start - 1))) start--;
    let end = probe + 1;
    while (end < text.length && isHex(text.charCodeAt(end))) end++;
    if (end - start >= 32 && /[A-Fa-f]/.test(text.slice(start, end))) spans.push([start, end]);
    probe = end + 32;
  }
  // Each UUID starts 8 characters before a dash; scanning on, the next starts after it ends.
  for (let dash = text.indexOf('-'), after = 0; dash !== -1; dash = text.indexOf('-', dash + 1)) {
    const start = dash - 8;
    if (start >= after && uuidAt(text, start)) spans.push([start, (after = start + 36)]);
  }
  return spans;
}

/** `text` with every opaque span blanked to U+0000, which no detector reads as a digit, letter or separator. */
function blankOpaque(text: string): string {
  const spans = opaqueSpans(text).sort((x, y) => x[0] - y[0]);
  if (spans.length === 0) return text;
  let out = '';
  let at = 0;
  for (const [s, e] of spans) {
    if (e <= at) continue;
    const from = Math.max(s, at);
    out += text.slice(at, from) + '\u0000'.repeat(e - from);
    at = e;
  }
  return out + text.slice(at);
}

// Our own ids are hex: "evt_"/"stl_" + 24 hex, trace ids and "unidentified-" + 32, digests. Ten of the 16
// hex characters are digits, so about one 24-hex id in 650 holds a Luhn-valid 12–19 digit run by chance.
// A digit group inside a run of 24+ hex characters is read as part of such an id. 24 is our shortest id;
// a 19-digit card with up to 4 hex characters glued on ("cafe", "\u20ac", "%3D") makes 23, so it stays a
// finding, as does a card glued to a letter past f ("x4111…", "INV4111…"): an id with a card in it is
// still a leak. Given up: a card inside a 24+ hex run ("deadbeef4111…"); the tokenizer still replaces it.
const HEX_ID_LENGTH = 24;

/** Whether the digit group [start, end) lies in a run of HEX_ID_LENGTH+ hex characters (a group has at most 19). */
function inHexId(text: string, start: number, end: number): boolean {
  // Bounded walks: runs of 32+ with a letter are blanked already, and 24 is enough to decide.
  let from = start;
  while (from > 0 && end - from < HEX_ID_LENGTH && isHex(text.charCodeAt(from - 1))) from--;
  let to = end;
  while (to < text.length && to - from < HEX_ID_LENGTH && isHex(text.charCodeAt(to))) to++;
  return to - from >= HEX_ID_LENGTH;
}

// Every run of digits with single separators (space, dash, dot) between them; each window of
// consecutive groups of 12–19 digits (ISO 7812) that passes Luhn and starts like a card brand (2–9) is a PAN,
// whatever surrounds it — letters, underscores, quotes, a currency field — unless an edge group is in a hex id.
function cardNumbers(text: string): Hit[] {
  const hits: Hit[] = [];
  const starts: number[] = [];
  const ends: number[] = [];
  for (let i = 0; i < text.length;) {
    if (!isDigit(text.charCodeAt(i))) {
      i++;
      continue;
    }
    starts.length = 0;
    ends.length = 0;
    let total = 0;
    let end = i;
    for (let start = i; ; start = end + 1) {
      end = start;
      while (end < text.length && isDigit(text.charCodeAt(end))) end++;
      starts.push(start);
      ends.push(end);
      total += end - start;
      const sep = text.charCodeAt(end);
      if (!((sep === 32 || sep === 46 || sep === 45) && isDigit(text.charCodeAt(end + 1)))) break;
    }
    i = end;
    // Fewer than 12 digits in the whole run: no window can be a card (most runs: dates, amounts, ids).
    if (total < 12) continue;
    for (let a = 0; a < starts.length; a++) {
      let digits = '';
      let longest = 0;
      for (let b = a; b < starts.length; b++) {
        digits += text.slice(starts[b], ends[b]);
        longest = Math.max(longest, ends[b]! - starts[b]!);
        // Printed card numbers group by 4–6 digits: a window of longer groups is some other number.
        if (digits.length > 19 || (b > a && longest > 6)) break;
        if (
          digits.length >= 12 &&
          digits.charCodeAt(0) >= 50 &&
          luhnValid(digits) &&
          !inHexId(text, starts[a]!, ends[a]!) &&
          !inHexId(text, starts[b]!, ends[b]!)
        ) {
          hits.push({ kind: 'pan', start: starts[a]!, end: ends[b]!, digitsOrText: digits });
        }
      }
    }
  }
  return hits;
}

// From the start a local part may take (anchored with lastIndex), the rest of an address.
const EMAIL_FROM = /[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])/y;
// The local part's characters by char code, the same class as in EMAIL_FROM.
const LOCAL_PART = Array.from({ length: 128 }, (_, c) => /[A-Za-z0-9._%+'-]/.test(String.fromCharCode(c)));

// Each "@" with the run of local-part characters before it: the leftmost match a scan of the text
// for the whole address would find, without retrying the address from every character of every word.
function emails(text: string): Hit[] {
  const hits: Hit[] = [];
  let from = 0;
  for (let at = text.indexOf('@'); at !== -1; at = text.indexOf('@', at + 1)) {
    if (at < from) continue;
    let local = at;
    while (local > from && LOCAL_PART[text.charCodeAt(local - 1)] === true) local--;
    if (local === at) continue;
    EMAIL_FROM.lastIndex = local;
    const m = EMAIL_FROM.exec(text);
    if (!m) continue;
    from = local + m[0].length;
    let start = local;
    // A JSON escape's letter (\n, \t…) right before the local part is not part of it.
    if (text[start - 1] === '\\' && 'nrtbfu'.includes(m[0][0]!)) start += 1;
    if (text[start] === '@') continue;
    hits.push({ kind: 'email', start, end: from, digitsOrText: text.slice(start, from) });
  }
  return hits;
}

// Every start position (a lookahead does not consume), so one candidate cannot swallow the next.
// Lower case is read too, but only as a word of its own: "evt_2ba70d195d…" is a hex id, not an IBAN.
const IBAN_CANDIDATE = /(?<![A-Za-z0-9])(?=([A-Za-z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){10,30}))/g;

// An IBAN is written in one case; only its first letter may differ ("De89…"). Letters of both cases after it
// are base64 or a random token: a signature such as "…S/fi46XyFf8FbKNnWA8uEu…" holds a mod-97-valid
// "FI46XYFF8FBKNNWA8U" by chance (1 in 97 of the well-shaped windows) and failed a demo's scan.
function mixedCase(text: string, from: number, to: number): boolean {
  let upper = false;
  let lower = false;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c >= 65 && c <= 90) upper = true;
    else if (c >= 97 && c <= 122) lower = true;
  }
  return upper && lower;
}

function ibans(text: string): Hit[] {
  const hits: Hit[] = [];
  for (const m of text.matchAll(IBAN_CANDIDATE)) {
    // Hits come in order and do not overlap, so the last one reaches furthest.
    if (m.index < (hits.at(-1)?.end ?? 0)) continue;
    const run = m[1]!;
    // Lower-case hex ("stl_ee141c6cbd77…", a Mongo-style id) cannot tell an IBAN from an id: skip it.
    if (/^[0-9a-f -]+$/.test(run.slice(0, 34)) && /^[a-f]{2}/.test(run)) continue;
    // Any prefix of the run may be the IBAN (a word can follow it without a break).
    let compact = '';
    const at: number[] = [];
    for (let i = 0; i < run.length; i++) {
      const c = run.charCodeAt(i);
      if (c !== 32 && c !== 45) {
        compact += run[i]!.toUpperCase();
        at.push(i);
      }
    }
    for (let n = Math.min(compact.length, 34); n >= 15; n--) {
      if (ibanValid(compact.slice(0, n)) && !mixedCase(run, at[1]!, at[n - 1]! + 1)) {
        hits.push({ kind: 'iban', start: m.index, end: m.index + at[n - 1]! + 1, digitsOrText: compact.slice(0, n) });
        break;
      }
    }
  }
  return hits;
}

// Phones: "+" international numbers of 8–15 digits in any grouping ("00" ones are left out: SQLSTATEs
// and zero-padded ids look the same), and national numbers in
// the regions we serve written with separators: 3-3-4 (NANP, optional 1), trunk "0" numbers of
// 10–12 digits in two or more groups (UK, FR, DE, NL, IT, IN landlines), 5-5 (Indian mobiles),
// 3-3-3 and 3-2-2-2 (Spain).
const SEP = String.raw`(?:[ ./-]|\) ?| ?\()`;
const INTERNATIONAL = new RegExp(String.raw`\+[1-9][0-9]*(?:${SEP}?[0-9]+)*`, 'g');
const NATIONAL: { re: RegExp; ok: (digits: string) => boolean }[] = [
  {
    re: new RegExp(String.raw`(?<![0-9])(?:1${SEP})?\(?[2-9][0-9]{2}${SEP}[2-9][0-9]{2}${SEP}[0-9]{4}(?![0-9])`, 'g'),
    ok: () => true,
  },
  {
    // Groups of 2–8 digits, as national plans print them; never the seconds of a time ("08:58:03.924188").
    re: new RegExp(String.raw`(?<![0-9]|[0-9]:)\(?0[1-9][0-9]{0,7}(?:${SEP}[0-9]{2,8})+(?![0-9])`, 'g'),
    ok: (d) => d.length >= 10 && d.length <= 12,
  },
  { re: /(?<![0-9])(?:0|91[ -]?)?[6-9][0-9]{4}[ -][0-9]{5}(?![0-9])/g, ok: () => true },
  { re: /(?<![0-9])[6-9][0-9]{2}(?: [0-9]{3} [0-9]{3}| [0-9]{2} [0-9]{2} [0-9]{2})(?![0-9])/g, ok: () => true },
];

function phones(text: string): Hit[] {
  const hits: Hit[] = [];
  // International: the longest prefix of the digit groups after "+" that E.164 allows.
  if (text.includes('+')) {
    for (const m of text.matchAll(INTERNATIONAL)) {
      let digits = '';
      let best: { end: number; digits: string } | undefined;
      for (const g of m[0].slice(1).matchAll(/[0-9]+/g)) {
        digits += g[0];
        if (digits.length > 15) break;
        if (digits.length >= 8) best = { end: m.index + 1 + g.index + g[0].length, digits };
      }
      if (best) hits.push({ kind: 'phone', start: m.index, end: best.end, digitsOrText: `+${best.digits}` });
    }
  }
  for (const { re, ok } of NATIONAL) {
    for (const m of text.matchAll(re)) {
      const digits = m[0].replace(/[^0-9]/g, '');
      if (ok(digits)) hits.push({ kind: 'phone', start: m.index, end: m.index + m[0].length, digitsOrText: digits });
    }
  }
  return hits;
}

/** A masked sample: enough to recognise the kind in a report, never enough to recover the value. */
function maskPii(kind: PiiKind, value: string): string {
  switch (kind) {
    case 'pan':
      return `${'*'.repeat(value.length - 4)}${value.slice(-4)}`;
    case 'email': {
      const lower = value.toLowerCase();
      const at = lower.indexOf('@');
      const domain = lower.slice(at + 1);
      return `${lower[0] ?? ''}***@${domain[0] ?? ''}***${domain.slice(domain.lastIndexOf('.'))}`;
    }
    case 'iban':
      return `${value.slice(0, 2)}${'*'.repeat(value.length - 6)}${value.slice(-4)}`;
    case 'phone': {
      const plus = value.startsWith('+') ? '+' : '';
      return `${plus}${'*'.repeat(Math.max(value.length - plus.length - 2, 1))}${value.slice(-2)}`;
    }
  }
}

/**
 * Raw PAN/PII in `text`, as masked findings with their offsets. A hit inside a wider one is dropped
 * (the digits of "+4915112345678" are a phone, not also a card); hits that only overlap both stay.
 */
export function scanForPii(text: string): PiiFinding[] {
  // Every detector needs a digit or an "@": most keys, header names and words have neither.
  if (!/[0-9@]/.test(text)) return [];
  const seen = blankOpaque(text);
  const hits = [
    ...cardNumbers(seen),
    ...ibans(seen),
    ...(seen.includes('@') ? emails(seen) : []),
    // The shortest phone any shape reads has 8 digits.
    ...(/(?:[0-9][^0-9]*){8}/.test(seen) ? phones(seen) : []),
  ];
  if (hits.length === 0) return [];
  // By start, the widest first, ties in detector order: a hit lies inside another exactly when one
  // before it in this order reaches as far (one pass after the sort, however many hits a text holds).
  hits.sort((x, y) => x.start - y.start || y.end - x.end);
  const kept: Hit[] = [];
  let reach = 0;
  for (const h of hits) {
    if (h.end <= reach) continue;
    kept.push(h);
    reach = h.end;
  }
  return kept.map((h) => ({
    kind: h.kind,
    offset: h.start,
    length: h.end - h.start,
    sample: maskPii(h.kind, h.digitsOrText),
  }));
}

/** Scans the JSON text of `value` (offsets are into that text); undefined scans as nothing. */
export function scanValue(value: unknown): PiiFinding[] {
  const text = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) as
    string | undefined;
  return text === undefined ? [] : scanForPii(text);
}

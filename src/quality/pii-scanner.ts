import { TOKEN_KINDS, ibanValid, luhnValid } from '../ingest/pii-detect';

// The leak scanner: finds raw card numbers, emails, IBANs and phone numbers in any text that left
// the edge. It is written apart from the tokenizer's detectors and is stricter than they are — no
// field names, no neighbours that excuse a number, no money exemption — so a tokenizer blind spot
// shows up here as a finding instead of being shared. It shares only arithmetic (Luhn, mod-97) and
// the token format. What it still tolerates, each for a stated reason:
// - digits inside a hex run of 32+ characters that has a letter (a digest or token), or a UUID;
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
// Hex runs long enough to be digests (SHA-256, HMACs, our 128-bit tokens) are not numbers.
const DIGEST = /[0-9A-Fa-f]{32,}/g;
// UUIDs (8-4-4-4-12 hex): their dashed digit groups can add up to a Luhn-valid 13 digits.
const UUID = /[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}/g;

interface Hit {
  kind: PiiKind;
  start: number;
  end: number;
  digitsOrText: string;
}

/** Spans the scanner must not read as numbers: tokens, and hex digests that contain a letter. */
function opaqueSpans(text: string): [number, number][] {
  const spans: [number, number][] = [];
  for (const m of text.matchAll(TOKEN_IN_TEXT)) spans.push([m.index, m.index + m[0].length]);
  for (const m of text.matchAll(DIGEST)) if (/[A-Fa-f]/.test(m[0])) spans.push([m.index, m.index + m[0].length]);
  for (const m of text.matchAll(UUID)) spans.push([m.index, m.index + m[0].length]);
  return spans;
}

// Every run of digits with single separators (space, dash, dot) between them; each window of
// consecutive groups of 12–19 digits (ISO 7812) that passes Luhn and starts like a card brand (2–9) is a PAN,
// whatever surrounds it — letters, underscores, quotes, a currency field.
function cardNumbers(text: string): Hit[] {
  const hits: Hit[] = [];
  for (const run of text.matchAll(/[0-9]+(?:[ .-][0-9]+)*/g)) {
    const groups = [...run[0].matchAll(/[0-9]+/g)].map((g) => ({
      start: run.index + g.index,
      end: run.index + g.index + g[0].length,
      digits: g[0],
    }));
    for (let a = 0; a < groups.length; a++) {
      let digits = '';
      for (let b = a; b < groups.length; b++) {
        digits += groups[b]!.digits;
        // Printed card numbers group by 4–6 digits: a window of longer groups is some other number.
        if (digits.length > 19 || (b > a && groups.slice(a, b + 1).some((g) => g.digits.length > 6))) break;
        if (digits.length >= 12 && /^[2-9]/.test(digits) && luhnValid(digits)) {
          hits.push({ kind: 'pan', start: groups[a]!.start, end: groups[b]!.end, digitsOrText: digits });
        }
      }
    }
  }
  return hits;
}

function emails(text: string): Hit[] {
  const hits: Hit[] = [];
  for (const m of text.matchAll(
    /[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])/g,
  )) {
    let start = m.index;
    // A JSON escape's letter (\n, \t…) right before the local part is not part of it.
    if (text[start - 1] === '\\' && 'nrtbfu'.includes(m[0][0]!)) start += 1;
    if (text[start] === '@') continue;
    hits.push({
      kind: 'email',
      start,
      end: m.index + m[0].length,
      digitsOrText: text.slice(start, m.index + m[0].length),
    });
  }
  return hits;
}

function ibans(text: string): Hit[] {
  const hits: Hit[] = [];
  // Every start position (a lookahead does not consume), so one candidate cannot swallow the next.
  // Lower case is read too, but only as a word of its own: "evt_2ba70d195d…" is a hex id, not an IBAN.
  for (const m of text.matchAll(/(?<![A-Za-z0-9])(?=([A-Za-z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){10,30}))/g)) {
    if (hits.some((h) => m.index < h.end)) continue;
    const run = m[1]!;
    // Lower-case hex ("stl_ee141c6cbd77…", a Mongo-style id) cannot tell an IBAN from an id: skip it.
    if (/^[0-9a-f -]+$/.test(run.slice(0, 34)) && /^[a-f]{2}/.test(run)) continue;
    // Any prefix of the run may be the IBAN (a word can follow it without a break).
    const chars: { ch: string; at: number }[] = [];
    for (let i = 0; i < run.length; i++)
      if (/[A-Za-z0-9]/.test(run[i]!)) chars.push({ ch: run[i]!.toUpperCase(), at: i });
    for (let n = Math.min(chars.length, 34); n >= 15; n--) {
      const compact = chars
        .slice(0, n)
        .map((c) => c.ch)
        .join('');
      if (ibanValid(compact)) {
        hits.push({ kind: 'iban', start: m.index, end: m.index + chars[n - 1]!.at + 1, digitsOrText: compact });
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
function phones(text: string): Hit[] {
  const hits: Hit[] = [];
  const sep = String.raw`(?:[ ./-]|\) ?| ?\()`;
  const shapes: { re: RegExp; ok: (digits: string) => boolean }[] = [
    {
      re: new RegExp(String.raw`(?<![0-9])(?:1${sep})?\(?[2-9][0-9]{2}${sep}[2-9][0-9]{2}${sep}[0-9]{4}(?![0-9])`, 'g'),
      ok: () => true,
    },
    {
      // Groups of 2–8 digits, as national plans print them; never the seconds of a time ("08:58:03.924188").
      re: new RegExp(String.raw`(?<![0-9]|[0-9]:)\(?0[1-9][0-9]{0,7}(?:${sep}[0-9]{2,8})+(?![0-9])`, 'g'),
      ok: (d) => d.length >= 10 && d.length <= 12,
    },
    { re: /(?<![0-9])(?:0|91[ -]?)?[6-9][0-9]{4}[ -][0-9]{5}(?![0-9])/g, ok: () => true },
    { re: /(?<![0-9])[6-9][0-9]{2}(?: [0-9]{3} [0-9]{3}| [0-9]{2} [0-9]{2} [0-9]{2})(?![0-9])/g, ok: () => true },
  ];
  // International: the longest prefix of the digit groups after "+" that E.164 allows.
  for (const m of text.matchAll(new RegExp(String.raw`\+[1-9][0-9]*(?:${sep}?[0-9]+)*`, 'g'))) {
    let digits = '';
    let best: { end: number; digits: string } | undefined;
    for (const g of m[0].slice(1).matchAll(/[0-9]+/g)) {
      digits += g[0];
      if (digits.length > 15) break;
      if (digits.length >= 8) best = { end: m.index + 1 + g.index + g[0].length, digits };
    }
    if (best) hits.push({ kind: 'phone', start: m.index, end: best.end, digitsOrText: `+${best.digits}` });
  }
  for (const { re, ok } of shapes) {
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
  // Opaque spans become U+0000, which no detector reads as a digit, letter or separator.
  const seen = opaqueSpans(text).reduce((t, [s, e]) => t.slice(0, s) + '\u0000'.repeat(e - s) + t.slice(e), text);
  const inside = (h: Hit, s: number, e: number): boolean => h.start >= s && h.end <= e;
  const hits = [...cardNumbers(seen), ...ibans(seen), ...emails(seen), ...phones(seen)].sort(
    (x, y) => y.end - y.start - (x.end - x.start),
  );
  const kept: Hit[] = [];
  for (const h of hits) if (!kept.some((k) => inside(h, k.start, k.end))) kept.push(h);
  return kept
    .sort((x, y) => x.start - y.start)
    .map((h) => ({ kind: h.kind, offset: h.start, length: h.end - h.start, sample: maskPii(h.kind, h.digitsOrText) }));
}

/** Scans the JSON text of `value` (offsets are into that text); undefined scans as nothing. */
export function scanValue(value: unknown): PiiFinding[] {
  const text = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) as
    string | undefined;
  return text === undefined ? [] : scanForPii(text);
}

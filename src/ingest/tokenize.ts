import { createHmac } from 'node:crypto';
import { type Config, secretSetting, versionedKeys } from '../config';
import { TOKEN_PATTERN, isToken, locatePii, panCandidateValid, type TokenKind } from './pii-detect';

export type { TokenKind } from './pii-detect';

/** One tokenized original: the only place the raw value survives past the edge. */
export interface VaultEntry {
  token: string;
  kind: TokenKind;
  keyVersion: number;
  /** The canonical form the token was computed from (PAN digits only, email lower-cased, …). */
  original: string;
}

export interface TokenizerOptions {
  /** HMAC keys by version (positive integers, as in TOKENIZATION_KEYS); at least 32 bytes each. */
  keys: Readonly<Record<number, Buffer>>;
  /** The version new tokens are made with; older versions stay listed for parsing and lookups. */
  activeVersion: number;
}

/** Per-call bounds on the work a payload can demand; the webhook edge sets them from what one request may cost. */
export interface TokenizeBudget {
  /** Most PII values (each an HMAC and a vault entry) one payload may hold. */
  maxPiiValues?: number;
  /** Deepest nesting of arrays and objects walked (default DEFAULT_MAX_DEPTH). */
  maxDepth?: number;
}

/** The walk is recursive: a bound far above any real event keeps a hostile one from overflowing the stack. */
export const DEFAULT_MAX_DEPTH = 256;

/** A payload that would cost more than its budget; nothing of it was tokenized. */
export class TokenizeBudgetError extends Error {
  constructor(
    readonly budget: 'pii-values' | 'depth',
    readonly limit: number,
    readonly path: string,
  ) {
    const where = displayPath(path);
    super(
      budget === 'depth'
        ? `${where} nests more than ${limit} arrays/objects deep`
        : `more than ${limit} PII values to tokenize (value ${limit + 1} at ${where})`,
    );
    this.name = 'TokenizeBudgetError';
  }
}

// A path for an error reason, which is logged and answered: keys that could hold PII (a digit or an
// "@") are masked, and a path thousands of levels long is cut in the middle.
function displayPath(path: string): string {
  const masked = path.replace(/\.[^.[]*[0-9@][^.[]*/g, '.<key>');
  return masked.length <= 120 ? masked : `${masked.slice(0, 60)}…${masked.slice(-60)}`;
}

export interface TokenizedPayload {
  payload: unknown;
  vault: VaultEntry[];
}

export interface Tokenizer {
  /** A copy of `payload` with every PAN/PII replaced by its token, plus the vault entries to store. */
  tokenize(payload: unknown, budget?: TokenizeBudget): TokenizedPayload;
  /** The key version a token was made with, or undefined if `token` is not a token. */
  tokenVersion(token: string): number | undefined;
}

const TOKEN_HEX_LENGTH = 32; // 128 bits: collisions are negligible at billions of distinct values

// Field names (lower-cased, without _ and -) whose whole value is PII even without a pattern.
const FIELD_KINDS: ReadonlyMap<string, TokenKind> = new Map<string, TokenKind>([
  ...[
    'name',
    'firstname',
    'lastname',
    'middlename',
    'fullname',
    'givenname',
    'familyname',
    'surname',
    'holdername',
    'cardholdername',
    'accountholdername',
    'shoppername',
    'customername',
  ].map((f): [string, TokenKind] => [f, 'name']),
  // City and country stay in clear: fraud views need them and alone they do not identify a person.
  ...[
    'street',
    'streetname',
    'streetaddress',
    'address',
    'addressline1',
    'addressline2',
    'addressline3',
    'line1',
    'line2',
    'housenumber',
    'housenumberorname',
    'postalcode',
    'postcode',
    'zip',
    'zipcode',
  ].map((f): [string, TokenKind] => [f, 'address']),
  ...['email', 'emailaddress', 'shopperemail'].map((f): [string, TokenKind] => [f, 'email']),
  ...['phone', 'phonenumber', 'mobile', 'mobilephone', 'telephone', 'telephonenumber', 'shopperphone'].map(
    (f): [string, TokenKind] => [f, 'phone'],
  ),
  ['iban', 'iban'],
  // A card-number field is tokenized even when it fails Luhn: a mistyped PAN is still a PAN.
  ...['cardnumber', 'pan', 'primaryaccountnumber'].map((f): [string, TokenKind] => [f, 'pan']),
]);

// Every detector in locatePii needs an ASCII digit (PAN, IBAN, phone) or an "@" (email).
const MAY_HOLD_PII = /[0-9@]/;

const fieldKind = (key: string): TokenKind | undefined => FIELD_KINDS.get(key.toLowerCase().replace(/[_-]/g, ''));

function normalize(kind: TokenKind, value: string): string {
  const text = value.normalize('NFC').trim();
  switch (kind) {
    case 'pan':
      return text.replace(/[^0-9]/g, '');
    case 'email':
      return text.toLowerCase();
    case 'phone':
      return (text.startsWith('+') ? '+' : '') + text.replace(/[^0-9]/g, '');
    case 'iban':
      return text.replace(/\s+/g, '').toUpperCase();
    case 'name':
    case 'address':
      return text.replace(/\s+/g, ' ');
  }
}

function defineOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function isPlainObject(value: object): value is Record<string, unknown> {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

export function createTokenizer(options: TokenizerOptions): Tokenizer {
  const keys = new Map<number, Buffer>();
  for (const [version, key] of Object.entries(options.keys)) {
    if (!/^[1-9][0-9]{0,8}$/.test(version)) {
      throw new RangeError(`tokenizer key version "${version}" is not a positive integer`);
    }
    if (!Buffer.isBuffer(key) || key.length < 32) {
      throw new RangeError(`tokenizer key version ${version} is shorter than 32 bytes`);
    }
    keys.set(Number(version), key);
  }
  const activeKey =
    keys.get(options.activeVersion) ??
    ((): never => {
      throw new RangeError(`tokenizer active version ${options.activeVersion} has no key`);
    })();
  const version = options.activeVersion;

  function tokenize(payload: unknown, budget: TokenizeBudget = {}): TokenizedPayload {
    const vault = new Map<string, VaultEntry>();
    const maxDepth = budget.maxDepth ?? DEFAULT_MAX_DEPTH;
    const maxPiiValues = budget.maxPiiValues ?? Infinity;
    let piiValues = 0;
    // Counted before any HMAC is computed, so an over-budget payload costs only the scan.
    const spend = (n: number, path: string): void => {
      piiValues += n;
      if (piiValues > maxPiiValues) throw new TokenizeBudgetError('pii-values', maxPiiValues, path);
    };

    const tokenFor = (kind: TokenKind, normalized: string): string => {
      const mac = createHmac('sha256', activeKey).update(`${kind}\0${normalized}`, 'utf8').digest('hex');
      const token = `tok_${kind}_${version}_${mac.slice(0, TOKEN_HEX_LENGTH)}`;
      if (!vault.has(token)) vault.set(token, { token, kind, keyVersion: version, original: normalized });
      return token;
    };

    // Replaces every pattern match inside a string; reports the PAN when it is the whole value.
    const replaceInString = (text: string, path: string): { text: string; wholePan?: string } => {
      if (!MAY_HOLD_PII.test(text)) return { text }; // most keys and free text: no scan at all
      // Past the budget the payload is refused: the locator may stop there.
      const spans = locatePii(text, maxPiiValues - piiValues);
      if (spans.length === 0) return { text };
      spend(spans.length, path);
      let out = '';
      let at = 0;
      for (const span of spans) {
        out += text.slice(at, span.start) + tokenFor(span.kind, span.normalized);
        at = span.end;
      }
      out += text.slice(at);
      const only = spans.length === 1 ? spans[0] : undefined;
      const whole = only?.kind === 'pan' && text.slice(0, only.start).trim() === '' && text.slice(at).trim() === '';
      return whole ? { text: out, wholePan: only.normalized } : { text: out };
    };

    // A value under a PII field name: tokenized whole, unless it is empty or already a token.
    const tokenizeField = (
      kind: TokenKind,
      raw: string,
      path: string,
    ): { value: string; wholePan?: string } | undefined => {
      if (raw.trim() === '' || isToken(raw.trim())) return undefined;
      const normalized = normalize(kind, raw);
      if (kind === 'pan') {
        if (!/^[0-9]{12,19}$/.test(normalized) || /[^0-9 -]/.test(raw.trim())) return undefined;
        spend(1, path);
        return { value: tokenFor('pan', normalized), wholePan: normalized };
      }
      if (normalized === '') return undefined;
      spend(1, path);
      return { value: tokenFor(kind, normalized) };
    };

    type Walked = { value: unknown; wholePan?: string };

    const walk = (value: unknown, key: string | undefined, path: string, depth: number): Walked => {
      if (value === null || value === undefined || typeof value === 'boolean') return { value };
      const kind = key === undefined ? undefined : fieldKind(key);
      if (typeof value === 'string') {
        const field = kind === undefined ? undefined : tokenizeField(kind, value, path);
        if (field !== undefined) return field;
        const replaced = replaceInString(value, path);
        return { value: replaced.text, wholePan: replaced.wholePan };
      }
      if (typeof value === 'number' || typeof value === 'bigint') {
        const digits = String(value);
        if (kind !== undefined && /^[0-9]+$/.test(digits)) {
          const field = tokenizeField(kind, digits, path);
          if (field !== undefined) return field;
        }
        // Card-length numbers are card numbers wherever they sit, beside a currency or under an amount
        // name too: no payment reaches 10^12 minor units, so a real amount never has 13 digits. Past
        // 2^53 JSON.parse has already rounded the last digits, so Luhn cannot tell: it counts as a PAN.
        const magnitude = digits.replace(/^-/, '').replace(/\.[0-9]+$/, '');
        const lossy = typeof value === 'number' && !Number.isSafeInteger(value);
        if (/^[2-9][0-9]{12,18}$/.test(magnitude) && (lossy || panCandidateValid(magnitude))) {
          spend(1, path);
          return { value: tokenFor('pan', magnitude), wholePan: magnitude };
        }
        return { value };
      }
      if (typeof value === 'object' && depth >= maxDepth) throw new TokenizeBudgetError('depth', maxDepth, path);
      if (Array.isArray(value)) {
        return { value: value.map((item, i) => walk(item, undefined, `${path}[${i}]`, depth + 1).value) };
      }
      if (typeof value === 'object' && isPlainObject(value)) {
        const out: Record<string, unknown> = {};
        const siblings: Record<string, string> = {};
        for (const [rawKey, child] of Object.entries(value)) {
          const outKey = replaceInString(rawKey, `${path} (a key)`).text;
          const walked = walk(child, rawKey, `${path}.${rawKey}`, depth + 1);
          // A "__proto__" key stays an own data property, as JSON.parse made it: assigned, it would set
          // the copy's prototype, and a fact read from the copy would see fields its JSON does not hold.
          if (outKey === '__proto__') defineOwn(out, outKey, walked.value);
          else out[outKey] = walked.value;
          if (walked.wholePan !== undefined) {
            // First six plus last four is the PCI display maximum; below 15 digits it leaves too few unknown.
            if (walked.wholePan.length >= 15) siblings[`${outKey}Bin`] = walked.wholePan.slice(0, 6);
            siblings[`${outKey}Last4`] = walked.wholePan.slice(-4);
          }
        }
        return { value: Object.assign(out, siblings) };
      }
      const what = typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value;
      throw new TypeError(`tokenize: ${path} is a ${what}, not a JSON value`);
    };

    return { payload: walk(payload, undefined, '$', 0).value, vault: [...vault.values()] };
  }

  return {
    tokenize,
    tokenVersion: (token) => {
      const m = TOKEN_PATTERN.exec(token);
      return m ? Number(m[2]) : undefined;
    },
  };
}

/** The edge's tokenizer from TOKENIZATION_KEYS (the highest version is active). */
export function tokenizerFromConfig(config: Config): Tokenizer {
  const { keys, active } = versionedKeys('TOKENIZATION_KEYS', secretSetting(config, 'TOKENIZATION_KEYS'));
  return createTokenizer({ keys: Object.fromEntries(keys), activeVersion: active });
}

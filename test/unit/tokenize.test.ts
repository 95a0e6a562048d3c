import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { locatePii, luhnValid } from '../../src/ingest/pii-detect';
import {
  DEFAULT_MAX_DEPTH,
  TokenizeBudgetError,
  createTokenizer,
  type TokenizedPayload,
  type VaultEntry,
} from '../../src/ingest/tokenize';

const KEY_1 = Buffer.alloc(32, 0x11);
const KEY_2 = Buffer.alloc(32, 0x22);
const tokenizer = createTokenizer({ keys: { 1: KEY_1 }, activeVersion: 1 });

const TOKEN = /^tok_(pan|email|phone|iban|name|address)_\d+_[0-9a-f]{32}$/;
const tokenOf = (kind: string, version = 1): RegExp => new RegExp(`^tok_${kind}_${version}_[0-9a-f]{32}$`);

// Test cards and IBANs that are published for testing.
const VISA = '4242424242424242';
const MASTERCARD = '5555555555554444';
const AMEX = '378282246310005';
const IBAN_DE = 'DE89370400440532013000';
const IBAN_GB = 'GB82WEST12345698765432';

function tokenizeObject(payload: unknown): { out: Record<string, unknown>; vault: VaultEntry[] } {
  const result: TokenizedPayload = tokenizer.tokenize(payload);
  return { out: result.payload as Record<string, unknown>, vault: result.vault };
}

function at(value: unknown, ...path: (string | number)[]): unknown {
  let current = value;
  for (const step of path) current = (current as Record<string | number, unknown>)[step];
  return current;
}

describe('tokenize: card numbers', () => {
  it('replaces PANs in nested objects and arrays with pan tokens', () => {
    const { out } = tokenizeObject({
      payment: { method: { card: { number: VISA } } },
      cards: [MASTERCARD, { pan: AMEX }, [[VISA]]],
    });
    assert.match(at(out, 'payment', 'method', 'card', 'number') as string, tokenOf('pan'));
    assert.match(at(out, 'cards', 0) as string, tokenOf('pan'));
    assert.match(at(out, 'cards', 1, 'pan') as string, tokenOf('pan'));
    assert.equal(at(out, 'cards', 2, 0, 0), at(out, 'payment', 'method', 'card', 'number'));
    assert.ok(!JSON.stringify(out).includes(VISA) && !JSON.stringify(out).includes(MASTERCARD));
  });

  it('replaces only the digits of a PAN inside a longer string', () => {
    const { out } = tokenizeObject({ note: `customer paid with ${VISA}, exp 12/26.`, memo: `pan:${AMEX}` });
    assert.match(out['note'] as string, /^customer paid with tok_pan_1_[0-9a-f]{32}, exp 12\/26\.$/);
    assert.match(out['memo'] as string, /^pan:tok_pan_1_[0-9a-f]{32}$/);
    assert.equal(out['noteBin'], undefined, 'no BIN sibling for a PAN inside free text');
  });

  it('finds PANs written with spaces or dashes, and tokenizes them like the bare digits', () => {
    const { out } = tokenizeObject({
      a: '4242 4242 4242 4242',
      b: '4242-4242-4242-4242',
      c: VISA,
      d: 'card 3782 822463 10005 on file',
      e: 'card 4242 4242 4242 4242 12 26',
    });
    assert.match(out['a'] as string, tokenOf('pan'));
    assert.equal(out['a'], out['b']);
    assert.equal(out['a'], out['c']);
    assert.match(out['d'] as string, /^card tok_pan_1_[0-9a-f]{32} on file$/);
    assert.equal(out['e'], `card ${out['a'] as string} 12 26`);
  });

  it('keeps numbers that fail Luhn, are too short or too long for a card', () => {
    const kept = {
      paymentId: '4242424242424241',
      orderNumber: 4242424242424241,
      longId: '42424242424242424242424',
      shortCode: '42424242424',
      sequence: 1234567812345670,
    };
    const { out, vault } = tokenizeObject(kept);
    assert.deepEqual(out, kept);
    assert.deepEqual(vault, []);
  });

  it('tokenizes a card number glued inside an identifier, the same way every time', () => {
    const { out, vault } = tokenizeObject({
      id: `evt_${VISA}_x`,
      reference: `INV${MASTERCARD}`,
      dashed: `pay-${AMEX}`,
    });
    assert.match(out['id'] as string, /^evt_tok_pan_1_[0-9a-f]{32}_x$/);
    assert.match(out['reference'] as string, /^INVtok_pan_1_[0-9a-f]{32}$/);
    assert.match(out['dashed'] as string, /^pay-tok_pan_1_[0-9a-f]{32}$/);
    assert.deepEqual(vault.map((v) => v.original).sort(), [AMEX, VISA, MASTERCARD].sort());
    // Identity stays deterministic: the same partner event id always becomes the same key.
    assert.equal(tokenizer.tokenize(`evt_${VISA}_x`).payload, out['id']);
    assert.equal(
      createTokenizer({ keys: { 1: KEY_1 }, activeVersion: 1 }).tokenize(`evt_${VISA}_x`).payload,
      out['id'],
    );
  });

  it('tokenizes card-length numbers beside a currency or under an amount name: no amount has 13 digits', () => {
    const { out } = tokenizeObject({
      amount: { value: 4242424242424242, currency: 'EUR' },
      amountMinor: 5555555555554444,
      feeMinor: -4242424242424242,
      note: { n: 4242424242424242.5, currency: 'USD' },
      bigint: 4242424242424242n,
    });
    for (const path of [['amount', 'value'], ['amountMinor'], ['feeMinor'], ['note', 'n'], ['bigint']]) {
      assert.match(at(out, ...path) as string, tokenOf('pan'), path.join('.'));
    }
  });

  it('tokenizes integers past 2^53 that may have been card numbers before JSON.parse rounded them', () => {
    const parsed = JSON.parse('{"pan19": 6250941006528599123, "epochNanos": 1717236000000000000}') as object;
    const { out } = tokenizeObject(parsed);
    assert.match(out['pan19'] as string, tokenOf('pan'));
    assert.equal(out['epochNanos'], 1717236000000000000, 'starts with 1: no card brand');
  });

  it('tokenizes a Luhn-valid 13–19 digit JSON number, outside money fields', () => {
    const { out } = tokenizeObject({ card: { number: 4242424242424242 }, small: 424242424242 });
    assert.match(at(out, 'card', 'number') as string, tokenOf('pan'));
    assert.equal(at(out, 'card', 'numberLast4'), '4242');
    assert.equal(out['small'], 424242424242, 'JSON numbers under 13 digits are never PANs');
  });

  it('adds <field>Bin and <field>Last4 siblings when the PAN is the whole value of an object field', () => {
    const { out } = tokenizeObject({ card: { number: ` ${MASTERCARD} `, brand: 'mc' }, amex: AMEX, list: [VISA] });
    assert.deepEqual(Object.keys(at(out, 'card') as object), ['number', 'brand', 'numberBin', 'numberLast4']);
    assert.equal(at(out, 'card', 'numberBin'), '555555');
    assert.equal(at(out, 'card', 'numberLast4'), '4444');
    assert.equal(out['amexBin'], '378282');
    assert.equal(out['amexLast4'], '0005');
    assert.deepEqual(Object.keys(out).sort(), ['amex', 'amexBin', 'amexLast4', 'card', 'list']);
  });

  it('tokenizes card-number fields even when the number fails Luhn (a mistyped PAN is still a PAN)', () => {
    const { out, vault } = tokenizeObject({ cardNumber: '4242 4242 4242 4241', pan: 'not-a-number' });
    assert.match(out['cardNumber'] as string, tokenOf('pan'));
    assert.equal(out['cardNumberLast4'], '4241');
    assert.equal(out['pan'], 'not-a-number');
    assert.deepEqual(
      vault.map((v) => v.original),
      ['4242424242424241'],
    );
  });

  it('keeps the BIN off PANs shorter than 15 digits, where 6 + 4 would leave too little unknown', () => {
    const maestro12 = '501800000009';
    const { out } = tokenizeObject({ card: { number: maestro12 } });
    assert.match(at(out, 'card', 'number') as string, tokenOf('pan'));
    assert.equal(at(out, 'card', 'numberBin'), undefined);
    assert.equal(at(out, 'card', 'numberLast4'), '0009');
  });
});

describe('tokenize: other PII', () => {
  it('tokenizes emails anywhere, case-insensitively', () => {
    const { out, vault } = tokenizeObject({
      email: 'Jane.Doe@Example.com',
      contact: { note: 'write to jane.doe@example.COM please' },
      shopperEmail: 'not-an-address',
    });
    assert.match(out['email'] as string, tokenOf('email'));
    assert.equal(at(out, 'contact', 'note'), `write to ${out['email'] as string} please`);
    assert.match(out['shopperEmail'] as string, tokenOf('email'), 'email fields are tokenized whatever they hold');
    assert.ok(vault.some((v) => v.kind === 'email' && v.original === 'jane.doe@example.com'));
  });

  it('tokenizes E.164 phone numbers and common spaced formats to the same token', () => {
    const { out } = tokenizeObject({
      a: '+4915112345678',
      b: 'call +49 151 12345678 today',
      c: '+1 (415) 555-2671',
      phoneNumber: '0151 1234 5678',
      notPhone: '+42',
    });
    assert.match(out['a'] as string, tokenOf('phone'));
    assert.equal(out['b'], `call ${out['a'] as string} today`);
    assert.match(out['c'] as string, tokenOf('phone'));
    assert.match(out['phoneNumber'] as string, tokenOf('phone'), 'phone fields need no + prefix');
    assert.equal(out['notPhone'], '+42');
  });

  it('tokenizes national-format phone numbers of the regions we serve (US, UK, EU, India)', () => {
    const written = [
      '(415) 555-2671',
      '415-555-2671',
      '1 415.555.2671',
      '020 7946 0958',
      '07700 900123',
      '01 23 45 67 89',
      '030 12345678',
      '06-12345678',
      '98765 43210',
      '612 345 678',
      '912 34 56 78',
    ];
    for (const phone of written) {
      const { out, vault } = tokenizeObject({ note: `call ${phone} today` });
      assert.match(out['note'] as string, /^call tok_phone_1_[0-9a-f]{32} today$/, phone);
      assert.deepEqual(
        vault.map((v) => v.original),
        [phone.replace(/[^0-9]/g, '')],
        phone,
      );
    }
    const { out } = tokenizeObject({ phoneNumber: '(415) 555-2671', note: 'reach me at (415) 555-2671' });
    assert.equal(out['note'], `reach me at ${out['phoneNumber'] as string}`, 'field and free text agree');
    const kept = { date: '2024-06-01 10:00:00', version: '0.12.1', amount: '415555', order: '07700900123' };
    assert.deepEqual(tokenizeObject(kept).out, kept);
  });

  it('tokenizes IBANs that pass mod-97, compact or grouped, and keeps ones that fail', () => {
    const { out } = tokenizeObject({
      de: IBAN_DE,
      grouped: 'DE89 3704 0044 0532 0130 00',
      gb: `pay to ${IBAN_GB}.`,
      wrongCheck: 'DE89370400440532013001',
      iban: 'de89 3704 0044 0532 0130 00',
    });
    assert.match(out['de'] as string, tokenOf('iban'));
    assert.equal(out['grouped'], out['de']);
    assert.equal(out['iban'], out['de'], 'an iban field is tokenized even in lower case');
    assert.match(out['gb'] as string, /^pay to tok_iban_1_[0-9a-f]{32}\.$/);
    assert.equal(out['wrongCheck'], 'DE89370400440532013001');
  });

  it('tokenizes values of name and address fields (any case, snake or camel) and keeps city and country', () => {
    const payload = {
      firstName: 'Jane',
      LastName: 'Doe',
      cardholder_name: 'JANE DOE',
      shopperName: { firstName: 'Jane', lastName: 'Doe' },
      fullName: '  Jane   Doe ',
      name: 'Jane Doe',
      billingAddress: {
        street: 'Friedrichstraße 12',
        addressLine2: 'c/o PayLink',
        postalCode: 10117,
        city: 'Berlin',
        country: 'DE',
      },
      address: 'Main St 1, Springfield',
      merchantName: 'Shop GmbH',
    };
    const { out, vault } = tokenizeObject(payload);
    for (const path of [
      ['firstName'],
      ['LastName'],
      ['cardholder_name'],
      ['shopperName', 'firstName'],
      ['shopperName', 'lastName'],
      ['fullName'],
      ['name'],
    ]) {
      assert.match(at(out, ...path) as string, tokenOf('name'), path.join('.'));
    }
    for (const path of [['billingAddress', 'street'], ['billingAddress', 'addressLine2'], ['address']]) {
      assert.match(at(out, ...path) as string, tokenOf('address'), path.join('.'));
    }
    assert.match(at(out, 'billingAddress', 'postalCode') as string, tokenOf('address'));
    assert.equal(at(out, 'billingAddress', 'city'), 'Berlin');
    assert.equal(at(out, 'billingAddress', 'country'), 'DE');
    assert.equal(out['merchantName'], 'Shop GmbH');
    assert.equal(out['fullName'], out['name'], 'whitespace is normalised before hashing');
    assert.equal(at(out, 'shopperName', 'firstName'), out['firstName']);
    assert.ok(vault.some((v) => v.kind === 'address' && v.original === '10117'));
  });
});

describe('tokenize: what it must not touch', () => {
  it('keeps money amounts, ids, timestamps and idempotency keys byte for byte', () => {
    const payload = {
      version: 1,
      idempotencyKey: 'gateway:gw-eu:tx-9f8e7d:captured:3',
      paymentId: 'pay_01J0Z6QK3M8N9P',
      captureId: 'cap_7c1e0b1a-3f4d-4c55-9a0e-2b6f1d8e9a01',
      merchantId: 'm-7',
      amountMinor: 999_999_999_999, // the largest 12-digit amount: never a card number here
      platformFeeMinor: 0,
      amount: { value: 125_000, currency: 'EUR' },
      feeMinor: 125,
      currency: 'EUR',
      occurredAt: '2024-06-01T10:00:00.000Z',
      occurredAtMs: 1_717_236_000_004, // Luhn-valid, but epoch milliseconds start with 1
      createdEpochMicros: 1_717_236_000_000_000,
      sourceSequence: 12,
      settlementDate: '20240601',
      region: 'eu-west',
      success: true,
      nothing: null,
    };
    assert.ok(luhnValid(String(payload.occurredAtMs)));
    const { out, vault } = tokenizeObject(payload);
    assert.deepEqual(out, payload);
    assert.deepEqual(vault, []);
  });

  it('does not mutate its input', () => {
    const payload = { card: { number: VISA }, email: 'a@example.com' };
    const before = structuredClone(payload);
    tokenizer.tokenize(payload);
    assert.deepEqual(payload, before);
  });

  it('leaves existing tokens alone, so tokenizing twice changes nothing', () => {
    const first = tokenizer.tokenize({
      card: { number: VISA },
      firstName: 'Jane',
      note: `${AMEX} / jane@example.com / +4915112345678 / ${IBAN_DE}`,
    });
    const second = tokenizer.tokenize(first.payload);
    assert.deepEqual(second.payload, first.payload);
    assert.deepEqual(second.vault, []);
  });

  it('rejects values that are not JSON, naming where they sit', () => {
    assert.throws(() => tokenizer.tokenize({ a: [1, { when: new Date(0) }] }), /\$\.a\[1\]\.when is a Date/);
    assert.throws(() => tokenizer.tokenize({ f: () => 1 }), TypeError);
  });
});

describe('tokenize: determinism, rotation and the vault', () => {
  it('gives the same token for the same input and key version, across calls and instances', () => {
    const again = createTokenizer({ keys: { 1: Buffer.from(KEY_1) }, activeVersion: 1 });
    const a = tokenizeObject({ n: VISA, e: 'x@example.com' }).out;
    const b = again.tokenize({ n: VISA, e: 'x@example.com' }).payload as Record<string, unknown>;
    assert.deepEqual(a, b);
    const c = tokenizeObject({ n: MASTERCARD }).out;
    assert.notEqual(c['n'], a['n']);
  });

  it('gives different tokens for the same text under different kinds', () => {
    const { out } = tokenizeObject({ name: 'Jane', street: 'Jane' });
    assert.notEqual(out['name'], out['street']);
  });

  it('tokens carry the active key version, and tokenVersion reads it back', () => {
    const rotated = createTokenizer({ keys: { 1: KEY_1, 2: KEY_2 }, activeVersion: 2 });
    const v1 = tokenizeObject({ n: VISA }).out['n'] as string;
    const v2 = (rotated.tokenize({ n: VISA }).payload as Record<string, string>)['n']!;
    assert.match(v2, tokenOf('pan', 2));
    assert.notEqual(v1.slice(-32), v2.slice(-32), 'a new key gives a new token');
    assert.equal(rotated.tokenVersion(v1), 1);
    assert.equal(rotated.tokenVersion(v2), 2);
    for (const notToken of ['tok_pan_x_00', VISA, `${v2} `, 'tok_ssn_1_' + '0'.repeat(32), '']) {
      assert.equal(rotated.tokenVersion(notToken), undefined, notToken);
    }
  });

  it('returns one complete vault entry per distinct token, holding the canonical original', () => {
    const { out, vault } = tokenizeObject({
      cards: [VISA, '4242 4242 4242 4242', MASTERCARD],
      email: 'Jane@Example.com',
      phone: '+49 151 12345678',
      iban: 'GB82 WEST 1234 5698 7654 32',
      holderName: 'Jane Doe',
      street: 'Main St 1',
    });
    const tokens = JSON.stringify(out).match(/tok_[a-z]+_\d+_[0-9a-f]{32}/g) ?? [];
    assert.deepEqual([...new Set(tokens)].sort(), vault.map((v) => v.token).sort());
    const byKind = Object.fromEntries(vault.map((v) => [v.kind + ':' + v.original, v]));
    for (const key of [
      `pan:${VISA}`,
      `pan:${MASTERCARD}`,
      'email:jane@example.com',
      'phone:+4915112345678',
      `iban:${IBAN_GB}`,
      'name:Jane Doe',
      'address:Main St 1',
    ]) {
      const entry = byKind[key];
      assert.ok(entry, `vault has ${key}`);
      assert.equal(entry.keyVersion, 1);
      assert.match(entry.token, TOKEN);
      assert.ok(entry.token.startsWith(`tok_${entry.kind}_1_`));
    }
    assert.equal(vault.length, 7);
  });

  it('refuses bad key configuration without echoing key material', () => {
    const short = Buffer.from('short-secret-key');
    assert.throws(
      () => createTokenizer({ keys: { 1: short }, activeVersion: 1 }),
      (err: Error) => err instanceof RangeError && /version 1 is shorter than 32 bytes/.test(err.message),
    );
    assert.throws(() => createTokenizer({ keys: { 1: KEY_1 }, activeVersion: 2 }), /active version 2 has no key/);
    assert.throws(() => createTokenizer({ keys: { 0: KEY_1 }, activeVersion: 0 }), /not a positive integer/);
  });
});

describe('tokenize: hostile payloads', () => {
  // 36K distinct emails in one ~360 KB string: the locator once copied the whole text per match (11–26 s
  // here, now ~30 ms). Correctness only, untimed: `npm run bench` (bench/pii-scanner.ts) reports the speed.
  it('locates 36,000 emails in one string, each exactly once and in place', () => {
    const emails = Array.from({ length: 36_000 }, (_, i) => `Shopper.${i.toString(36)}@Example.com`);
    const text = emails.join(' ');
    const spans = locatePii(text);
    assert.equal(spans.length, emails.length);
    let at = 0;
    for (const [i, span] of spans.entries()) {
      assert.equal(span.kind, 'email');
      assert.equal(span.start, at, `email ${i} starts where it sits`);
      assert.equal(span.end, at + emails[i]!.length);
      assert.equal(span.normalized, emails[i]!.toLowerCase());
      at = span.end + 1;
    }
  });

  it('stops once past a limit (a budget refuses the text), and finds the same spans within it', () => {
    const text = Array.from({ length: 50 }, (_, i) => `shopper.${i}@example.com`).join(' ');
    assert.equal(locatePii(text, 10).length, 11);
    assert.deepEqual(locatePii(text, 50), locatePii(text));
  });

  it('tokenizes every one of them, and none survives in clear', () => {
    const emails = Array.from({ length: 36_000 }, (_, i) => `shopper.${i.toString(36)}@example.com`);
    const { payload, vault } = tokenizer.tokenize({ note: emails.join(' ') });
    const note = (payload as { note: string }).note.split(' ');
    assert.equal(note.length, emails.length);
    for (const token of note) assert.match(token, tokenOf('email'));
    assert.equal(vault.length, emails.length);
    assert.deepEqual(new Set(vault.map((v) => v.original)), new Set(emails));
  });

  it('stops at its PII budget before computing a single token, naming where', () => {
    const emails = Array.from({ length: 36_000 }, (_, i) => `s${i}@example.com`).join(' ');
    assert.throws(
      () => tokenizer.tokenize({ customer: { email: 'a@example.com' }, note: emails }, { maxPiiValues: 1000 }),
      (err: Error) =>
        err instanceof TokenizeBudgetError &&
        err.budget === 'pii-values' &&
        /more than 1000 PII values to tokenize \(value 1001 at \$\.note\)/.test(err.message),
    );
    const within = tokenizer.tokenize({ a: 'x@example.com', b: VISA }, { maxPiiValues: 2 });
    assert.equal(within.vault.length, 2);
  });

  it('refuses a payload nested deeper than its bound with a budget error, not a stack overflow', () => {
    let deep: unknown = { email: 'deep@example.com' };
    for (let i = 0; i < 5000; i++) deep = i % 2 === 0 ? [deep] : { additionalData: deep };
    assert.throws(
      () => tokenizer.tokenize({ item: deep }),
      (err: Error) =>
        err instanceof TokenizeBudgetError && err.budget === 'depth' && err.message.includes(`${DEFAULT_MAX_DEPTH}`),
    );
    let ok: unknown = 'x@example.com';
    for (let i = 0; i < DEFAULT_MAX_DEPTH; i++) ok = [ok];
    assert.doesNotThrow(() => tokenizer.tokenize(ok));
  });

  it('masks keys that could hold PII in the path a budget error names', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 10; i++) deep = { 'jane@example.com': deep };
    assert.throws(
      () => tokenizer.tokenize(deep, { maxDepth: 5 }),
      (err: Error) => err instanceof TokenizeBudgetError && !err.message.includes('jane') && /<key>/.test(err.message),
    );
  });

  it('keeps "__proto__" and "constructor" keys as own data: the copy holds exactly the fields its JSON does', () => {
    const inner = { id: 'evt_1', type: 'payment.captured', amountMinor: 100 };
    const parsed = JSON.parse(
      JSON.stringify({ constructor: { prototype: { polluted: true } } }).replace(
        '{',
        `{"__proto__":${JSON.stringify(inner)},`,
      ),
    ) as Record<string, unknown>;
    assert.deepEqual(Object.keys(parsed), ['__proto__', 'constructor']);
    const out = tokenizer.tokenize(parsed).payload as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.equal(out['id'], undefined, 'no field inherited from the "__proto__" key');
    assert.equal(out['type'], undefined);
    assert.deepEqual(Object.keys(out), ['__proto__', 'constructor']);
    assert.equal(JSON.stringify(out), JSON.stringify(parsed), 'the raw copy is the JSON received');
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined, 'Object.prototype untouched');
  });
});

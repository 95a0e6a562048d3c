import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ibanValid, luhnValid } from '../../src/ingest/pii-detect';
import { type PiiFinding, scanForPii, scanValue } from '../../src/quality/pii-scanner';
import { createTokenizer } from '../../src/ingest/tokenize';
import { seededRandom, type Random } from '../../src/simulator/random';

const VISA = '4242424242424242';
const MASTERCARD = '5555555555554444';
const AMEX = '378282246310005';
const IBAN_DE = 'DE89370400440532013000';
const IBAN_GB = 'GB82WEST12345698765432';

const kinds = (findings: PiiFinding[]): string[] => findings.map((f) => f.kind);

function assertMasked(findings: PiiFinding[], text: string): void {
  for (const f of findings) {
    const raw = text.slice(f.offset, f.offset + f.length);
    const digitsOrChars = raw.replace(/[\s-]/g, '');
    assert.ok(!f.sample.includes(digitsOrChars), `sample ${f.sample} reveals ${raw}`);
    assert.ok(f.sample.includes('*'), `sample ${f.sample} is masked`);
  }
}

describe('scanForPii', () => {
  it('finds card numbers (pattern + Luhn), with offsets and only the last four in the sample', () => {
    const text = `a ${VISA} b 5555-5555-5555-4444 c 3782 822463 10005 d`;
    const findings = scanForPii(text);
    assert.deepEqual(findings, [
      { kind: 'pan', offset: 2, length: 16, sample: '************4242' },
      { kind: 'pan', offset: 21, length: 19, sample: '************4444' },
      { kind: 'pan', offset: 43, length: 17, sample: '***********0005' },
    ]);
    assertMasked(findings, text);
  });

  it('does not flag Luhn failures, epoch milliseconds, or digit runs longer than a card', () => {
    const text = 'id 4242424242424241 at 1717236000004 order 42424242424242424242424';
    assert.deepEqual(scanForPii(text), []);
  });

  it('flags a card number whatever its neighbours: glued in an id, a JSON number beside a currency', () => {
    for (const text of [
      'ref INV4242424242424242',
      '"id":"evt_4242424242424242_x"',
      '{"amount":4242424242424242,"currency":"EUR"}',
      'pay_5555-5555-5555-4444',
    ]) {
      assert.deepEqual(kinds(scanForPii(text)), ['pan'], text);
    }
  });

  it('finds national-format phone numbers of the regions we serve', () => {
    for (const text of [
      'call (415) 555-2671 now',
      'us 415-555-2671',
      'us 1 415.555.2671',
      'uk 020 7946 0958',
      'uk mobile 07700 900123',
      'fr 01 23 45 67 89',
      'de 030 12345678',
      'nl 06-12345678',
      'in 98765 43210',
      'in +91 98765 43210',
      'es 612 345 678',
      'es 912 34 56 78',
    ]) {
      assert.deepEqual(kinds(scanForPii(text)), ['phone'], text);
    }
    for (const text of ['on 2024-06-01 at 10:00:00', 'version 0.12.1', 'amount 415555', 'ts 1717236000']) {
      assert.deepEqual(scanForPii(text), [], text);
    }
  });

  it('finds a PAN followed by more digits, e.g. an expiry written with spaces', () => {
    assert.deepEqual(kinds(scanForPii(`4242 4242 4242 4242 12 26`)), ['pan']);
  });

  it('finds emails and masks local part and domain', () => {
    const text = 'contact: Jane.Doe+billing@Example.co.uk, not@localhost';
    const findings = scanForPii(text);
    assert.deepEqual(findings, [{ kind: 'email', offset: 9, length: 30, sample: 'j***@e***.uk' }]);
    assertMasked(findings, text);
  });

  it('finds IBANs that pass mod-97, compact or grouped, and ignores ones that fail', () => {
    const text = `to ${IBAN_DE} or GB82 WEST 1234 5698 7654 32; not DE89370400440532013001 or XX89370400440532013000`;
    const findings = scanForPii(text);
    assert.deepEqual(findings, [
      { kind: 'iban', offset: 3, length: 22, sample: 'DE****************3000' },
      { kind: 'iban', offset: 29, length: 27, sample: 'GB****************5432' },
    ]);
    assertMasked(findings, text);
  });

  it('finds E.164 phone numbers, spaced or compact, and not bare digit strings', () => {
    const text = 'call +4915112345678 or +1 (415) 555-2671, not 015112345678 or +12 or x+123';
    const findings = scanForPii(text);
    assert.deepEqual(kinds(findings), ['phone', 'phone']);
    assert.deepEqual(
      findings.map((f) => f.sample),
      ['+***********78', '+*********71'],
    );
    assertMasked(findings, text);
  });

  it('does not let a phone number swallow the first group of a card number that follows it', () => {
    const text = 'note +53 015 6831 6011 9339 4251 5897 12/26';
    const spans = scanForPii(text).map((f) => [f.kind, text.slice(f.offset, f.offset + f.length)]);
    // The scanner reports the longest prefix E.164 allows; overlapping findings both stay.
    assert.deepEqual(spans, [
      ['phone', '+53 015 6831 6011'],
      ['pan', '6011 9339 4251 5897'],
    ]);
    assert.deepEqual(kinds(scanForPii('+4242424242424242')), ['pan'], 'too long for E.164, so a card number');
  });

  it('never flags tokens, even when their hex looks like a card number', () => {
    const lookalike = `tok_pan_1_${VISA}${'0'.repeat(16)}`;
    const tokens = [
      lookalike,
      'tok_email_3_0123456789abcdef0123456789abcdef',
      'tok_iban_12_0123456789abcdef0123456789abcdef',
    ];
    assert.deepEqual(scanForPii(tokens.join(' ')), []);
    assert.deepEqual(scanForPii(`paid with ${lookalike}, exp 12/26`), []);
  });

  it('reads an IBAN in one case (its first letter aside), not a mod-97-valid window of a base64 signature', () => {
    // A demo's Adyen hmacSignature: "fi46XyFf8FbKNnWA8u" upper-cases to a mod-97-valid FI IBAN.
    assert.ok(ibanValid('FI46XYFF8FBKNNWA8U'), 'the window is mod-97 valid, so only the case rule tells');
    assert.deepEqual(scanForPii('{"hmacSignature":"gruFRUTPsqAKFNg9tS/fi46XyFf8FbKNnWA8uEuKxtE="}'), []);
    for (const written of [
      IBAN_DE,
      IBAN_DE.toLowerCase(),
      `D${IBAN_DE.slice(1).toLowerCase()}`,
      `d${IBAN_DE.slice(1)}`,
    ]) {
      assert.deepEqual(kinds(scanForPii(`iban ${written} ok`)), ['iban'], written);
    }
  });

  it('checks Luhn and mod-97 the way the published test values expect', () => {
    for (const pan of [VISA, MASTERCARD, AMEX]) assert.ok(luhnValid(pan), pan);
    assert.ok(!luhnValid('4242424242424241'));
    for (const iban of [IBAN_DE, IBAN_GB]) assert.ok(ibanValid(iban), iban);
    assert.ok(!ibanValid('DE89370400440532013001'));
    assert.ok(!ibanValid('DE8937040044053201300'), 'wrong length for DE');
  });
});

describe('scanValue', () => {
  it('scans the JSON text of a value, with offsets into that text', () => {
    const value = { card: { number: VISA }, contact: ['jane@example.com'], note: `line1\n${MASTERCARD}` };
    const text = JSON.stringify(value);
    const findings = scanValue(value);
    assert.deepEqual(kinds(findings), ['pan', 'email', 'pan']);
    assert.equal(text.slice(findings[0]!.offset, findings[0]!.offset + 16), VISA);
    assert.deepEqual(scanValue(undefined), []);
    assert.deepEqual(scanValue({ amountMinor: 1250, currency: 'EUR' }), []);
  });
});

// Generators for the property loop: valid PII of each kind, plus the non-PII that sits beside it.

function luhnComplete(prefix: string, length: number, rnd: Random): string {
  let body = prefix;
  while (body.length < length - 1) body += String(rnd.int(0, 9));
  for (let check = 0; check <= 9; check++) if (luhnValid(body + String(check))) return body + String(check);
  throw new Error('unreachable: one check digit always fits');
}

function randomPan(rnd: Random): string {
  const [prefix, length] = rnd.pick<[string, number]>([
    ['4', 16],
    ['4', 19],
    ['51', 16],
    ['55', 16],
    ['2221', 16],
    ['34', 15],
    ['37', 15],
    ['6011', 16],
    ['62', 19],
    ['3528', 16],
    ['36', 14],
  ]);
  return luhnComplete(prefix, length, rnd);
}

function randomIban(rnd: Random): string {
  const [country, bban] = rnd.pick<[string, () => string]>([
    ['DE', () => digits(rnd, 18)],
    ['GB', () => letters(rnd, 4) + digits(rnd, 14)],
    ['NL', () => letters(rnd, 4) + digits(rnd, 10)],
    ['FR', () => digits(rnd, 23)],
  ]);
  const b = bban();
  const numeric = [...`${b}${country}00`].map((ch) => (/[A-Z]/.test(ch) ? String(ch.charCodeAt(0) - 55) : ch)).join('');
  let remainder = 0;
  for (const d of numeric) remainder = (remainder * 10 + Number(d)) % 97;
  return `${country}${String(98 - remainder).padStart(2, '0')}${b}`;
}

const digits = (rnd: Random, n: number): string => Array.from({ length: n }, () => String(rnd.int(0, 9))).join('');
const letters = (rnd: Random, n: number): string =>
  Array.from({ length: n }, () => String.fromCharCode(65 + rnd.int(0, 25))).join('');
const word = (rnd: Random): string =>
  rnd.pick(['paid', 'card', 'refund', 'order', 'via', 'customer', 'note', 'ok', 'EUR', '12/26', '#42', 'ref:']);

function grouped(value: string, rnd: Random): string {
  const sep = rnd.pick(['', ' ', '-']);
  return sep === '' ? value : (value.match(/.{1,4}/g) ?? []).join(sep);
}

// What was planted: its canonical form and, for pattern-detectable kinds, how it was written.
interface Planted {
  payload: Record<string, unknown>;
  planted: { canonical: string; written?: string }[];
}

function randomPayload(rnd: Random): Planted {
  const planted: Planted['planted'] = [];
  const plant = (canonical: string, written: string): string => {
    planted.push({ canonical, written });
    return written;
  };
  const pii = (): string => {
    const kind = rnd.int(0, 3);
    if (kind === 0) {
      const pan = randomPan(rnd);
      return plant(pan, grouped(pan, rnd));
    }
    if (kind === 1) {
      const domain = rnd.pick(['example.com', 'mail.example.org', 'Example.DE']);
      const email = `${letters(rnd, rnd.int(3, 8)).toLowerCase()}.${digits(rnd, 2)}@${domain}`;
      return plant(email.toLowerCase(), email);
    }
    if (kind === 2) {
      const phone = `+${rnd.int(1, 9)}${digits(rnd, rnd.int(8, 12))}`;
      return plant(phone, rnd.chance(0.5) ? phone : `${phone.slice(0, 3)} ${phone.slice(3, 6)} ${phone.slice(6)}`);
    }
    const iban = randomIban(rnd);
    return plant(iban, rnd.chance(0.5) ? iban : (iban.match(/.{1,4}/g) ?? []).join(' '));
  };
  // Values are kept apart by punctuation: digit groups of two values split by a lone space are
  // ambiguous even to a reader ("+72 244 71154 6294 1148 …").
  const sentence = (): string =>
    Array.from({ length: rnd.int(1, 5) }, () => (rnd.chance(0.4) ? pii() : word(rnd))).join(
      rnd.pick([', ', '; ', ' / ']),
    );
  const holder = `${letters(rnd, 6)} ${letters(rnd, 8)}`;
  planted.push({ canonical: holder });
  const pan = randomPan(rnd);

  const payload: Record<string, unknown> = {
    version: 1,
    idempotencyKey: `gateway:gw-${rnd.int(1, 9)}:tx-${digits(rnd, 10)}:captured:${rnd.int(0, 5)}`,
    paymentId: `pay_${digits(rnd, 11)}`, // 11 digits: never card-length
    amountMinor: rnd.int(1, 10_000_000),
    currency: rnd.pick(['EUR', 'USD', 'GBP']),
    occurredAt: new Date(1_700_000_000_000 + rnd.int(0, 1e9)).toISOString(),
    card: { number: plant(pan, grouped(pan, rnd)), holderName: holder, expiry: '12/26' },
    notes: Array.from({ length: rnd.int(0, 4) }, sentence),
    shopper: { email: pii(), contact: { text: sentence() }, billingAddress: { street: sentence(), city: 'Berlin' } },
    history: Array.from({ length: rnd.int(0, 3) }, () => ({ at: rnd.int(1, 1e9), what: sentence() })),
  };
  return { payload, planted };
}

function occurrences(text: string, needle: string): number[] {
  const found: number[] = [];
  for (let i = text.indexOf(needle); i !== -1; i = text.indexOf(needle, i + 1)) found.push(i);
  return found;
}

describe('scanner and tokenizer together (seeded property loop)', () => {
  const tokenizer = createTokenizer({ keys: { 7: Buffer.alloc(32, 0x5a) }, activeVersion: 7 });

  it('finds every planted PAN, email, phone and IBAN in raw payloads, and none once tokenized', () => {
    const rnd = seededRandom(20240601);
    for (let run = 0; run < 400; run++) {
      const { payload, planted } = randomPayload(rnd);
      const rawJson = JSON.stringify(payload);
      const before = scanValue(payload);
      for (const { written } of planted) {
        if (written === undefined) continue;
        const end = (at: number): number => at + written.length;
        for (const at of occurrences(rawJson, written)) {
          const covered = before.some((f) => f.offset <= at && end(at) <= f.offset + f.length);
          assert.ok(covered, `run ${run}: scanner missed ${written} at ${at} in ${rawJson}`);
        }
      }

      const { payload: out, vault } = tokenizer.tokenize(payload);
      const outJson = JSON.stringify(out).toLowerCase();
      assert.deepEqual(scanValue(out), [], `run ${run}: tokenized payload still has PII: ${outJson}`);
      for (const { canonical, written } of planted) {
        for (const value of [canonical, written ?? canonical]) {
          assert.ok(!outJson.includes(value.toLowerCase()), `run ${run}: ${value} survived in ${outJson}`);
        }
        // A spaced number may absorb a neighbouring digit group, and a PII field keeps its value's
        // spacing, so the vault original is compared without separators and may be longer.
        const compact = (text: string): string => text.toLowerCase().replace(/[\s\-()]/g, '');
        const inVault = vault.some((v) => compact(v.original).includes(compact(canonical)));
        assert.ok(inVault, `run ${run}: ${canonical} not in the vault`);
      }
      for (const key of ['idempotencyKey', 'paymentId', 'amountMinor', 'currency', 'occurredAt']) {
        assert.equal((out as Record<string, unknown>)[key], payload[key], `run ${run}: ${key} changed`);
      }
    }
  });
});

describe('pii scanner false positives found in real data', () => {
  it('does not read a UUID or a posting key with a UUID suffix as a card number', () => {
    assert.deepEqual(scanForPii('payment/demo-p000100/settled:set1#88085465-8270-46ac-a534-0f3b2c1d4e5f'), []);
    assert.deepEqual(scanForPii('45799016-3224-499f-8ac3-1234567890ab'), []);
    assert.equal(scanForPii('card 4242-4242-4242-4242 exp').length, 1, 'a dashed card number is still found');
  });

  it('does not read a JSON escape before @ (a protobuf type URL in a Temporal log line) as an email', () => {
    assert.deepEqual(scanForPii('details: b"\\x1aB\\n@type.googleapis.com/temporal.api.errordetails.v1"'), []);
    const text = '"note":"line one\\njane.doe@example.com"';
    const glued = scanForPii(text);
    assert.deepEqual(
      glued.map((f) => ({ kind: f.kind, found: text.slice(f.offset, f.offset + f.length) })),
      [{ kind: 'email', found: 'jane.doe@example.com' }],
      'an email after an escape is still found, without the escape letter',
    );
  });
});

describe('scanner and tokenizer on the forms that once slipped past the edge (seeded)', () => {
  const tokenizer = createTokenizer({ keys: { 3: Buffer.alloc(32, 0x3c) }, activeVersion: 3 });
  const nationalPhone = (rnd: Random): string =>
    rnd.pick([
      () => `(${rnd.int(2, 9)}${digits(rnd, 2)}) ${rnd.int(2, 9)}${digits(rnd, 2)}-${digits(rnd, 4)}`,
      () => `${rnd.int(2, 9)}${digits(rnd, 2)}-${rnd.int(2, 9)}${digits(rnd, 2)}-${digits(rnd, 4)}`,
      () => `020 ${digits(rnd, 4)} ${digits(rnd, 4)}`,
      () => `07${digits(rnd, 3)} ${digits(rnd, 6)}`,
      () => `0${rnd.int(1, 9)} ${digits(rnd, 2)} ${digits(rnd, 2)} ${digits(rnd, 2)} ${digits(rnd, 2)}`,
      () => `${rnd.int(6, 9)}${digits(rnd, 4)} ${digits(rnd, 5)}`,
    ])();

  it('with tokenization off the scanner finds each planted value; with it on, none survives', () => {
    const rnd = seededRandom(8);
    for (let run = 0; run < 300; run++) {
      const pan = randomPan(rnd);
      const phone = nationalPhone(rnd);
      const numericPan = randomPan(rnd).slice(0, 16).padEnd(16, '0');
      const numeric = luhnComplete(numericPan.slice(0, 15), 16, rnd);
      const payload = {
        id: `evt_${pan}_${rnd.pick(['x', 'retry', '2'])}`,
        amount: { value: Number(numeric), currency: rnd.pick(['EUR', 'USD']) },
        note: `call ${phone} before noon`,
        amountMinor: rnd.int(1, 1_000_000),
      };
      const raw = JSON.stringify(payload);
      const found = scanValue(payload).map((f) => raw.slice(f.offset, f.offset + f.length));
      for (const planted of [pan, numeric, phone]) {
        assert.ok(
          found.some((f) => f.includes(planted)),
          `run ${run}: scanner missed ${planted} in ${raw}`,
        );
      }
      const first = tokenizer.tokenize(payload);
      assert.deepEqual(scanValue(first.payload), [], `run ${run}: ${JSON.stringify(first.payload)}`);
      const again = tokenizer.tokenize(JSON.parse(raw));
      assert.equal((again.payload as { id: string }).id, (first.payload as { id: string }).id, 'same id, same key');
      assert.equal((first.payload as { amountMinor: number }).amountMinor, payload.amountMinor);
    }
  });
});

describe('pii scanner false positives found in service logs and ids', () => {
  it('does not read the seconds and fraction of a time, or a hex event id, as PII', () => {
    assert.deepEqual(scanForPii('VisibilityTimestamp: 2026-11-29 08:58:03.894907589 +0000 UTC'), []);
    assert.deepEqual(scanForPii('VisibilityTimestamp: 2026-11-29 08:58:03.92418833 +0000 UTC'), []);
    assert.deepEqual(scanForPii('{"eventId":"evt_2ba70d195d9773eed5e3c81b"}'), []);
    assert.deepEqual(scanForPii('partner:acme-pay:stl_ee141c6cbd7799d206edc550'), [], 'a hex id, not an EE IBAN');
    assert.deepEqual(scanForPii('member id schema-drift-test-812895f5-3922-4256-9255-bbaa1bad3aef'), [], 'a UUID');
    assert.deepEqual(scanForPii('query failed 001003 (42000): None'), [], 'a SQLSTATE after an error number');
    assert.deepEqual(kinds(scanForPii('tel:020 7946 0958')), ['phone'], 'a tel: URI is still a phone');
  });
});

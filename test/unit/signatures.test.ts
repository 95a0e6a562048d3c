import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  adyenSigningString,
  signAdyen,
  signStripe,
  verifyAdyenSignature,
  verifyStripeSignature,
  type AdyenNotificationItem,
  type SignatureCheck,
} from '../../src/ingest/signatures';
import { stripeSignatureSpellings } from '../../src/ops/edge-fuzz';

const NOW = 1_750_000_000;
const OLD_SECRET = 'whsec_old_4f1c2d';
const NEW_SECRET = 'whsec_new_9a8b7c';
const body = Buffer.from('{"id":"evt_1","type":"payment.captured","data":{"amountMinor":1250,"currency":"EUR"}}');

/** The part of an accepted check these tests compare: the digest and timestamp are checked on their own. */
const accepted = (check: SignatureCheck): unknown => (check.ok ? { ok: true, secretIndex: check.secretIndex } : check);

function assertFailure(check: SignatureCheck, reason: string, secrets: readonly string[], header?: string): string {
  assert.equal(check.ok, false, 'expected a failed check');
  if (check.ok) throw new Error('unreachable');
  assert.equal(check.reason, reason, check.detail);
  for (const secret of secrets) assert.ok(!check.detail.includes(secret), `detail leaks a secret: ${check.detail}`);
  for (const hex of header?.match(/[0-9a-f]{64}/g) ?? []) {
    assert.ok(!check.detail.includes(hex), `detail leaks a signature: ${check.detail}`);
  }
  return check.detail;
}

describe('verifyStripeSignature', () => {
  it('accepts a signature made with the secret over `${t}.${rawBody}`', () => {
    const header = signStripe(body, NEW_SECRET, NOW);
    const independent = createHmac('sha256', NEW_SECRET).update(`${NOW}.${body.toString()}`).digest('hex');
    assert.equal(header, `t=${NOW},v1=${independent}`);
    assert.deepEqual(accepted(verifyStripeSignature(body, header, { secrets: [NEW_SECRET], nowSeconds: NOW })), {
      ok: true,
      secretIndex: 0,
    });
  });

  it('accepts either of two secrets during rotation and says which one matched', () => {
    const secrets = [NEW_SECRET, OLD_SECRET];
    const byOld = signStripe(body, OLD_SECRET, NOW);
    const byNew = signStripe(body, NEW_SECRET, NOW);
    assert.deepEqual(accepted(verifyStripeSignature(body, byOld, { secrets, nowSeconds: NOW })), {
      ok: true,
      secretIndex: 1,
    });
    assert.deepEqual(accepted(verifyStripeSignature(body, byNew, { secrets, nowSeconds: NOW })), {
      ok: true,
      secretIndex: 0,
    });
    const retired = verifyStripeSignature(body, byOld, { secrets: [NEW_SECRET], nowSeconds: NOW });
    assertFailure(retired, 'mismatch', [NEW_SECRET, OLD_SECRET], byOld);
  });

  it('accepts a header carrying several v1 values when any one matches, and ignores v0', () => {
    const byOld = signStripe(body, OLD_SECRET, NOW).split(',')[1]!;
    const byNew = signStripe(body, NEW_SECRET, NOW).split(',')[1]!;
    const header = `t=${NOW},v1=${'0'.repeat(64)},${byNew},${byOld},v0=${'f'.repeat(64)}`;
    assert.deepEqual(accepted(verifyStripeSignature(body, header, { secrets: [OLD_SECRET], nowSeconds: NOW })), {
      ok: true,
      secretIndex: 0,
    });
    assert.deepEqual(
      accepted(verifyStripeSignature(body, ` t=${NOW} , ${byNew} `, { secrets: [NEW_SECRET], nowSeconds: NOW })),
      {
        ok: true,
        secretIndex: 0,
      },
    );
  });

  it('accepts a matching v1 next to malformed ones, in either order, as Stripe does', () => {
    const v1 = signStripe(body, NEW_SECRET, NOW).split(',')[1]!;
    for (const malformed of ['v1=abc123', 'v1=', `v1=${'z'.repeat(64)}`, `v1=${'a'.repeat(65)}`]) {
      for (const header of [`t=${NOW},${malformed},${v1}`, `t=${NOW},${v1},${malformed}`]) {
        assert.deepEqual(
          accepted(verifyStripeSignature(body, header, { secrets: [NEW_SECRET], nowSeconds: NOW })),
          { ok: true, secretIndex: 0 },
          header,
        );
      }
    }
  });

  it('reports a forgery next to a malformed v1 as a mismatch that counts the ignored one', () => {
    const forged = `t=${NOW},v1=${'0'.repeat(64)},v1=abc123`;
    const check = verifyStripeSignature(body, forged, { secrets: [NEW_SECRET], nowSeconds: NOW });
    assert.match(assertFailure(check, 'mismatch', [NEW_SECRET], forged), /none of 1 v1 .*\(1 malformed v1 ignored\)/);
  });

  it('still caps the v1 entries, malformed ones included', () => {
    const v1 = signStripe(body, NEW_SECRET, NOW).split(',')[1]!;
    const header = `t=${NOW},${v1},${Array.from({ length: 8 }, () => 'v1=abc').join(',')}`;
    const check = verifyStripeSignature(body, header, { secrets: [NEW_SECRET], nowSeconds: NOW });
    assert.match(assertFailure(check, 'malformed-signature', [NEW_SECRET], header), /9 v1 signatures \(max 8\)/);
  });

  it('rejects a timestamp older than the tolerance (300 s by default), accepting the boundary', () => {
    const at = (t: number): SignatureCheck =>
      verifyStripeSignature(body, signStripe(body, NEW_SECRET, t), { secrets: [NEW_SECRET], nowSeconds: NOW });
    assert.equal(at(NOW - 300).ok, true);
    const detail = assertFailure(at(NOW - 301), 'stale-timestamp', [NEW_SECRET]);
    assert.match(detail, /Stripe-Signature t=\d+ is 301 s old \(tolerance 300 s\)/);
    const custom = verifyStripeSignature(body, signStripe(body, NEW_SECRET, NOW - 61), {
      secrets: [NEW_SECRET],
      nowSeconds: NOW,
      toleranceSeconds: 60,
    });
    assertFailure(custom, 'stale-timestamp', [NEW_SECRET]);
  });

  it('rejects a timestamp further in the future than the bound (300 s by default)', () => {
    const at = (t: number, futureToleranceSeconds?: number): SignatureCheck =>
      verifyStripeSignature(body, signStripe(body, NEW_SECRET, t), {
        secrets: [NEW_SECRET],
        nowSeconds: NOW,
        futureToleranceSeconds,
      });
    assert.equal(at(NOW + 300).ok, true);
    const detail = assertFailure(at(NOW + 301), 'future-timestamp', [NEW_SECRET]);
    assert.match(detail, /301 s ahead/);
    assertFailure(at(NOW + 31, 30), 'future-timestamp', [NEW_SECRET]);
  });

  it('reports a forgery as a mismatch even when its timestamp is also out of range', () => {
    const header = signStripe(body, 'whsec_attacker', NOW - 10_000);
    assertFailure(verifyStripeSignature(body, header, { secrets: [NEW_SECRET], nowSeconds: NOW }), 'mismatch', [
      NEW_SECRET,
    ]);
  });

  it('rejects a tampered body, including a re-serialised one with the same JSON meaning', () => {
    const header = signStripe(body, NEW_SECRET, NOW);
    const tampered = Buffer.from(body.toString().replace('1250', '9250'));
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(body.toString()), null, 1));
    for (const changed of [tampered, reserialised, Buffer.concat([body, Buffer.from('\n')])]) {
      const detail = assertFailure(
        verifyStripeSignature(changed, header, { secrets: [NEW_SECRET, OLD_SECRET], nowSeconds: NOW }),
        'mismatch',
        [NEW_SECRET, OLD_SECRET],
        header,
      );
      assert.match(detail, /none of 1 v1 signature\(s\) matches any of 2 secret\(s\)/);
    }
  });

  it('verifies the raw bytes, not a decoded string (bytes that are not UTF-8 still verify)', () => {
    const raw = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const header = signStripe(raw, NEW_SECRET, NOW);
    assert.equal(verifyStripeSignature(raw, header, { secrets: [NEW_SECRET], nowSeconds: NOW }).ok, true);
    const decoded = Buffer.from(raw.toString('utf8'));
    assert.equal(verifyStripeSignature(decoded, header, { secrets: [NEW_SECRET], nowSeconds: NOW }).ok, false);
  });

  it('reports an absent or empty header as missing-signature', () => {
    for (const header of [undefined, '', '   ']) {
      const detail = assertFailure(
        verifyStripeSignature(body, header, { secrets: [NEW_SECRET], nowSeconds: NOW }),
        'missing-signature',
        [NEW_SECRET],
      );
      assert.match(detail, /Stripe-Signature/);
    }
  });

  it('reports malformed headers with what is wrong, never the signature itself', () => {
    const good = signStripe(body, NEW_SECRET, NOW);
    const v1 = good.split(',')[1]!;
    const cases: [string, RegExp][] = [
      ['garbage', /not key=value/],
      [v1, /no t= timestamp/],
      [`t=${NOW}`, /no v1 signature/],
      [`t=${NOW},v0=${'a'.repeat(64)}`, /no v1 signature/],
      [`t=soon,${v1}`, /not a unix timestamp/],
      [`t=-5,${v1}`, /not a unix timestamp/],
      [`t=${NOW},t=${NOW},${v1}`, /more than one t=/],
      [`t=${NOW},v1=abc123`, /v1 #1 is not 64 hex characters \(6 characters\)/],
      [`t=${NOW},v1=${'z'.repeat(64)}`, /not 64 hex/],
      [
        `t=${NOW},v1=abc,v1=`,
        /no well-formed v1 signature: v1 #1 is not 64 hex .*; v1 #2 is not 64 hex .*\(0 characters\)/,
      ],
      [`t=${NOW},${Array.from({ length: 9 }, () => v1).join(',')}`, /9 v1 signatures \(max 8\)/],
      [`t=${NOW},${v1},`, /item 3 is not key=value/],
      [`t=${NOW},${v1}`.padEnd(5000, ' '), /max 4096/],
    ];
    for (const [header, expected] of cases) {
      const check = verifyStripeSignature(body, header, { secrets: [NEW_SECRET], nowSeconds: NOW });
      assert.match(assertFailure(check, 'malformed-signature', [NEW_SECRET], good), expected, header);
    }
  });

  it('refuses to run without a secret', () => {
    assert.throws(() => verifyStripeSignature(body, signStripe(body, NEW_SECRET, NOW), { secrets: [] }), RangeError);
  });

  it('uses the clock when no time is given', () => {
    const now = Math.floor(Date.now() / 1000);
    assert.equal(verifyStripeSignature(body, signStripe(body, NEW_SECRET, now), { secrets: [NEW_SECRET] }).ok, true);
  });
});

// Fixture and expected signature from Adyen's own Node library tests (src/__tests__/hmacValidator.spec.ts).
const ADYEN_VECTOR_KEY = 'DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00';
const adyenVectorItem: AdyenNotificationItem = {
  pspReference: 'pspReference',
  originalReference: 'originalReference',
  merchantAccountCode: 'merchantAccount',
  merchantReference: 'reference',
  amount: { currency: 'EUR', value: 1000 },
  eventCode: 'CAPTURE',
  success: 'true',
  additionalData: { hmacSignature: 'xhpHvYq2u2Np0rstbZ6QjLGu7JWhvf7Iwaa6EviJSX0=' },
};

const OLD_KEY = '44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056';
const NEW_KEY = '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const authorisation: AdyenNotificationItem = {
  pspReference: '7914073381342284',
  merchantAccountCode: 'PayLinkEU',
  merchantReference: 'pay_000123',
  amount: { value: 1130, currency: 'EUR' },
  eventCode: 'AUTHORISATION',
  success: 'true',
};
const signed = (item: AdyenNotificationItem, key: string): AdyenNotificationItem => ({
  ...item,
  additionalData: { ...item.additionalData, hmacSignature: signAdyen(item, key) },
});

describe('verifyAdyenSignature', () => {
  it("matches Adyen's published test vector", () => {
    assert.equal(
      adyenSigningString(adyenVectorItem),
      'pspReference:originalReference:merchantAccount:reference:1000:EUR:CAPTURE:true',
    );
    assert.equal(signAdyen(adyenVectorItem, ADYEN_VECTOR_KEY), adyenVectorItem.additionalData!['hmacSignature']);
    assert.deepEqual(accepted(verifyAdyenSignature(adyenVectorItem, [ADYEN_VECTOR_KEY])), { ok: true, secretIndex: 0 });
  });

  it('signs absent fields as empty strings and accepts a boolean success like "true"', () => {
    assert.equal(
      adyenSigningString(authorisation),
      '7914073381342284::PayLinkEU:pay_000123:1130:EUR:AUTHORISATION:true',
    );
    const withBoolean = { ...authorisation, success: true };
    assert.equal(signAdyen(withBoolean, NEW_KEY), signAdyen(authorisation, NEW_KEY));
    assert.deepEqual(accepted(verifyAdyenSignature(signed(authorisation, NEW_KEY), [NEW_KEY])), {
      ok: true,
      secretIndex: 0,
    });
  });

  it('signs ":" and "\\" in fields verbatim, as Adyen does; an escaping signer does not verify', () => {
    const item: AdyenNotificationItem = {
      ...authorisation,
      merchantReference: 'order:2024-06-01T10:00:00Z',
      merchantAccountCode: 'Pay\\Link',
    };
    const signingString = '7914073381342284::Pay\\Link:order:2024-06-01T10:00:00Z:1130:EUR:AUTHORISATION:true';
    assert.equal(adyenSigningString(item), signingString);
    assert.deepEqual(accepted(verifyAdyenSignature(signed(item, NEW_KEY), [NEW_KEY])), { ok: true, secretIndex: 0 });

    const escaped = '7914073381342284::Pay\\\\Link:order\\:2024-06-01T10\\:00\\:00Z:1130:EUR:AUTHORISATION:true';
    const escapedSignature = createHmac('sha256', Buffer.from(NEW_KEY, 'hex')).update(escaped).digest('base64');
    const check = verifyAdyenSignature({ ...item, additionalData: { hmacSignature: escapedSignature } }, [NEW_KEY]);
    assertFailure(check, 'mismatch', [NEW_KEY]);
  });

  it('accepts the old and the new key during rotation and says which one matched', () => {
    assert.deepEqual(accepted(verifyAdyenSignature(signed(authorisation, OLD_KEY), [NEW_KEY, OLD_KEY])), {
      ok: true,
      secretIndex: 1,
    });
    assert.deepEqual(accepted(verifyAdyenSignature(signed(authorisation, NEW_KEY), [NEW_KEY, OLD_KEY])), {
      ok: true,
      secretIndex: 0,
    });
    assertFailure(verifyAdyenSignature(signed(authorisation, OLD_KEY), [NEW_KEY]), 'mismatch', [NEW_KEY, OLD_KEY]);
  });

  it('reports a changed signed field as a mismatch naming the item, not the signature', () => {
    const good = signed(authorisation, NEW_KEY);
    for (const changed of [
      { ...good, amount: { value: 99_999, currency: 'EUR' } },
      { ...good, success: 'false' },
      { ...good, originalReference: 'X' },
    ]) {
      const detail = assertFailure(verifyAdyenSignature(changed, [NEW_KEY]), 'mismatch', [NEW_KEY]);
      assert.match(detail, /pspReference=7914073381342284/);
      assert.ok(!detail.includes(String(good.additionalData!['hmacSignature'])));
    }
  });

  it('reports an absent signature as missing and a non-digest one as malformed', () => {
    assertFailure(verifyAdyenSignature(authorisation, [NEW_KEY]), 'missing-signature', [NEW_KEY]);
    assertFailure(
      verifyAdyenSignature({ ...authorisation, additionalData: { hmacSignature: '' } }, [NEW_KEY]),
      'missing-signature',
      [NEW_KEY],
    );
    for (const hmacSignature of ['notValidSign', 'xhpHvYq2u2Np0rstbZ6QjLGu7JWhvf7Iwaa6EviJSX0==', 42]) {
      const item = { ...authorisation, additionalData: { hmacSignature } };
      assertFailure(verifyAdyenSignature(item, [NEW_KEY]), 'malformed-signature', [NEW_KEY]);
    }
    // Well-formed without its padding, so it is compared, and it is not this item's signature.
    const unpadded = {
      ...authorisation,
      additionalData: { hmacSignature: 'xhpHvYq2u2Np0rstbZ6QjLGu7JWhvf7Iwaa6EviJSX0' },
    };
    assertFailure(verifyAdyenSignature(unpadded, [NEW_KEY]), 'mismatch', [NEW_KEY]);
  });

  it('accepts a genuine signature sent without its base64 padding, as the same signature', () => {
    const padded = signed(authorisation, NEW_KEY);
    const signature = padded.additionalData!['hmacSignature'] as string;
    assert.match(signature, /=$/);
    const unpadded = { ...authorisation, additionalData: { hmacSignature: signature.replace(/=$/, '') } };
    const withPadding = verifyAdyenSignature(padded, [NEW_KEY]);
    const withoutPadding = verifyAdyenSignature(unpadded, [NEW_KEY]);
    assert.deepEqual(accepted(withoutPadding), { ok: true, secretIndex: 0 });
    assert.deepEqual(withoutPadding, withPadding, 'the same digest: replay detection sees one signature');
  });

  it('names what Adyen signs: the digest is the HMAC over the eight signed fields, whatever else changes', () => {
    const check = verifyAdyenSignature(signed(authorisation, NEW_KEY), [NEW_KEY]);
    const expected = createHmac('sha256', Buffer.from(NEW_KEY, 'hex')).update(adyenSigningString(authorisation));
    assert.ok(check.ok);
    assert.equal(check.digest, expected.digest('hex'));
    assert.equal(check.timestamp, undefined, 'Adyen signs no time');
    const unsignedChanged = { ...signed(authorisation, NEW_KEY), eventDate: '2030-01-01T00:00:00Z', reason: 'x' };
    assert.deepEqual(verifyAdyenSignature(unsignedChanged, [NEW_KEY]), check);
  });

  it('refuses keys that are not hex, without echoing them', () => {
    const bad = 'not-a-hex-key-but-a-secret';
    assert.throws(
      () => verifyAdyenSignature(signed(authorisation, NEW_KEY), [NEW_KEY, bad]),
      (err: Error) => err instanceof RangeError && /key #2/.test(err.message) && !err.message.includes(bad),
    );
    assert.throws(() => verifyAdyenSignature(authorisation, []), RangeError);
    assert.throws(() => signAdyen(authorisation, 'abc'), RangeError);
  });
});

describe('verifyStripeSignature: what was signed, whatever the spelling', () => {
  it('returns the signed timestamp and the matching digest, the same for every spelling of one signature', () => {
    const header = signStripe(body, NEW_SECRET, NOW);
    const expected = createHmac('sha256', NEW_SECRET).update(`${NOW}.${body.toString()}`).digest('hex');
    const original = verifyStripeSignature(body, header, { secrets: [NEW_SECRET], nowSeconds: NOW });
    assert.deepEqual(original, { ok: true, secretIndex: 0, digest: expected, timestamp: NOW });
    // The spellings the edge fuzz and the hostile-input test send as replays of one signature.
    const respelled = stripeSignatureSpellings(header);
    for (const spelling of respelled) {
      assert.deepEqual(
        verifyStripeSignature(body, spelling, { secrets: [NEW_SECRET], nowSeconds: NOW }),
        original,
        spelling,
      );
    }
  });

  it('gives a digest made with the rotated-out secret when that one matched', () => {
    const check = verifyStripeSignature(body, signStripe(body, OLD_SECRET, NOW), {
      secrets: [NEW_SECRET, OLD_SECRET],
      nowSeconds: NOW,
    });
    const expected = createHmac('sha256', OLD_SECRET).update(`${NOW}.${body.toString()}`).digest('hex');
    assert.deepEqual(check, { ok: true, secretIndex: 1, digest: expected, timestamp: NOW });
  });
});

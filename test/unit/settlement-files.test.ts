import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CsvError, readCsv, writeCsv } from '../../src/contracts/csv';
import {
  KNOWN_CURRENCIES,
  MoneyFormatError,
  currencyExponent,
  fromMajorUnits,
  toMajorUnits,
} from '../../src/contracts/currency-units';
import {
  ADYEN_SETTLEMENT_COLUMNS,
  type AdyenSettlementRow,
  STRIPE_PAYOUT_COLUMNS,
  SettlementFileError,
  type SettlementItem,
  type StripePayoutRow,
  parseAdyenSettlementReport,
  parseSettlementItems,
  parseStripePayoutReport,
  writeAdyenSettlementReport,
  writeStripePayoutReport,
} from '../../src/contracts/settlement-files';
import { type Simulation, simulatePayments } from '../../src/simulator/payments';
import { seededRandom } from '../../src/simulator/random';
import { settlementFileKey } from '../../src/stores/settlement-files';
import {
  BREAK_TYPES,
  breakPlanFor,
  type BreakType,
  type SettlementTruth,
  providerOf,
  simulateSettlementFiles,
} from '../../src/simulator/settlement-files';

const SEEDS = [1, 2, 3, 42, 2026];

describe('settlement file columns', () => {
  it('Adyen: the 30 standard columns of the Settlement details report, in the documented order', () => {
    // docs.adyen.com, Settlement details report: positions 1–23 named, 24–30 Reserved4..Reserved10.
    assert.deepEqual(
      [...ADYEN_SETTLEMENT_COLUMNS],
      [
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
      ],
    );
  });

  it('Adyen: the documented sample line parses (fees sum to gross − net, "7.5" is 750 minor units)', () => {
    const sample =
      ADYEN_SETTLEMENT_COLUMNS.join(',') +
      '\n' +
      'TestCompany,TestMerchant,1813702551707653,3vpzf7,visa,2013-06-03 11:26:49,CET,Settled,1713702551795048,GBP,,5.00,1,GBP,,4.88,,0.04,0.01,0.07,visaclassic,,,,,,,,,\n' +
      'TestCompany,TestMerchant,1313642467023511,324959451,visa,2013-03-26 22:37:26,CET,Chargeback,2313642467170922,EUR,349.99,,1,EUR,357.49,,7.5,,,,visaclassic,,,,,,,,,\n';
    const items = parseSettlementItems('adyen', 'sample.csv', sample);
    assert.deepEqual(
      items.map((i) => [i.kind, i.currency, i.grossMinor, i.feeMinor, i.netMinor]),
      [
        ['settlement', 'GBP', 500, 12, 488],
        ['chargeback', 'EUR', -34999, 750, -35749],
      ],
    );
  });

  it('Stripe: the itemized payout reconciliation columns PayLink requests, every one a documented column', () => {
    assert.deepEqual(
      [...STRIPE_PAYOUT_COLUMNS],
      [
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
      ],
    );
  });

  it('written files start with exactly those header lines', () => {
    const truth = simulateSettlementFiles(sim(1), { seed: 1, breaks: 'none' });
    for (const f of truth.files) {
      const header = f.content.split('\r\n')[0];
      assert.equal(header, (f.provider === 'adyen' ? ADYEN_SETTLEMENT_COLUMNS : STRIPE_PAYOUT_COLUMNS).join(','));
    }
  });
});

describe('major ↔ minor units', () => {
  it('converts 0-, 2- and 3-decimal currencies exactly', () => {
    const cases: [number, string, string][] = [
      [0, 'EUR', '0.00'],
      [5, 'EUR', '0.05'],
      [-5, 'EUR', '-0.05'],
      [1234, 'EUR', '12.34'],
      [1234, 'JPY', '1234'],
      [1234, 'BHD', '1.234'],
      [1, 'KWD', '0.001'],
      [Number.MAX_SAFE_INTEGER, 'USD', '90071992547409.91'],
      [-Number.MAX_SAFE_INTEGER, 'JPY', '-9007199254740991'],
      [Number.MAX_SAFE_INTEGER, 'TND', '9007199254740.991'],
    ];
    for (const [minor, currency, text] of cases) {
      assert.equal(toMajorUnits(minor, currency), text, `${minor} ${currency}`);
      assert.equal(fromMajorUnits(text, currency), minor, `${text} ${currency}`);
    }
    assert.equal(fromMajorUnits('7.5', 'EUR'), 750);
    assert.equal(fromMajorUnits('12', 'EUR'), 1200);
    assert.equal(currencyExponent('jpy'), 0);
  });

  it('refuses what it cannot mean exactly, naming the text', () => {
    const bad: [string, string, RegExp][] = [
      ['12.345', 'EUR', /"12.345" has 3 fraction digits; EUR has 2/],
      ['1.5', 'JPY', /JPY has 0/],
      ['1e3', 'EUR', /"1e3" is not a decimal/],
      [' 1.00', 'EUR', /not a decimal/],
      ['', 'EUR', /not a decimal/],
      ['1,00', 'EUR', /not a decimal/],
      ['90071992547409.92', 'USD', /beyond 2\^53/],
      ['1.00', 'XXX', /unknown currency "XXX"/],
    ];
    for (const [text, currency, reason] of bad) {
      assert.throws(
        () => fromMajorUnits(text, currency),
        (e: unknown) => e instanceof MoneyFormatError && reason.test(e.message),
      );
    }
    assert.throws(() => toMajorUnits(0.5, 'EUR'), MoneyFormatError);
    assert.throws(() => toMajorUnits(2 ** 53, 'EUR'), MoneyFormatError);
  });

  it('round-trips every safe integer in every known currency, and matches bigint division (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: -1_000_000, max: 1_000_000 }),
          fc.maxSafeInteger(),
          fc.maxSafeNat().map((n) => (n === 0 ? 0 : -n)),
        ),
        fc.constantFrom(...KNOWN_CURRENCIES),
        (minor, currency) => {
          const text = toMajorUnits(minor, currency);
          assert.equal(fromMajorUnits(text, currency), minor);
          const e = currencyExponent(currency);
          const scale = 10n ** BigInt(e);
          const abs = BigInt(Math.abs(minor));
          const expected = `${minor < 0 ? '-' : ''}${abs / scale}${e > 0 ? `.${(abs % scale).toString().padStart(e, '0')}` : ''}`;
          assert.equal(text, expected);
        },
      ),
      { numRuns: 2000, seed: 15 },
    );
  });
});

function sim(seed: number, payments = 250): Simulation {
  return simulatePayments({ payments, seed, duplicateRate: 0.2, runId: `stl${seed}` });
}

function parseAll(truth: SettlementTruth): SettlementItem[] {
  return truth.files.flatMap((f) => parseSettlementItems(f.provider, f.name, Buffer.from(f.content, 'utf8')));
}

interface Found {
  type: BreakType;
  provider: string;
  paymentId: string;
  settlementId: string;
  reported: { file: string; date: string; currency: string; grossMinor: number; feeMinor: number } | null;
  amountMinor: number;
  currency: string;
}

/**
 * What the files say differs from the simulation, found independently of the generator: every settled fact
 * against the settlement lines parsed back from the CSV text.
 */
function differences(simulation: Simulation, items: SettlementItem[]): Found[] {
  const expected = new Map<string, { date: string; currency: string; grossMinor: number; feeMinor: number }>();
  const provider = new Map<string, string>();
  for (const e of simulation.events) {
    if (e.type !== 'settled') continue;
    const key = `${providerOf(e)}|${e.paymentId}|${e.settlementId}`;
    expected.set(key, {
      date: e.occurredAt.slice(0, 10),
      currency: e.currency,
      grossMinor: e.amountMinor,
      feeMinor: e.feeMinor,
    });
    provider.set(key, providerOf(e));
  }
  const lines = new Map<string, SettlementItem[]>();
  for (const i of items.filter((i) => i.kind === 'settlement')) {
    const key = `${i.provider}|${i.paymentId}|${i.reference}`;
    lines.set(key, [...(lines.get(key) ?? []), i]);
  }
  const found: Found[] = [];
  const at = (key: string) => {
    const [p, paymentId, settlementId] = key.split('|') as [string, string, string];
    return { provider: p, paymentId, settlementId };
  };
  const reported = (i: SettlementItem) => ({
    file: i.file,
    date: i.bookedDate,
    currency: i.currency,
    grossMinor: i.grossMinor,
    feeMinor: i.feeMinor,
  });
  const gross = (x: { grossMinor: number; currency: string }) => ({ amountMinor: x.grossMinor, currency: x.currency });
  for (const [key, exp] of expected) {
    const got = lines.get(key);
    if (!got) {
      found.push({ type: 'missing', ...at(key), reported: null, ...gross(exp) });
      continue;
    }
    if (got.length > 1) found.push({ type: 'duplicate', ...at(key), reported: reported(got[1]!), ...gross(got[1]!) });
    const line = got[0]!;
    const r = reported(line);
    if (line.bookedDate !== exp.date) found.push({ type: 'timing', ...at(key), reported: r, ...gross(exp) });
    if (line.currency !== exp.currency) {
      found.push({ type: 'currency_mismatch', ...at(key), reported: r, ...gross(exp) });
    } else if (line.grossMinor !== exp.grossMinor) {
      const amountMinor = Math.abs(line.grossMinor - exp.grossMinor);
      found.push({ type: 'amount_mismatch', ...at(key), reported: r, amountMinor, currency: exp.currency });
    } else if (line.feeMinor !== exp.feeMinor) {
      const amountMinor = Math.abs(line.feeMinor - exp.feeMinor);
      found.push({ type: 'fee_mismatch', ...at(key), reported: r, amountMinor, currency: exp.currency });
    }
  }
  for (const [key, got] of lines) {
    if (!expected.has(key)) {
      found.push({ type: 'unknown_payment', ...at(key), reported: reported(got[0]!), ...gross(got[0]!) });
    }
  }
  return found;
}

const byKey = (a: { type: string; provider: string; paymentId: string }, b: typeof a) =>
  `${a.type}|${a.provider}|${a.paymentId}`.localeCompare(`${b.type}|${b.provider}|${b.paymentId}`);

describe('simulated settlement files and their injected breaks', () => {
  it('the break plan for a run fits its settled payments: every type for a full run, fewer for a small one', () => {
    const full = simulatePayments({ payments: 200, seed: 42, duplicateRate: 0, runId: 'plan-full' });
    assert.deepEqual(Object.keys(breakPlanFor(full)), [...BREAK_TYPES]);
    for (const payments of [1, 3, 10]) {
      const small = simulatePayments({ payments, seed: 11, duplicateRate: 0, runId: `plan-${payments}` });
      const plan = breakPlanFor(small);
      const settledBy = (region: (r: string) => boolean): number =>
        new Set(small.events.filter((e) => e.type === 'settled' && region(e.region)).map((e) => e.paymentId)).size;
      const fits = Math.min(
        settledBy((r) => r === 'us-east'),
        settledBy((r) => r !== 'us-east'),
        BREAK_TYPES.length,
      );
      assert.equal(Object.keys(plan).length, fits, `${payments} payments`);
      const truth = simulateSettlementFiles(small, { seed: 11, breaks: plan });
      assert.equal(truth.breaks.length, 2 * fits, `${payments} payments: one break per planned type per provider`);
    }
  });

  for (const seed of SEEDS) {
    it(`seed ${seed}: the files differ from the simulation by exactly the breaks the truth lists`, () => {
      const simulation = sim(seed);
      const truth = simulateSettlementFiles(simulation, { seed, breaks: 'default' });
      assert.equal(truth.breaks.length, 2 * BREAK_TYPES.length, 'one of each type per provider');
      for (const provider of ['adyen', 'stripe']) {
        assert.deepEqual(
          truth.breaks.filter((b) => b.provider === provider).map((b) => b.type),
          [...BREAK_TYPES],
        );
      }
      const found = differences(simulation, parseAll(truth));
      assert.deepEqual(
        found.sort(byKey),
        truth.breaks
          .map((b) => ({
            type: b.type,
            provider: b.provider,
            paymentId: b.paymentId,
            settlementId: b.settlementId,
            reported: b.reported,
            amountMinor: b.amountMinor,
            currency: b.currency,
          }))
          .sort(byKey),
      );
      // What the truth says PayLink expected is what the simulation holds.
      for (const b of truth.breaks) {
        if (b.type === 'unknown_payment') {
          assert.equal(b.expected, null);
          assert.ok(
            !simulation.events.some((e) => e.paymentId === b.paymentId),
            `${b.paymentId} is unknown to PayLink`,
          );
          continue;
        }
        const fact = simulation.events.find(
          (e) => e.type === 'settled' && e.paymentId === b.paymentId && e.settlementId === b.settlementId,
        );
        assert.ok(fact && fact.type === 'settled');
        assert.deepEqual(b.expected, {
          date: fact.occurredAt.slice(0, 10),
          currency: fact.currency,
          grossMinor: fact.amountMinor,
          feeMinor: fact.feeMinor,
        });
      }
      const timing = truth.breaks.filter((b) => b.type === 'timing');
      for (const b of timing) assert.ok(b.reported!.date > b.expected!.date, 'booked in a later window');
    });
  }

  it('breaks: "none" produces files that agree with the simulation line for line (settlements, refunds, disputes)', () => {
    for (const seed of SEEDS) {
      const simulation = sim(seed);
      const truth = simulateSettlementFiles(simulation, { seed, breaks: 'none' });
      assert.deepEqual(truth.breaks, []);
      const items = parseAll(truth);
      assert.deepEqual(differences(simulation, items), []);
      // Per currency, the files carry exactly the simulation's settled gross, gateway fees and refunds.
      const sums = new Map<string, { settled: number; fees: number; refunded: number }>();
      for (const i of items) {
        const s = sums.get(i.currency) ?? { settled: 0, fees: 0, refunded: 0 };
        if (i.kind === 'settlement') {
          s.settled += i.grossMinor;
          s.fees += i.feeMinor;
        }
        if (i.kind === 'refund') s.refunded -= i.grossMinor;
        sums.set(i.currency, s);
      }
      for (const [currency, t] of Object.entries(simulation.truth.byCurrency)) {
        assert.deepEqual(
          sums.get(currency) ?? { settled: 0, fees: 0, refunded: 0 },
          { settled: t.settledGrossMinor, fees: t.gatewayFeesMinor, refunded: t.refundedMinor },
          `seed ${seed} ${currency}`,
        );
      }
    }
  });

  it('is reproducible from its seed; another seed breaks other payments; a plan sets the counts', () => {
    const simulation = sim(3);
    const a = simulateSettlementFiles(simulation, { seed: 3, breaks: 'default' });
    const b = simulateSettlementFiles(simulation, { seed: 3, breaks: 'default' });
    const c = simulateSettlementFiles(simulation, { seed: 4, breaks: 'default' });
    assert.deepEqual(a, b);
    assert.notDeepEqual(
      a.breaks.map((x) => x.paymentId),
      c.breaks.map((x) => x.paymentId),
    );
    const planned = simulateSettlementFiles(simulation, { seed: 3, breaks: { duplicate: 3, missing: 2 } });
    assert.deepEqual(
      planned.breaks.map((x) => `${x.provider}:${x.type}`),
      [
        'adyen:missing',
        'adyen:missing',
        'adyen:duplicate',
        'adyen:duplicate',
        'adyen:duplicate',
        'stripe:missing',
        'stripe:missing',
        'stripe:duplicate',
        'stripe:duplicate',
        'stripe:duplicate',
      ],
    );
    assert.equal(differences(simulation, parseAll(planned)).length, 10);
    assert.throws(
      () => simulateSettlementFiles(sim(5, 10), { seed: 5, breaks: { missing: 50 } }),
      /50 breaks need as many settled payments/,
    );
  });
});

describe('partner line references', () => {
  it('are unique per partner except for the injected duplicates, even with several unknown payments', () => {
    for (const seed of SEEDS) {
      const truth = simulateSettlementFiles(sim(seed), { seed, breaks: { unknown_payment: 4, duplicate: 2 } });
      const seen = new Map<string, number>();
      for (const i of parseAll(truth).filter((x) => x.kind !== 'payout')) {
        const key = `${i.provider}|${i.lineReference}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
      const repeated = [...seen].filter(([, n]) => n > 1).map(([k]) => k);
      const duplicates = truth.breaks
        .filter((b) => b.type === 'duplicate')
        .map((b) => `${b.provider}|${b.lineReference}`);
      assert.deepEqual(repeated.sort(), duplicates.sort(), `seed ${seed}`);
    }
  });
});

// Rows a partner could send: any text in text fields (quotes, commas, line breaks, non-ASCII), any amounts.
const text = (max: number) =>
  fc.string({
    unit: fc.constantFrom('a', 'Z', '0', ' ', ',', '"', '\n', '\r\n', 'é', '€', '日', ';', "'"),
    maxLength: max,
  });
const currency = fc.constantFrom('EUR', 'USD', 'JPY', 'BHD', 'GBP', 'KWD');
const minor = fc.integer({ min: 0, max: 2 ** 40 });
const dateTime = fc
  .date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2099-12-31T23:59:59Z'), noInvalidDate: true })
  .map((d) => d.toISOString().slice(0, 19).replace('T', ' '));

const adyenRow: fc.Arbitrary<AdyenSettlementRow> = fc
  .record({
    companyAccount: text(80),
    merchantAccount: text(80),
    pspReference: text(16),
    merchantReference: text(80),
    paymentMethod: text(30),
    creationDate: dateTime,
    timeZone: fc.constantFrom('UTC', 'CET', 'CEST', 'BST'),
    type: fc.constantFrom('Settled', 'Refunded', 'Chargeback', 'ChargebackReversed' as const),
    modificationReference: text(80),
    currency,
    gross: minor,
    fees: fc.tuple(fc.option(minor), fc.option(minor), fc.option(minor), fc.option(minor)),
    credit: fc.boolean(),
    paymentMethodVariant: text(50),
    modificationMerchantReference: text(80),
    batchNumber: fc.option(fc.integer({ min: 1, max: 1_000_000 })),
    reserved: fc.array(text(20), { minLength: 7, maxLength: 7 }),
  })
  .map(({ currency: c, gross, fees, credit, ...r }) => {
    const [commission, markup, scheme, interchange] = fees;
    const total = (commission ?? 0) + (markup ?? 0) + (scheme ?? 0) + (interchange ?? 0);
    const net = credit ? gross - total : gross + total;
    const netCredit = credit && net >= 0;
    return {
      ...r,
      grossCurrency: c,
      grossDebitMinor: credit ? null : gross,
      grossCreditMinor: credit ? gross : null,
      exchangeRate: '1',
      netCurrency: c,
      netDebitMinor: netCredit ? null : Math.abs(net),
      netCreditMinor: netCredit ? net : null,
      commissionMinor: commission,
      markupMinor: markup,
      schemeFeesMinor: scheme,
      interchangeMinor: interchange,
    };
  });

const stripeRow: fc.Arbitrary<StripePayoutRow> = fc
  .record({
    automaticPayoutId: fc.stringMatching(/^po_[A-Za-z0-9]{1,30}$/),
    automaticPayoutEffectiveAt: dateTime,
    balanceTransactionId: fc.stringMatching(/^txn_[A-Za-z0-9]{1,30}$/),
    createdUtc: dateTime,
    availableOnUtc: dateTime,
    currency,
    grossMinor: fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    feeMinor: fc.integer({ min: -(2 ** 20), max: 2 ** 20 }),
    reportingCategory: fc.constantFrom('charge', 'refund', 'dispute', 'dispute_reversal' as const),
    sourceId: text(40),
    description: text(200),
    chargeId: text(40),
    paymentIntentId: text(40),
    paylinkPaymentId: text(60),
    paylinkReference: text(20),
  })
  .map((r) => ({ ...r, netMinor: r.grossMinor - r.feeMinor }));

const withoutLine = <T extends { line: number }>(rows: T[]) => rows.map(({ line: _line, ...row }) => row);

describe('settlement file parsers', () => {
  it('round-trip: parse(write(rows)) = rows for any rows (fast-check), each row on its reported line', () => {
    fc.assert(
      fc.property(fc.array(adyenRow, { maxLength: 8 }), (rows) => {
        const parsed = parseAdyenSettlementReport('adyen.csv', writeAdyenSettlementReport(rows));
        assert.deepEqual(withoutLine(parsed), rows);
      }),
      { numRuns: 300, seed: 151 },
    );
    fc.assert(
      fc.property(fc.array(stripeRow, { maxLength: 8 }), (rows) => {
        const parsed = parseStripePayoutReport('stripe.csv', writeStripePayoutReport(rows));
        assert.deepEqual(withoutLine(parsed), rows);
      }),
      { numRuns: 300, seed: 152 },
    );
  });

  it('round-trip: the simulator files re-written from their parsed lines are the same bytes', () => {
    const truth = simulateSettlementFiles(sim(7), { seed: 7, breaks: 'default' });
    for (const f of truth.files) {
      const again =
        f.provider === 'adyen'
          ? writeAdyenSettlementReport(parseAdyenSettlementReport(f.name, f.content))
          : writeStripePayoutReport(parseStripePayoutReport(f.name, f.content));
      assert.equal(again, f.content, f.name);
    }
  });

  it('reads a BOM, LF or CR line ends, quoted commas, quotes and line breaks like the plain file', () => {
    const truth = simulateSettlementFiles(sim(8), { seed: 8, breaks: 'none' });
    const f = truth.files.find((x) => x.provider === 'stripe')!;
    const plain = parseStripePayoutReport(f.name, f.content);
    const lf = parseStripePayoutReport(f.name, `\ufeff${f.content.replace(/\r\n/g, '\n')}`);
    assert.deepEqual(lf, plain);
    const cr = parseStripePayoutReport(f.name, Buffer.from(`\ufeff${f.content.replace(/\r\n/g, '\r')}`, 'utf8'));
    assert.deepEqual(cr, plain);
    assert.deepEqual(readCsv('q.csv', '"a,b","say ""hi""","two\r\nlines",\r\nx,,"",y\r\n'), [
      { line: 1, fields: ['a,b', 'say "hi"', 'two\r\nlines', ''] },
      { line: 3, fields: ['x', '', '', 'y'] },
    ]);
  });

  const adyenFile = () =>
    simulateSettlementFiles(sim(9), { seed: 9, breaks: 'none' }).files.find((f) => f.provider === 'adyen')!;

  it('names file, line and column for each kind of bad input', () => {
    const f = adyenFile();
    const lines = f.content.split('\r\n');
    const withLine3 = (edit: (fields: string[]) => string[]) => {
      const fields = lines[2]!.split(',');
      return [lines[0], lines[1], edit(fields).join(','), ...lines.slice(3)].join('\r\n');
    };
    const col = (name: string) => ADYEN_SETTLEMENT_COLUMNS.indexOf(name as (typeof ADYEN_SETTLEMENT_COLUMNS)[number]);
    const set = (name: string, value: string) => (fields: string[]) =>
      fields.map((v, i) => (i === col(name) ? value : v));
    const cases: [string, string | Uint8Array, RegExp][] = [
      [
        'three fraction digits in EUR',
        withLine3(set('Gross Credit (GC)', '12.345')),
        /, line 3, column Gross Credit \(GC\): .*fraction digits/,
      ],
      ['lower-case currency', withLine3(set('Gross Currency', 'usd')), /, line 3, column Gross Currency: /],
      ['unknown type', withLine3(set('Type', 'Bonus')), /, line 3, column Type: /],
      [
        'unknown currency',
        withLine3(set('Net Currency', 'XYZ')),
        /, line 3, column Net Currency: unknown currency "XYZ"/,
      ],
      [
        'net not gross minus fees',
        withLine3(set('Net Credit (NC)', '1.00')),
        /, line 3, column Net Credit \(NC\): .*net ≠ gross − fees/,
      ],
      ['bad date', withLine3(set('Creation Date', '03/06/2013')), /, line 3, column Creation Date: /],
      ['a field too few', withLine3((x) => x.slice(1)), /, line 3: 29 fields, the header has 30/],
      ['a field too many', withLine3((x) => [...x, 'extra']), /, line 3: 31 fields, the header has 30/],
      [
        'a stray quote',
        withLine3(set('Merchant Reference', 'ab"c')),
        /, line 3, column 4: quote inside an unquoted field/,
      ],
      [
        'an unclosed quote',
        withLine3(set('Merchant Reference', '"abc')),
        /, line 3, column 4: quoted field never closed/,
      ],
      [
        'text after a closing quote',
        withLine3(set('Merchant Reference', '"ab"c')),
        /, line 3, column 4: text after a closing quote/,
      ],
      [
        'a missing column',
        lines.map((l, i) => (i === 0 ? l.replace('Batch Number', 'Batch') : l)).join('\r\n'),
        /, line 1: header lacks column\(s\) "Batch Number"/,
      ],
      [
        'a column twice',
        lines.map((l, i) => (i === 0 ? l.replace('Reserved4', 'Reserved5') : l)).join('\r\n'),
        /, line 1, column Reserved5: column appears twice/,
      ],
      ['an empty file', '', /, line 1: no header line/],
      [
        'a huge field',
        withLine3(set('Merchant Reference', 'x'.repeat(200_000))),
        /, line 3, column 4: field longer than 65536 characters/,
      ],
      [
        'Latin-1 bytes',
        Buffer.concat([Buffer.from(lines.slice(0, 3).join('\n') + '\n'), Buffer.from([0x4d, 0xfc, 0x6c, 0x0a])]),
        /, line 4: not valid UTF-8/,
      ],
    ];
    for (const [what, content, reason] of cases) {
      assert.throws(
        () => parseAdyenSettlementReport('batch_9.csv', content),
        (e: unknown) =>
          e instanceof SettlementFileError && e.message.startsWith('batch_9.csv') && reason.test(e.message),
        what,
      );
    }
  });

  it('seeded fuzz: mangled files either parse or fail with a SettlementFileError naming the file, never a crash', () => {
    const files = simulateSettlementFiles(sim(10, 60), { seed: 10, breaks: 'none' }).files;
    const rnd = seededRandom(1515);
    const pieces = ['"', '""', ',', '\r', '\n', '\r\n', '\ufeff', 'x'.repeat(70_000), '1.234', '-', 'é', '\u0000', ''];
    let failed = 0;
    let parsed = 0;
    for (let run = 0; run < 400; run++) {
      const f = files[run % files.length]!;
      let bytes = Buffer.from(f.content, 'utf8');
      for (let m = rnd.int(1, 4); m > 0; m--) {
        const at = rnd.int(0, bytes.length);
        const op = rnd.int(0, 3);
        if (op === 0) bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(rnd.pick(pieces)), bytes.subarray(at)]);
        if (op === 1)
          bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + rnd.int(1, 40)))]);
        if (op === 2)
          bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([rnd.int(0x80, 0xff)]), bytes.subarray(at)]);
        if (op === 3) bytes = bytes.subarray(0, at);
      }
      try {
        parseSettlementItems(f.provider, f.name, bytes);
        parsed++;
      } catch (e) {
        assert.ok(e instanceof CsvError, `run ${run}: ${String(e)}`);
        assert.ok(e.message.startsWith(`${f.name}`), e.message);
        failed++;
      }
    }
    assert.ok(failed > 100, `most mangled files are refused (${failed} refused, ${parsed} parsed)`);
  });

  it('writeCsv quotes exactly what needs quoting', () => {
    assert.equal(writeCsv([['a', 'b,c', 'd"e', ' f', 'g\nh', '']]), 'a,"b,c","d""e"," f","g\nh",\r\n');
  });
});

describe('settlement file keys', () => {
  it('are settlements/<provider>/date=<day>/<name>; a malformed day or name is refused, named', () => {
    assert.equal(
      settlementFileKey('adyen', '2026-01-01', 'settlement_detail_report_batch_20454.csv'),
      'settlements/adyen/date=2026-01-01/settlement_detail_report_batch_20454.csv',
    );
    assert.throws(() => settlementFileKey('stripe', '2026-1-1', 'x.csv'), /date "2026-1-1"/);
    assert.throws(() => settlementFileKey('stripe', '2026-01-01', '../x.csv'), /name "..\/x.csv"/);
  });
});

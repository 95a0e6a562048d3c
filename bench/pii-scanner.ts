import { locatePii } from '../src/ingest/pii-detect';
import { createTokenizer } from '../src/ingest/tokenize';
import { scanForPii } from '../src/quality/pii-scanner';
import { simulatePayments } from '../src/simulator/payments';
import { type Random, seededRandom } from '../src/simulator/random';

// Leak-scanner throughput: scanForPii over the kinds of text `npm run pii-scan` reads (tokenized
// events, payment facts, log lines, Kafka keys and header values, raw events full of PII), side by
// side with JSON.stringify of the same strings in the same rounds, then how its time grows with the
// size of a store and of one text. The scan reads every item of every store, so these bound its cost;
// a detector that retries a pattern from every character shows as growth far above the size ratio.
// The growth ratios are the figures (≈ 1 is linear; the run fails above 3, where the scanner before
// this bench measured 13 on the JWT-like blob); absolute MB/s move with the machine's load.

const ROUNDS = Number(process.env.BENCH_PII_ROUNDS ?? 5);
const ITEMS = Number(process.env.BENCH_PII_ITEMS ?? 4000);
const SUPERLINEAR = 3;

const tokenizer = createTokenizer({ keys: { 1: Buffer.alloc(32, 0x5a) }, activeVersion: 1 });
const digits = (rnd: Random, n: number): string => Array.from({ length: n }, () => rnd.int(0, 9)).join('');
const hex = (rnd: Random, n: number): string => Array.from({ length: n }, () => rnd.int(0, 15).toString(16)).join('');
const BASE64URL = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'];
const base64url = (rnd: Random, n: number): string => Array.from({ length: n }, () => rnd.pick(BASE64URL)).join('');
const uuid = (rnd: Random): string => [8, 4, 4, 4, 12].map((n) => hex(rnd, n)).join('-');

/** A partner webhook as bench/edge.ts sends it (~1.5 KB with its padded note; a card, an email, a phone). */
function rawEvent(rnd: Random, i: number): string {
  return JSON.stringify({
    id: `evt_bench_${1795946399 + i}_${i}`,
    type: 'payment.captured',
    created: 1795946399 + i,
    data: {
      object: {
        paymentId: `bench-1795946399-${i % 5000}`,
        merchantId: `m-${rnd.int(1, 40)}`,
        currency: rnd.pick(['EUR', 'USD', 'GBP']),
        captureId: `cap${i}`,
        amountMinor: rnd.int(100, 2_000_000),
        platformFeeMinor: rnd.int(1, 500),
        customer: {
          email: `shopper${i}@example.com`,
          phone: `+44 20 7946 ${digits(rnd, 4)}`,
          card: '4242 4242 4242 4242',
        },
        metadata: { orderRef: `order-${i}`, requestId: uuid(rnd), note: 'x'.repeat(900) },
      },
    },
  });
}

/** A JSON log line in the logger's shape, or a Temporal SDK line, as the processes write them. */
function logLine(rnd: Random, i: number): string {
  const ts = new Date(Date.UTC(2026, 10, 29, 9) + i * 137).toISOString();
  return rnd.chance(0.8)
    ? JSON.stringify({
        ts,
        level: rnd.pick(['info', 'info', 'warn']),
        component: rnd.pick(['payment-worker', 'payment-router', 'quality', 'cdc']),
        msg: rnd.pick(['posted', 'routed', 'committed batch', 'retrying']),
        paymentId: `demo42-mx1mj91k-p${digits(rnd, 6)}`,
        eventId: `evt_${hex(rnd, 24)}`,
        offset: rnd.int(0, 200_000),
        durationMs: rnd.int(1, 900),
      })
    : `${ts} [INFO] Activity completed { sdkComponent: 'worker', taskQueue: 'payments', workflowId: 'payment/demo42-p${digits(rnd, 6)}', attempt: 1, durationMs: ${rnd.int(1, 90)} }`;
}

/** Kafka keys, header names and header values: short, mostly without digits. */
function headerValue(rnd: Random, i: number): string {
  return rnd.pick([
    () => `demo42-mx1mj91k-p${digits(rnd, 6)}`,
    () => rnd.pick(['source', 'partner', 'idempotency-key', 'received-at', 'region', 'schema']),
    () => `partner:acme-pay:stl_${hex(rnd, 24)}`,
    () => new Date(Date.UTC(2026, 10, 29) + i * 1000).toISOString(),
    () => rnd.pick(['eu-west', 'us-east', 'ap-south', 'acme-pay', 'partner-settlement@1', 'payment-fact@2']),
  ])();
}

interface Corpus {
  name: string;
  texts: string[];
}

function corpora(): Corpus[] {
  const rnd = seededRandom(11);
  const raw = Array.from({ length: ITEMS }, (_, i) => rawEvent(rnd, i));
  const sim = simulatePayments({ payments: Math.ceil(ITEMS / 4), seed: 7, duplicateRate: 0, runId: 'bench' });
  return [
    {
      name: 'webhook events, tokenized (~1.5 KB)',
      texts: raw.map((t) => JSON.stringify(tokenizer.tokenize(JSON.parse(t)).payload)),
    },
    { name: 'payment facts (simulator)', texts: sim.events.slice(0, ITEMS).map((e) => JSON.stringify(e)) },
    { name: 'service log lines', texts: Array.from({ length: ITEMS }, (_, i) => logLine(rnd, i)) },
    { name: 'Kafka keys and header values', texts: Array.from({ length: ITEMS * 10 }, (_, i) => headerValue(rnd, i)) },
    { name: 'webhook events, raw (PAN, email, phone)', texts: raw },
  ];
}

/** Milliseconds for `fn` over every text; the result is kept so the work cannot be optimised away. */
function timed(texts: string[], fn: (text: string) => unknown): { ms: number; out: number } {
  let out = 0;
  const start = performance.now();
  for (const t of texts) {
    const r = fn(t);
    out += Array.isArray(r) ? r.length : typeof r === 'string' ? r.length : 0;
  }
  return { ms: performance.now() - start, out };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Throughput {
  corpus: string;
  items: number;
  mb: number;
  scannerMBs: number;
  usPerItem: number;
  findingsPerItem: number;
  /** Scanner time over JSON.stringify time on the same strings, same rounds (median). */
  vsStringify: number;
}

function throughput(c: Corpus): Throughput {
  const chars = c.texts.reduce((n, t) => n + t.length, 0);
  timed(c.texts, scanForPii); // warm-up (JIT)
  const scanner: number[] = [];
  const ratio: number[] = [];
  let findings = 0;
  // Scanner and baseline alternate, round after round, so a neighbour's load burst hits both alike.
  for (let round = 0; round < ROUNDS; round++) {
    const s = timed(c.texts, scanForPii);
    const b = timed(c.texts, (t) => JSON.stringify(t));
    scanner.push(s.ms);
    ratio.push(s.ms / b.ms);
    findings = s.out;
  }
  const ms = median(scanner);
  return {
    corpus: c.name,
    items: c.texts.length,
    mb: chars / 1e6,
    scannerMBs: chars / 1e3 / ms,
    usPerItem: (ms * 1000) / c.texts.length,
    findingsPerItem: findings / c.texts.length,
    vsStringify: median(ratio),
  };
}

interface Growth {
  shape: string;
  small: string;
  large: string;
  /** Time for the large input over time for as many small ones as make the same size (1 = linear). */
  perUnit: number;
  largeMs: number;
}

/** `factor` small inputs against one input `factor` times larger, alternating, median of the ratios. */
function growth(
  shape: string,
  small: string[],
  large: string[],
  factor: number,
  label: [string, string],
  scan: (text: string) => unknown = scanForPii,
): Growth {
  // Each sample repeats its input until it takes ~20 ms, so a small text is not lost in timer noise.
  const reps = Math.max(1, Math.ceil(20 / Math.max(timed(large, scan).ms, 0.01)));
  const smalls = Array.from({ length: factor * reps }, () => small).flat();
  const larges = Array.from({ length: reps }, () => large).flat();
  const ratios: number[] = [];
  const largeMs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const s = timed(smalls, scan).ms;
    const l = timed(larges, scan).ms;
    ratios.push(l / s);
    largeMs.push(l / reps);
  }
  return { shape, small: label[0], large: label[1], perUnit: median(ratios), largeMs: median(largeMs) };
}

/** One text of `bytes` characters made by repeating `unit` (a hostile shape or a real one). */
const filled = (unit: (i: number) => string, bytes: number): string => {
  let text = '';
  for (let i = 0; text.length < bytes; i++) text += unit(i);
  return text.slice(0, bytes);
};

function scaling(cs: Corpus[]): Growth[] {
  const events = cs[0]!.texts;
  const logs = cs[2]!.texts;
  const raw = cs[4]!.texts;
  const store = (n: number): string[] => Array.from({ length: n }, (_, i) => events[i % events.length]!);
  const rnd = seededRandom(5);
  const KB = 1024;
  const text = (unit: (i: number) => string, bytes: number, tail = ''): string[] => [
    filled(unit, bytes - tail.length) + tail,
  ];
  const shapes: [string, (i: number) => string, string?][] = [
    ['an S3 archive: tokenized events as NDJSON', (i) => `${events[i % events.length]!}\n`],
    ['a log file read as one text', (i) => `${logs[i % logs.length]!}\n`],
    // JWT-like (base64url and dots, every character one an email's local part may hold), then an "@":
    // an address pattern retried from each character is quadratic here.
    ['a JWT-like blob, then "@"', () => `${base64url(rnd, 255)}.`, '@'],
    ['hex runs just short of a digest', () => `${hex(rnd, 31)}:`],
    ['digit pairs (a card window every few)', () => `${digits(rnd, 2)} `],
    ['raw events (PII in each)', (i) => `${raw[i % raw.length]!}\n`],
  ];
  const edgeShapes: [string, (i: number) => string][] = [
    ['emails, one every 7 characters', (i) => `${i.toString(36)}@x.io `],
    ['card numbers in groups', () => '4242 4242 4242 4242 '],
    ['E.164 phones', (i) => `+44 20 7946 ${String(i % 10_000).padStart(4, '0')} `],
    ['national phones', (i) => `(415) 555-${String(i % 10_000).padStart(4, '0')} `],
    ['digit pairs', () => `${digits(rnd, 2)} `],
    // Look-alikes that are mostly not PII, the fuzz's densest bodies (signed-dense-*): linear before too, but one
    // 256 KB body of single digits between dashes took ~300 ms (every start of a run retried up to 19 groups).
    ['single digits between dashes', () => '2-'],
    ['trunk-0 digit pairs', () => '01 23 '],
    ['"+" then one digit', () => '+1 '],
    ['IBAN look-alikes (mod 97 fails)', () => 'DE00 0000 0000 0000 0000 00 '],
    ['raw events (PII in each)', (i) => `${raw[i % raw.length]!}\n`],
  ];
  return [
    growth('a store: tokenized events, one text each', store(ITEMS / 4), store(ITEMS * 2.5), 10, [
      `${ITEMS / 4} items`,
      `${ITEMS * 2.5} items`,
    ]),
    ...shapes.map(([name, unit, tail]) =>
      growth(name, text(unit, 8 * KB, tail), text(unit, 128 * KB, tail), 16, ['8 KB text', '128 KB text']),
    ),
    // The edge's own locator (the tokenizer's detectors) on what one webhook body can hold: it once
    // copied the whole text per match, so a body dense with PII (36K emails) took seconds.
    ...edgeShapes.map(([name, unit]) =>
      growth(
        `locatePii: ${name}`,
        text(unit, 8 * KB),
        text(unit, 256 * KB),
        32,
        ['8 KB text', '256 KB text'],
        locatePii,
      ),
    ),
  ];
}

function main(): void {
  const cs = corpora();
  const rows = cs.map(throughput);
  const grows = scaling(cs);
  const superlinear = grows.filter((g) => g.perUnit > SUPERLINEAR);
  if (process.argv.includes('--json')) {
    process.stdout.write(
      `${JSON.stringify({ bench: 'pii-scanner', rounds: ROUNDS, throughput: rows, growth: grows })}\n`,
    );
  } else {
    process.stdout.write(
      `PII leak scanner (scanForPii) and the edge's locator (locatePii), one process, ${ROUNDS} rounds, median; scanner time beside JSON.stringify of the same strings\n`,
    );
    for (const r of rows) {
      process.stdout.write(
        `  ${r.corpus.padEnd(40)} ${String(r.items).padStart(6)} items ${r.mb.toFixed(1).padStart(5)} MB  ` +
          `${r.scannerMBs.toFixed(1).padStart(6)} MB/s  ${r.usPerItem.toFixed(1).padStart(6)} µs/item  ` +
          `${r.findingsPerItem.toFixed(1)} findings/item  ${r.vsStringify.toFixed(1).padStart(5)}× JSON.stringify\n`,
      );
    }
    process.stdout.write(
      `growth with size: time of the large input / time of as many small ones (1.0 = linear; fails above ${SUPERLINEAR})\n`,
    );
    for (const g of grows) {
      process.stdout.write(
        `  ${g.shape.padEnd(44)} ${g.small} → ${g.large}: ${g.perUnit.toFixed(2)}  (large: ${g.largeMs.toFixed(1)} ms)\n`,
      );
    }
  }
  if (superlinear.length > 0) {
    process.stderr.write(
      `bench: scan time grows faster than its input for ${superlinear.map((g) => g.shape).join(', ')}\n`,
    );
    process.exitCode = 1;
  }
}

main();

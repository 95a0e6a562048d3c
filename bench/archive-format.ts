import { gzipSync } from 'node:zlib';
import { archiveLine } from '../src/streams/archiver/layout';
import { seededRandom } from '../src/simulator/random';

// Bytes per event of the raw archive's format (docs/archive.md, cost): webhook-shaped JSON events with
// tokens, ids and free text, through archiveLine (base64 key and headers, the value as text) and gzip, next to the
// same values as plain JSON lines gzip'd. Storage, not PUTs, is the archive's larger cost.

const EVENTS = Number(process.env.BENCH_ARCHIVE_EVENTS ?? 20_000);
const random = seededRandom(42);
const hex = (n: number): string =>
  Array.from({ length: n }, () =>
    Math.floor(random.next() * 256)
      .toString(16)
      .padStart(2, '0'),
  ).join('');

const lines: string[] = [];
const plain: string[] = [];
let valueBytes = 0;
for (let i = 0; i < EVENTS; i++) {
  const at = new Date(1767225600000 + i * 9).toISOString();
  const event = {
    id: `evt_${hex(12)}`,
    type: ['payment.captured', 'payment.authorized', 'refund.created'][i % 3],
    created: at,
    payment: {
      id: `pay_${hex(12)}`,
      amount: { minor: 1000 + ((i * 37) % 90000), currency: ['EUR', 'USD', 'GBP'][i % 3] },
      merchant: `m_${i % 500}`,
      card: `tok_pan_1_${hex(16)}`,
      email: `tok_email_1_${hex(16)}`,
      region: ['eu-west', 'us-east', 'ap-south'][i % 3],
    },
    metadata: Object.fromEntries(
      Array.from({ length: 14 }, (_, k) => [
        `field_${k}`,
        `value ${hex(6)} ${k % 2 ? 'settled' : 'pending'} ${i * 7 + k}`,
      ]),
    ),
    partner: { id: 'acme-pay', scheme: 'stripe', attempt: 1 + (i % 3), signature: hex(32) },
  };
  const value = Buffer.from(JSON.stringify(event));
  valueBytes += value.length;
  plain.push(value.toString());
  lines.push(
    archiveLine({
      offset: String(1_000_000 + i),
      timestamp: String(Date.parse(at)),
      key: Buffer.from(event.payment.id),
      value,
      rawHeaders: [
        ['message-id', Buffer.from(`webhook:acme-pay:${event.id}`)],
        ['schema', Buffer.from('webhook.stripe@1')],
        ['source', Buffer.from('webhook')],
        ['received-at', Buffer.from(at)],
        ['trace-id', Buffer.from(hex(16))],
      ],
    }),
  );
}
const ndjson = Buffer.from(`${lines.join('\n')}\n`);
const perEvent = (bytes: number): number => Math.round(bytes / EVENTS);
process.stdout.write(
  `${JSON.stringify({
    events: EVENTS,
    valueBytesPerEvent: perEvent(valueBytes),
    ndjsonBytesPerEvent: perEvent(ndjson.length),
    gzipBytesPerEvent: perEvent(gzipSync(ndjson).length),
    plainJsonGzipBytesPerEvent: perEvent(gzipSync(Buffer.from(plain.join('\n'))).length),
  })}\n`,
);

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import {
  KafkaJSConnectionError,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSRequestTimeoutError,
} from 'kafkajs';
import { loadConfig } from '../../src/config';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { topicsFor } from '../../src/streams/kafka';
import {
  RECORD_BATCH_OVERHEAD,
  type SourceEvent,
  classifyProduceError,
  eventsOfSpooled,
  oversizeReason,
  recordBytes,
  spoolRecordOf,
} from '../../src/streams/publish';
import { emails, publishedCapture } from '../support/events';

// The publish step's pure parts: error classes from kafkajs itself, record sizes checked against kafkajs's own
// encoder, the spool's form of an event. The transaction rules run against a real broker:
// test/integration/publish.test.ts.

const require_ = createRequire(__filename);
/** kafkajs's own error for a Kafka error code, as its produce path throws it. */
const { createErrorFromCode } = require_('kafkajs/src/protocol/error') as {
  createErrorFromCode: (code: number) => KafkaJSProtocolError;
};
const encodeHeader = require_('kafkajs/src/protocol/recordBatch/header/v0') as (h: {
  key: unknown;
  value: unknown;
}) => unknown;
const encodeRecord = require_('kafkajs/src/protocol/recordBatch/record/v0') as (r: {
  key: Buffer | null;
  value: Buffer;
  headers: Record<string, string>;
  offsetDelta?: number;
  timestampDelta?: number;
}) => { buffer: Buffer };
const { RecordBatch } = require_('kafkajs/src/protocol/recordBatch/v0') as {
  RecordBatch: (b: { records: unknown[] }) => Promise<{ buffer: Buffer }>;
};
/** How kafkajs's retrier gives up on a non-retriable broker answer: the answer wrapped, as its cause. */
const gaveUpOn = (cause: Error): Error =>
  new (KafkaJSNonRetriableError as unknown as new (e: Error, o: { cause: Error }) => Error)(cause, { cause });

const config = loadConfig({});
const topics = topicsFor(config);
const tokenizer = tokenizerFromConfig(config);

/** A Stripe-style capture as the edge would publish it: tokenized, enveloped, its fact mapped. */
const webhookEvent = (paymentId: string, extra: Record<string, unknown> = {}): SourceEvent =>
  publishedCapture(topics, tokenizer, { eventId: paymentId, paymentId }, extra);

describe('classifyProduceError', () => {
  it('retriable: the broker or the network (connection, timeouts, leadership, retries exhausted on those)', () => {
    const connection = new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092', {
      broker: '127.0.0.1:9092',
      code: 'ECONNREFUSED',
    });
    for (const err of [
      connection,
      new KafkaJSRequestTimeoutError('Request Produce(key: 0, version: 7) timed out'),
      createErrorFromCode(6), // NOT_LEADER_FOR_PARTITION
      createErrorFromCode(7), // REQUEST_TIMED_OUT
      createErrorFromCode(19), // NOT_ENOUGH_REPLICAS
      new KafkaJSNumberOfRetriesExceeded(connection, { retryCount: 5, retryTime: 1000 }),
      new KafkaJSNumberOfRetriesExceeded(createErrorFromCode(6), { retryCount: 5, retryTime: 1000 }),
      new Error('something nobody classified'), // unknown: spooled, never dropped
    ]) {
      assert.equal(classifyProduceError(err), 'retriable', `${err.name}: ${err.message}`);
    }
  });

  it('poison: the broker or the client refuses the record itself', () => {
    let headerError: unknown;
    try {
      encodeHeader({ key: 5, value: 'x' }); // kafkajs's encoder on a header it cannot write
    } catch (err) {
      headerError = err;
    }
    assert.ok(headerError instanceof TypeError);
    for (const err of [
      createErrorFromCode(10), // MESSAGE_TOO_LARGE
      createErrorFromCode(18), // RECORD_LIST_TOO_LARGE
      createErrorFromCode(87), // INVALID_RECORD
      createErrorFromCode(2), // CORRUPT_MESSAGE
      // The retrier's wrapping of a non-retriable broker answer.
      gaveUpOn(createErrorFromCode(10)),
      new KafkaJSNonRetriableError('Invalid message without value for topic "t": {"key":"k"}'),
      headerError,
    ]) {
      assert.equal(classifyProduceError(err), 'poison', String(err));
    }
  });

  it("producer: this producer's id, epoch, sequence or transaction state is unusable", () => {
    for (const err of [
      createErrorFromCode(45), // OUT_OF_ORDER_SEQUENCE_NUMBER
      createErrorFromCode(47), // INVALID_PRODUCER_EPOCH
      createErrorFromCode(49), // INVALID_PRODUCER_ID_MAPPING
      createErrorFromCode(48), // INVALID_TXN_STATE
      createErrorFromCode(90), // PRODUCER_FENCED, a code kafkajs 2.2 has no name for
      new KafkaJSNumberOfRetriesExceeded(createErrorFromCode(45), { retryCount: 5, retryTime: 1000 }),
      new KafkaJSNonRetriableError(
        'There is already an ongoing transaction for this producer. Please end the transaction before beginning another.',
      ),
      new KafkaJSNonRetriableError('Transaction state exception: Cannot call "send" in state "ABORTING"'),
    ]) {
      assert.equal(classifyProduceError(err), 'producer', String(err));
    }
  });
});

describe('record sizes', () => {
  it('recordBytes + the batch overhead bounds what kafkajs encodes', async () => {
    for (const event of [webhookEvent('p-size'), webhookEvent('p-size-big', { pad: 'x'.repeat(300_000) })]) {
      for (const r of event.records) {
        const encoded = encodeRecord({
          key: r.key === null ? null : Buffer.from(r.key),
          value: r.value,
          headers: r.headers,
        });
        const batch = await RecordBatch({ records: [encoded] });
        assert.ok(recordBytes(r) >= encoded.buffer.length, `${recordBytes(r)} < ${encoded.buffer.length}`);
        assert.ok(recordBytes(r) + RECORD_BATCH_OVERHEAD >= batch.buffer.length);
        assert.ok(recordBytes(r) - encoded.buffer.length < 128, 'a bound within a few varints, not a guess');
      }
    }
  });

  it('checks the event as produced, after tokenization: small as received, over the limit once tokenized', () => {
    const limit = 32 * 1024;
    const extra = { contacts: emails(900) };
    const received = Buffer.byteLength(JSON.stringify(extra));
    const event = webhookEvent('p-grows', extra);
    assert.ok(received < limit / 2, `received ${received} bytes`);
    const reason = oversizeReason(event, limit);
    assert.ok(reason, 'over the limit after tokenization');
    assert.match(reason, /event webhook:acme-pay:evt_p-grows is \d+ bytes as produced \(after tokenization\)/);
    assert.match(reason, new RegExp(`record is \\d+ bytes, over the ${limit}-byte record limit`));
    assert.equal(oversizeReason(webhookEvent('p-small'), limit), undefined);
  });
});

describe('spooled events', () => {
  it('round-trip whole, and a spool of single records (the earlier format) groups by idempotency key', () => {
    const a = webhookEvent('s1');
    const b = webhookEvent('s2');
    const [decoded] = eventsOfSpooled([spoolRecordOf(a)]);
    assert.deepEqual(decoded, a);
    // Earlier receivers appended one record at a time, so two requests could interleave.
    const legacy = eventsOfSpooled([a.records[0]!, b.records[0]!, a.records[1]!, b.records[1]!]);
    assert.deepEqual(legacy, [a, b]);
  });
});

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { HEADERS } from '../../src/contracts/envelope';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import type { Logger } from '../../src/logger';
import { createS3ClaimCheckStore } from '../../src/stores/claim-checks';
import { createS3Client } from '../../src/stores/s3';
import type { TopicSet } from '../../src/streams/kafka';
import { CLAIM_CHECK_HEADER, PublishError, type SourceEvent, recordBytes } from '../../src/streams/publish';
import {
  type TestPublisherOptions,
  casesOnOwnTopics,
  intruderWith,
  testPublisher,
  wrapTransactions,
} from '../support/edge';
import { emails, publishedCapture } from '../support/events';
import { committedKeys } from '../support/kafka';
import { config, uniqueId } from '../support/stack';

// The publish step's transaction rules on a real broker: each case has topics of its own (one partition
// each), read back read-committed, so what a test sees is what its transactions committed, in commit order.
// Broker failures are the broker's own: a record over its message.max.bytes, a second producer with the same
// transactional id (fencing). Claim checks go to the stack's S3; a bucket that does not exist plays the store
// failing.

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const tokenizer = tokenizerFromConfig(config);
const s3 = createS3Client(config);

/** A Stripe-style capture as the edge would publish it on `topics`: tokenized, enveloped, its fact mapped. */
const webhookEvent = (topics: TopicSet, paymentId: string, extra: Record<string, unknown> = {}): SourceEvent =>
  publishedCapture(topics, tokenizer, { eventId: paymentId, paymentId }, extra);

/** Over the broker's message.max.bytes (1,048,588 by default; src/stack/kafka-service.ts keeps it). */
const overBrokerLimit = (): Record<string, unknown> => ({ pad: 'x'.repeat(1_200_000) });

describe('publisher', () => {
  const { closing, ownTopics } = casesOnOwnTopics(s3);
  after(() => s3.destroy());

  /** Topics of the case's own and a publisher on them; `keysOn` reads what is committed there (caught up). */
  const setup = async (name: string, options: TestPublisherOptions = {}) => {
    const t = await ownTopics(name);
    const publisher = testPublisher(name, quiet, {
      maxRecordBytes: 32 * 1024,
      quarantineTopic: t.topics.quarantine,
      ...options,
    });
    closing.push(() => publisher.close());
    const keysOn = (topic: string): Promise<string[]> => committedKeys(t, topic);
    return { t, topics: t.topics, publisher, keysOn };
  };

  /** Another producer with the publisher's transactional id (its next producer fences the intruder back). */
  const intruderFor = (transactionalId: string): { fence(): Promise<void> } => {
    const intruder = intruderWith('publish-test', transactionalId);
    closing.push(() => intruder.close());
    return intruder;
  };

  it('commits the valid events and a claim-check quarantine record for the oversize one, in one transaction', async () => {
    const { t, topics, publisher, keysOn } = await setup('publish-oversize');
    const events = [
      webhookEvent(topics, 'a1'),
      webhookEvent(topics, 'a2', { contacts: emails(900) }),
      webhookEvent(topics, 'a3'),
    ];
    const outcomes = await publisher.publish(events, { timeoutMs: 10_000 });
    assert.deepEqual(
      outcomes.map((o) => o.kind),
      ['published', 'quarantined', 'published'],
    );
    assert.equal(publisher.counters.committed, 1);
    assert.deepEqual(await keysOn(topics.rawWebhooks), ['webhook:acme-pay:evt_a1', 'webhook:acme-pay:evt_a3']);
    assert.deepEqual(await keysOn(topics.paymentEvents), ['webhook:acme-pay:evt_a1', 'webhook:acme-pay:evt_a3']);
    const [q] = t.on(topics.quarantine);
    assert.equal(q!.headers[HEADERS.idempotencyKey], 'webhook:acme-pay:evt_a2');
    assert.match(q!.headers[HEADERS.quarantineReason]!, /evt_a2 is \d+ bytes .* over the 32768-byte record limit/);
    const uri = q!.headers[CLAIM_CHECK_HEADER]!;
    const m = /^s3:\/\/([^/]+)\/(claim-check\/webhook\/2025-01-02\/[a-p]{32}-[a-p]{16}\.json)$/.exec(uri);
    assert.ok(m, uri);
    assert.equal(m[1], config.S3_BUCKET);
    const object = await s3.send(new GetObjectCommand({ Bucket: m[1], Key: m[2] }));
    const stored = JSON.parse(await object.Body!.transformToString()) as {
      records: { topic: string; value: string }[];
    };
    assert.deepEqual(
      stored.records.map((r) => r.topic),
      [topics.rawWebhooks, topics.paymentEvents],
    );
    assert.doesNotMatch(stored.records[0]!.value, /u1@x\.io/, 'the stored body is the tokenized one');
    assert.ok(recordBytes(q!) < 4096, 'a reference on Kafka, the body in the store');
    assert.equal(publisher.counters.quarantined, 1);
  });

  it('isolates an event the broker refuses: the others commit, it is quarantined with the broker reason', async () => {
    // The publisher's own limit above the broker's (misconfigured): the broker refuses the record itself.
    const { t, topics, publisher, keysOn } = await setup('publish-refused', { maxRecordBytes: 8 * 1024 * 1024 });
    const outcomes = await publisher.publish(
      [webhookEvent(topics, 'b1'), webhookEvent(topics, 'b2', overBrokerLimit()), webhookEvent(topics, 'b3')],
      { timeoutMs: 30_000 },
    );
    assert.deepEqual(
      outcomes.map((o) => o.kind),
      ['published', 'quarantined', 'published'],
    );
    assert.deepEqual(await keysOn(topics.rawWebhooks), ['webhook:acme-pay:evt_b1', 'webhook:acme-pay:evt_b3']);
    assert.deepEqual(await keysOn(topics.paymentEvents), ['webhook:acme-pay:evt_b1', 'webhook:acme-pay:evt_b3']);
    const [q] = t.on(topics.quarantine);
    assert.match(
      q!.headers[HEADERS.quarantineReason]!,
      /Kafka refused event webhook:acme-pay:evt_b2: .*(larger than the max message size|too large)/i,
    );
    assert.equal(publisher.counters.aborted, 2, 'the batch and the refused event alone');
    assert.equal(publisher.counters.poison, 2);
  });

  it('recreates the producer after it is fenced and retries once', async () => {
    const transactionalId = uniqueId('test-publish-fenced');
    const intruder = intruderFor(transactionalId);
    let producers = 0;
    const { topics, publisher, keysOn } = await setup('publish-fenced', {
      transactionalId,
      // Once the publisher's first producer has its epoch, another producer with its id takes a newer one.
      wrap: (p) =>
        ++producers === 1
          ? {
              ...p,
              async transaction() {
                const txn = await p.transaction();
                await intruder.fence();
                return txn;
              },
            }
          : p,
    });
    const outcomes = await publisher.publish([webhookEvent(topics, 'c1')], { timeoutMs: 30_000 });
    assert.deepEqual(outcomes, [{ kind: 'published' }]);
    assert.equal(producers, 2);
    assert.equal(publisher.counters.aborted, 1);
    assert.equal(publisher.counters.producer, 1, 'the fencing is a producer-state error');
    assert.deepEqual(await keysOn(topics.rawWebhooks), ['webhook:acme-pay:evt_c1']);
    assert.equal(publisher.counters.producersRecreated, 1);
  });

  it('a timeout before commit abandons the transaction: aborted once the send returns, never committed', async () => {
    let sendReached: () => void = () => undefined;
    const reached = new Promise<void>((r) => (sendReached = r));
    let releaseSend: () => void = () => undefined;
    const { t, topics, publisher, keysOn } = await setup('publish-abandoned', {
      // The broker gets the records only after the caller's deadline has passed.
      wrap: wrapTransactions((txn) => ({
        send: async (records) => {
          sendReached();
          await new Promise<void>((r) => (releaseSend = r));
          await txn.send(records);
        },
      })),
    });
    const failed = await publisher
      .publish([webhookEvent(topics, 'd1')], { timeoutMs: 2000 })
      .catch((err: unknown) => err);
    assert.ok(failed instanceof PublishError, String(failed));
    assert.equal(failed.kind, 'timeout');
    assert.equal(failed.phase, 'before-commit');
    await reached;
    releaseSend(); // the broker answers after the caller gave up (and spooled the event)
    await publisher.close();
    assert.equal(publisher.counters.committed, 0);
    assert.equal(publisher.counters.aborted, 1);
    assert.deepEqual(await keysOn(topics.rawWebhooks), []);
    assert.deepEqual(t.records, [], 'nothing of it is visible to read-committed consumers');
  });

  it('once its commit has started, a timeout waits for the outcome', async () => {
    let commitStarted = false;
    const { topics, publisher, keysOn } = await setup('publish-slow-commit', {
      wrap: wrapTransactions((txn) => ({
        commit: async () => {
          commitStarted = true;
          // The commit reaches the broker only after the caller's deadline.
          await new Promise((r) => setTimeout(r, 2500));
          await txn.commit();
        },
      })),
    });
    const outcomes = await publisher.publish([webhookEvent(topics, 'e1')], { timeoutMs: 2000 });
    assert.ok(commitStarted);
    assert.deepEqual(outcomes, [{ kind: 'published' }]);
    assert.equal(publisher.counters.committed, 1);
    assert.equal(publisher.counters.timeouts, 0);
    assert.deepEqual(await keysOn(topics.rawWebhooks), ['webhook:acme-pay:evt_e1']);
  });

  it('a failed commit is reported as of unknown outcome and the producer is recreated', async () => {
    const transactionalId = uniqueId('test-publish-commit');
    const intruder = intruderFor(transactionalId);
    let producers = 0;
    let fenceBeforeCommit = true;
    const { topics, publisher, keysOn } = await setup('publish-commit-fails', {
      transactionalId,
      wrap: (p) => {
        producers += 1;
        return wrapTransactions((txn) => ({
          commit: async () => {
            // Between the sends and the commit, another producer with this id fences this one.
            if (fenceBeforeCommit) {
              fenceBeforeCommit = false;
              await intruder.fence();
            }
            await txn.commit();
          },
        }))(p);
      },
    });
    const failed = await publisher
      .publish([webhookEvent(topics, 'f1')], { timeoutMs: 30_000 })
      .catch((err: unknown) => err);
    assert.ok(failed instanceof PublishError, String(failed));
    assert.equal(failed.phase, 'commit');
    assert.equal(publisher.counters.commitUnknown, 1);
    assert.equal(publisher.counters.producersRecreated, 1);
    await publisher.publish([webhookEvent(topics, 'f2')], { timeoutMs: 30_000 });
    assert.equal(producers, 2);
    assert.deepEqual(await keysOn(topics.rawWebhooks), ['webhook:acme-pay:evt_f2']);
  });

  it('defers an oversize event whose claim check fails; the others still commit', async () => {
    // A bucket nobody created: every put fails with the store's own answer (NoSuchBucket).
    const { topics, publisher, keysOn } = await setup('publish-deferred', {
      claimChecks: createS3ClaimCheckStore(s3, uniqueId('missing-bucket').toLowerCase()),
    });
    const outcomes = await publisher.publish(
      [webhookEvent(topics, 'g1'), webhookEvent(topics, 'g2', { contacts: emails(900) })],
      { timeoutMs: 30_000 },
    );
    assert.deepEqual(
      outcomes.map((o) => o.kind),
      ['published', 'deferred'],
    );
    assert.deepEqual(await keysOn(topics.rawWebhooks), ['webhook:acme-pay:evt_g1']);
    assert.deepEqual(await keysOn(topics.quarantine), []);
  });
});

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { DeleteBucketCommand, DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { HEADERS, webhookIdempotencyKey } from '../../src/contracts/envelope';
import { type Spool, openSpool } from '../../src/ingest/spool';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import type { Logger } from '../../src/logger';
import { createS3ClaimCheckStore } from '../../src/stores/claim-checks';
import { createS3Client, ensureBucket } from '../../src/stores/s3';
import { openVaultLazily } from '../../src/stores/vault';
import type { TopicSet, TransactionalProducer } from '../../src/streams/kafka';
import { type ClaimCheckStore, type SourceEvent, spoolRecordOf } from '../../src/streams/publish';
import {
  casesOnOwnTopics,
  intruderWith,
  tempSpool,
  testPublisher,
  testReceiver,
  wrapTransactions,
} from '../support/edge';
import { emails, publishedCapture } from '../support/events';
import { type PrivateTopics, committedKeys } from '../support/kafka';
import { config, uniqueId } from '../support/stack';

// The webhook spool's drain through the publish step, on the real spool in a temp dir, a real broker and
// S3: a poisoned event in the middle never stalls the events behind it, before or after a restart, and a
// failed transaction resends only its own batch. Each case has topics of its own (one partition each),
// read back read-committed: what its drains committed, in commit order.

const tokenizer = tokenizerFromConfig(config);
const MAX_RECORD_BYTES = 32 * 1024;
const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const s3 = createS3Client(config);
// The drain never stores originals; the receiver gets the real vault, connected only if it is used.
const vault = openVaultLazily(config);

let topics: TopicSet;

function event(id: string, poisoned = false): SourceEvent {
  // Short addresses that tokenize into ~45-byte tokens: over the limit only once tokenized.
  const extra = poisoned ? { contacts: emails(900) } : {};
  return publishedCapture(topics, tokenizer, { eventId: id, paymentId: `pay-${id}` }, extra);
}

const dirs: string[] = [];
const cases = casesOnOwnTopics(s3);
const closing = cases.closing;
after(async () => {
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
  s3.destroy();
  await vault.close();
});

/** Topics of the case's own, read committed from their start. */
async function ownTopics(name: string): Promise<PrivateTopics> {
  const watched = await cases.ownTopics(name);
  topics = watched.topics;
  return watched;
}

async function freshSpool(): Promise<{ dir: string; spool: Spool }> {
  const { dir, spool } = await tempSpool('paylink-drain-', 64 * 1024 * 1024);
  dirs.push(dir);
  return { dir, spool };
}

function receiverOn(
  spool: Spool,
  options: {
    claimChecks?: ClaimCheckStore;
    wrap?: (p: TransactionalProducer) => TransactionalProducer;
    transactionalId?: string;
  } = {},
) {
  const publisher = testPublisher('edge-spool-drain', quiet, {
    ...options,
    quarantineTopic: topics.quarantine,
    maxRecordBytes: MAX_RECORD_BYTES,
  });
  closing.push(() => publisher.close());
  const receiver = testReceiver({
    publisher,
    topics,
    spool,
    tokenizer,
    vault,
    log: quiet,
    maxBodyBytes: 256 * 1024,
    kafkaTimeoutMs: 2000,
  });
  return { receiver, publisher };
}

/** The idempotency keys committed on `topic` so far, in commit order. */
const keysOn = committedKeys;
const key = (id: string): string => webhookIdempotencyKey('acme-pay', `evt_${id}`);

describe('spool drain through the publish step', () => {
  it('drains past a poisoned event in the middle: the rest lands, it is quarantined with a claim check', async () => {
    const kafka = await ownTopics('drain-poison');
    const { spool } = await freshSpool();
    for (const e of [event('a'), event('b', true), event('c')]) await spool.append(spoolRecordOf(e));
    // A spool left by an earlier receiver: one record per message (raw, then fact), the poison among them.
    const legacyPoison = event('d', true);
    for (const r of [...event('e').records, ...legacyPoison.records, ...event('f').records]) await spool.append(r);
    const { receiver } = receiverOn(spool);
    assert.equal(await receiver.drainSpool(), 9, 'every spool record drained');
    assert.equal(spool.size().records, 0);
    assert.deepEqual(await keysOn(kafka, topics.rawWebhooks), [key('a'), key('c'), key('e'), key('f')]);
    assert.deepEqual(await keysOn(kafka, topics.paymentEvents), [key('a'), key('c'), key('e'), key('f')]);
    const quarantined = kafka.on(topics.quarantine);
    assert.deepEqual(
      quarantined.map((r) => r.headers[HEADERS.idempotencyKey]),
      [key('b'), key('d')],
    );
    for (const q of quarantined) {
      assert.match(q.headers[HEADERS.quarantineReason]!, /bytes as produced .* over the 32768-byte record limit/);
    }
    assert.equal(receiver.counters.claimChecked, 2);
    assert.equal(receiver.status().spoolDrainErrors, 0);
    await spool.close();
  });

  it('after a restart with the poison in the spool, drains everything else', async () => {
    const kafka = await ownTopics('drain-restart');
    const { dir, spool } = await freshSpool();
    for (const e of [event('r1'), event('r2', true), event('r3')]) await spool.append(spoolRecordOf(e));
    await spool.close(); // the process stops with the poison spooled

    const reopened = await openSpool({ dir, maxBytes: 64 * 1024 * 1024 });
    const { receiver } = receiverOn(reopened);
    assert.equal(await receiver.drainSpool(), 3);
    assert.deepEqual(await keysOn(kafka, topics.rawWebhooks), [key('r1'), key('r3')]);
    assert.deepEqual(await keysOn(kafka, topics.quarantine), [key('r2')]);
    assert.deepEqual((await receiver.drainSpool(), reopened.size().records), 0);
    await reopened.close();
  });

  it('with the claim-check store down, puts the poison back at the end and keeps draining the rest', async () => {
    const kafka = await ownTopics('drain-store-down');
    const { spool } = await freshSpool();
    for (const e of [event('s1'), event('s2', true), event('s3')]) await spool.append(spoolRecordOf(e));
    // The store fails with S3's own answer while its bucket does not exist; creating it brings the store back.
    const bucket = uniqueId('claim-checks-down').toLowerCase();
    closing.push(async () => {
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket })).catch(() => undefined);
      for (const o of listed?.Contents ?? []) await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key! }));
      await s3.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
    });
    const { receiver } = receiverOn(spool, { claimChecks: createS3ClaimCheckStore(s3, bucket) });
    await receiver.drainSpool();
    assert.deepEqual(await keysOn(kafka, topics.rawWebhooks), [key('s1'), key('s3')]);
    assert.equal(spool.size().records, 1, 'only the poison waits');
    assert.equal(receiver.counters.requeued, 1);
    await ensureBucket(s3, bucket);
    await receiver.drainSpool();
    assert.equal(spool.size().records, 0);
    assert.deepEqual(await keysOn(kafka, topics.quarantine), [key('s2')]);
    await spool.close();
  });

  it('a transaction that fails resends its own batch only, and nothing of it was visible', async () => {
    const kafka = await ownTopics('drain-failed-txn');
    const { spool } = await freshSpool();
    const ids = Array.from({ length: 300 }, (_, i) => `t${i}`); // two drain batches (256 + 44)
    for (const id of ids) await spool.append(spoolRecordOf(event(id)));
    // The second batch's transaction dies after its records reached the broker: before its commit, another
    // producer with the publisher's transactional id takes it (the broker aborts the open transaction).
    const transactionalId = uniqueId('test-drain-fenced');
    const intruder = intruderWith('drain-intruder', transactionalId);
    closing.push(() => intruder.close());
    let transactions = 0;
    const { receiver, publisher } = receiverOn(spool, {
      transactionalId,
      wrap: wrapTransactions((txn) => {
        const nth = ++transactions;
        return {
          commit: async () => {
            if (nth === 2) await intruder.fence();
            await txn.commit();
          },
        };
      }),
    });
    assert.equal(await receiver.drainSpool(), 0, 'the failed drain reports nothing drained (it threw)');
    assert.equal(spool.size().records, 44, 'the first batch committed and left the spool');
    assert.equal(receiver.counters.spoolDrainErrors, 1);
    assert.equal(publisher.counters.committed, 1);
    assert.equal(publisher.counters.commitUnknown, 1, 'the failed transaction');
    assert.equal((await keysOn(kafka, topics.rawWebhooks)).length, 256, 'nothing of the failed batch is visible');
    await receiver.drainSpool();
    assert.equal(spool.size().records, 0);
    const raw = await keysOn(kafka, topics.rawWebhooks);
    assert.equal(raw.length, 300);
    assert.equal(new Set(raw).size, 300, 'no event twice');
    await spool.close();
  });
});

import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { ListObjectVersionsCommand, DeleteObjectCommand } from '@aws-sdk/client-s3';
import type { Kafka } from 'kafkajs';
import { scanS3Leaks } from '../../src/ops/pii-scan';
import {
  getArchiveObject,
  listManifest,
  putArchiveObject,
  putManifestEntry,
  readBucketProtection,
  readRetention,
  sweepOrphans,
} from '../../src/stores/archive';
import { createS3Client } from '../../src/stores/s3';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { archivedTopicsOf, checkArchive, summarize } from '../../src/streams/archiver/completeness';
import { type RestoredRecord, objectKey, parseArchiveLines } from '../../src/streams/archiver/layout';
import {
  type ConsumedMessage,
  type TopicSet,
  createKafka,
  ensureTopics,
  readTopics,
  topicsFor,
} from '../../src/streams/kafka';
import { testKafka } from '../support/kafka';
import { waitFor, within } from '../support/pipeline';
import { config, requireServices, uniqueId } from '../support/stack';
import { seededRandom } from '../../src/ops/edge-fuzz';

// The raw archive against the real Kafka and the real S3 server: records come back byte for byte;
// objects close by size and by age; kill -9 at each step of the commit protocol (seeded), two
// archivers racing, then a clean completeness check; orphans swept; Object Lock and lifecycle read
// back; the PII scan reads inside the gzip'd objects. Each test has its own topics, group and bucket.

const MAIN = 'src/streams/archiver/archiver-main.ts';

interface Scope {
  name: string;
  topics: TopicSet;
  bucket: string;
  group: string;
  env: Record<string, string>;
}

describe('raw archive: archiver, manifest commit point, completeness', { timeout: 900_000 }, () => {
  const s3 = createS3Client(config);
  const kafka: Kafka = testKafka('archiver-test');
  const producer = kafka.producer({ idempotent: true });
  const processes: PipelineProcess[] = [];
  const scopes: Scope[] = [];

  async function scope(name: string, env: Record<string, string> = {}): Promise<Scope> {
    const namespace = uniqueId(`a-${name}`)
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-')
      .slice(0, 40);
    const bucket = uniqueId('archive')
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-');
    const s: Scope = {
      name,
      topics: topicsFor({ KAFKA_TOPIC_NAMESPACE: namespace }),
      bucket,
      group: uniqueId(`archiver-${name}`),
      env: {
        KAFKA_TOPIC_NAMESPACE: namespace,
        KAFKA_TOPIC_PARTITIONS: '2',
        S3_BUCKET: bucket,
        ARCHIVE_OBJECT_MAX_AGE_MS: '1000',
        ...env,
      },
    };
    s.env.ARCHIVER_GROUP = s.group;
    const admin = createKafka(config, 'archiver-test').admin();
    await admin.connect();
    await ensureTopics(admin, { ...config, KAFKA_TOPIC_NAMESPACE: namespace, KAFKA_TOPIC_PARTITIONS: 2 });
    await admin.disconnect();
    scopes.push(s);
    return s;
  }

  function startArchiver(s: Scope, label: string, env: Record<string, string> = {}): PipelineProcess {
    const p = startPipelineProcess(`archiver-test-${s.name}-${label}`, MAIN, { ...s.env, ...env });
    processes.push(p);
    return p;
  }

  const check = (s: Scope) =>
    checkArchive({
      s3,
      bucket: s.bucket,
      kafka: createKafka(config, 'archiver-test-check'),
      group: s.group,
      topics: archivedTopicsOf(s.topics),
    });

  /** Until every partition's manifests reach Kafka's end; then the check's partitions. */
  async function caughtUp(s: Scope, ms: number, guard?: () => void) {
    let last: Awaited<ReturnType<typeof check>> = [];
    await waitFor(
      `the archive of ${s.name} to reach every partition's end`,
      Date.now() + ms,
      async () => {
        last = await check(s);
        const behind = last.filter((p) => p.high !== '0' && p.archivedTo !== p.high);
        return (
          behind.length === 0 || behind.map((p) => `${p.topic}[${p.partition}] ${p.archivedTo}/${p.high}`).join(', ')
        );
      },
      { intervalMs: 1000, guard },
    );
    return last;
  }

  /** Every record Kafka holds on `topic` now, with its offset, timestamp and header bytes. */
  async function kafkaRecords(topic: string, count: number): Promise<ConsumedMessage[]> {
    const got: ConsumedMessage[] = [];
    const done = await readTopics(
      createKafka(config, 'archiver-test-read'),
      new Map([[topic, 'beginning' as const]]),
      (_t, _p, m) => {
        got.push(m);
        return got.length >= count;
      },
      60_000,
    );
    assert.ok(done, `read ${got.length}/${count} records of ${topic}`);
    return got;
  }

  /** Every archived record of a partition, from its manifested objects (the versions the manifest names). */
  async function archivedRecords(s: Scope, topic: string, partition: number): Promise<RestoredRecord[]> {
    const out: RestoredRecord[] = [];
    for (const e of await listManifest(s3, s.bucket, topic, partition)) {
      const body = await getArchiveObject(s3, s.bucket, e.key, e.versionId);
      out.push(...parseArchiveLines(gunzipSync(body).toString('utf8')));
    }
    return out;
  }

  async function versionsOf(s: Scope): Promise<number> {
    const page = await s3.send(new ListObjectVersionsCommand({ Bucket: s.bucket, Prefix: 'raw/' }));
    return (page.Versions ?? []).length;
  }

  before(async () => {
    await requireServices('kafka', 's3');
    await producer.connect();
  });

  after(async () => {
    await Promise.allSettled(processes.map((p) => p.kill9()));
    await producer.disconnect();
    const admin = kafka.admin();
    await admin.connect();
    const names = scopes.flatMap((s) => archivedTopicsOf(s.topics));
    await admin.deleteTopics({ topics: names }).catch(() => undefined);
    await admin.deleteGroups(scopes.map((s) => s.group)).catch(() => undefined);
    await admin.disconnect();
    s3.destroy();
  });

  it('archives records byte for byte (a value that is not UTF-8, binary headers) and locks them', async () => {
    const s = await scope('roundtrip');
    const binary = Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80, 0x7b, 0x0a]);
    await producer.send({
      topic: s.topics.rawWebhooks,
      acks: -1,
      messages: [
        { partition: 0, key: 'pay_1', value: '{"id":"evt_1","amount":1250}', headers: { schema: 'webhook@1' } },
        {
          partition: 0,
          key: Buffer.from([0x01, 0xff]),
          value: binary,
          headers: { bin: Buffer.from([0x80, 0x81, 0x00]) },
        },
        { partition: 0, key: null, value: null },
        { partition: 0, key: 'pay_2', value: 'é ü ∑ 🙂', headers: { multi: ['a', 'b'] } },
      ],
    });
    await producer.send({ topic: s.topics.quarantine, acks: -1, messages: [{ partition: 2, key: 'q', value: 'bad' }] });
    const p = startArchiver(s, 'main');
    await within(p.ready, 60_000, `the archiver to join (log: ${p.logFile})`);
    const partitions = await caughtUp(s, 60_000);
    const summary = summarize(partitions);
    assert.deepEqual(
      { gaps: summary.gaps, overlaps: summary.overlaps, records: summary.records },
      {
        gaps: 0,
        overlaps: 0,
        records: 5,
      },
    );

    const inKafka = await kafkaRecords(s.topics.rawWebhooks, 4);
    const archived = await archivedRecords(s, s.topics.rawWebhooks, 0);
    assert.equal(archived.length, 4);
    for (const [i, m] of inKafka.entries()) {
      const a = archived[i]!;
      assert.equal(a.offset, m.offset);
      assert.equal(a.timestamp, m.timestamp);
      assert.deepEqual(a.key, m.key);
      assert.deepEqual(a.value, m.value);
      assert.deepEqual(
        a.headers,
        m.rawHeaders.map(([n, v]) => [n, Buffer.from(v)]),
      );
    }
    assert.deepEqual(archived[1]!.value, binary, 'the non-UTF-8 value survives byte for byte');
    assert.deepEqual(archived[1]!.headers, [['bin', Buffer.from([0x80, 0x81, 0x00])]]);
    assert.deepEqual(
      archived[3]!.headers.map(([n, v]) => `${n}=${v.toString()}`),
      ['multi=a', 'multi=b'],
    );
    assert.equal(archived[2]!.value, null, 'a tombstone stays a null value');

    // Immutability, read back from the server: the bucket's Object Lock and lifecycle, and each
    // manifested object's COMPLIANCE retention, which refuses a delete of that version.
    const protection = await readBucketProtection(s3, s.bucket);
    assert.equal(protection.objectLock, 'Enabled');
    assert.deepEqual(
      protection.lifecycle.map((r) => [r.prefix, r.expirationDays, r.noncurrentDays]),
      [
        ['raw/', 180, 1],
        ['manifests/', 181, 1],
      ],
    );
    const [entry] = await listManifest(s3, s.bucket, s.topics.rawWebhooks, 0);
    const retention = await readRetention(s3, s.bucket, entry!.key, entry!.versionId);
    assert.equal(retention.mode, 'COMPLIANCE');
    const days = (retention.until!.getTime() - Date.parse(entry!.writtenAt)) / (24 * 3600_000);
    assert.ok(Math.abs(days - 180) < 0.01, `retained ${days} days`);
    await assert.rejects(
      s3.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: entry!.key, VersionId: entry!.versionId ?? undefined })),
      /denied|locked|forbidden/i,
      'a locked version cannot be deleted',
    );

    await within(p.stop(), 40_000, 'the archiver to stop on SIGTERM');
    assert.equal(p.child.exitCode, 0);
    const [committed] = await (async () => {
      const admin = kafka.admin();
      await admin.connect();
      try {
        return await admin.fetchOffsets({ groupId: s.group, topics: [s.topics.rawWebhooks] });
      } finally {
        await admin.disconnect();
      }
    })();
    assert.equal(committed!.partitions.find((x) => x.partition === 0)?.offset, '4', 'committed after the manifest');
  });

  it('closes an object by size, and a small one by age', async () => {
    const s = await scope('closing', { ARCHIVE_OBJECT_MAX_BYTES: '4096', ARCHIVE_OBJECT_MAX_AGE_MS: '3000' });
    const p = startArchiver(s, 'main');
    await within(p.ready, 60_000, `the archiver to join (log: ${p.logFile})`);
    const value = (i: number) => JSON.stringify({ i, pad: 'x'.repeat(300) });
    await producer.send({
      topic: s.topics.rawGateways,
      acks: -1,
      messages: Array.from({ length: 60 }, (_, i) => ({ partition: 1, key: `k${i}`, value: value(i) })),
    });
    await caughtUp(s, 60_000);
    const entries = await listManifest(s3, s.bucket, s.topics.rawGateways, 1);
    assert.ok(entries.length >= 4, `60 records of ~450 NDJSON bytes in 4096-byte objects: ${entries.length} objects`);
    for (const e of entries.slice(0, -1)) {
      const bytes = gunzipSync(await getArchiveObject(s3, s.bucket, e.key, e.versionId)).length;
      assert.ok(bytes >= 4096, `object ${e.key} closed by size at ${bytes} bytes`);
    }
    assert.equal(
      entries.reduce((n, e) => n + e.records, 0),
      60,
    );

    // One small record: under the size, it is archived when its object reaches the age (3 s).
    const sent = Date.now();
    await producer.send({
      topic: s.topics.rawGateways,
      acks: -1,
      messages: [{ partition: 1, key: 'late', value: 'x' }],
    });
    await caughtUp(s, 30_000);
    const last = (await listManifest(s3, s.bucket, s.topics.rawGateways, 1)).at(-1)!;
    assert.equal(last.records, 1);
    const closedAfter = Date.parse(last.writtenAt) - sent;
    assert.ok(closedAfter >= 2500, `a small object waits for its age: closed ${closedAfter} ms after the send`);
    await within(p.stop(), 40_000, 'the archiver to stop');
  });

  it('kill -9 at every step of the commit (seeded), then two archivers racing: no gap, no overlap', async () => {
    // A member killed -9 holds its partitions for its session: 6 s, not 30, so the rounds do not wait on it.
    const s = await scope('kill', { ARCHIVE_OBJECT_MAX_BYTES: '2048', KAFKA_SESSION_TIMEOUT_MS: '6000' });
    const seed = Number(process.env.ARCHIVE_TEST_SEED ?? '20261129');
    const random = seededRandom(seed); // the kill points are the same on every run of a seed
    const points = ['object', 'manifest', 'lock', 'commit'];
    const targets = [s.topics.rawWebhooks, s.topics.rawGateways, s.topics.cdcPayments, s.topics.paymentEvents];
    let produced = 0;
    const produce = async (n: number) => {
      const topicMessages = targets.map((topic) => ({
        topic,
        messages: Array.from({ length: n }, () => ({
          partition: Math.floor(random() * 2),
          key: `k${produced}`,
          value: JSON.stringify({ n: produced++, pad: 'y'.repeat(Math.floor(random() * 200)) }),
        })),
      }));
      await producer.sendBatch({ acks: -1, topicMessages });
    };
    const rounds: string[] = [];
    for (const point of points) {
      const nth = 1 + Math.floor(random() * 3);
      await produce(20 + Math.floor(random() * 20));
      const p = startArchiver(s, `${point}-${nth}`, { PAYLINK_FAULT_ARCHIVER_KILL: `${point}:${nth}` });
      const signal = await within(
        new Promise<NodeJS.Signals | null>((resolve) => p.child.once('exit', (_code, sig) => resolve(sig))),
        90_000,
        `the archiver to be killed at ${point}:${nth} (log: ${p.logFile})`,
      );
      assert.equal(signal, 'SIGKILL', `killed at ${point}:${nth}`);
      rounds.push(`${point}:${nth}`);
    }
    // And a kill -9 from outside at a random moment of a busy archiver.
    await produce(40);
    const busy = startArchiver(s, 'external');
    await within(busy.ready, 60_000, 'the archiver to join');
    await new Promise((r) => setTimeout(r, 200 + Math.floor(random() * 1500)));
    await busy.kill9();
    const mid = summarize(await check(s));
    assert.deepEqual([mid.gaps, mid.overlaps], [0, 0], `after kills ${rounds.join(', ')}: ${JSON.stringify(mid)}`);

    // Two archivers in the group at once: rebalances while objects are open; they race for manifest seqs.
    await produce(30);
    const a = startArchiver(s, 'race-a');
    const b = startArchiver(s, 'race-b');
    await Promise.all([within(a.ready, 60_000, 'archiver a'), within(b.ready, 60_000, 'archiver b')]);
    await produce(30);
    const guard = () => {
      for (const p of [a, b]) if (p.child.exitCode !== null) throw new Error(`${p.name} exited (log: ${p.logFile})`);
    };
    const partitions = await caughtUp(s, 120_000, guard);
    const final = summarize(partitions);
    assert.equal(final.gaps, 0, JSON.stringify(partitions.filter((p) => p.gaps.length > 0)));
    assert.equal(final.overlaps, 0, JSON.stringify(partitions.filter((p) => p.overlaps.length > 0)));
    assert.equal(final.records, produced, 'every produced record is archived exactly once');
    // Within each partition the archived offsets are strictly increasing: no record twice.
    for (const topic of targets) {
      for (const partition of [0, 1]) {
        const offsets = (await archivedRecords(s, topic, partition)).map((r) => BigInt(r.offset));
        for (let i = 1; i < offsets.length; i++) assert.ok(offsets[i]! > offsets[i - 1]!, `${topic}[${partition}]`);
      }
    }
    await Promise.all([within(a.stop(), 40_000, 'a to stop'), within(b.stop(), 40_000, 'b to stop')]);

    // The object-step kill left an object no manifest lists: the sweep deletes it, and only it.
    const before = await versionsOf(s);
    let deleted = 0;
    for (const topic of archivedTopicsOf(s.topics))
      deleted += (await sweepOrphans(s3, s.bucket, topic, 0)).deleted.length;
    assert.ok(deleted >= 1, `the orphan of the kill after its object was swept (${deleted})`);
    assert.equal(await versionsOf(s), before - deleted);
    const after = summarize(await check(s));
    assert.deepEqual([after.gaps, after.overlaps, after.records], [0, 0, produced]);
  });

  it('sweeps an orphan only after its grace period, never a manifested object; a second seq writer is refused', async () => {
    const s = await scope('orphan');
    await producer.send({
      topic: s.topics.rawPartnerApi,
      acks: -1,
      messages: [{ partition: 0, key: 'k', value: 'v' }],
    });
    const p = startArchiver(s, 'main');
    await within(p.ready, 60_000, 'the archiver to join');
    await caughtUp(s, 60_000);
    await within(p.stop(), 40_000, 'the archiver to stop');
    const orphan = objectKey(s.topics.rawPartnerApi, 0, '1', '5', Date.now());
    await putArchiveObject(s3, s.bucket, orphan, Buffer.from('not manifested'));
    const young = await sweepOrphans(s3, s.bucket, s.topics.rawPartnerApi, 60_000);
    assert.deepEqual([young.manifested, young.young, young.deleted.length], [1, 1, 0]);
    const old = await sweepOrphans(s3, s.bucket, s.topics.rawPartnerApi, 0);
    assert.deepEqual([old.manifested, old.young], [1, 0]);
    assert.deepEqual(
      old.deleted.map((d) => d.key),
      [orphan],
    );
    // A second writer of seq 0 (the loser of a race) is refused by the server: the commit point holds.
    const [entry] = await listManifest(s3, s.bucket, s.topics.rawPartnerApi, 0);
    assert.equal(await putManifestEntry(s3, s.bucket, { ...entry!, writer: 'racer', to: '99' }), 'taken');
    assert.equal((await listManifest(s3, s.bucket, s.topics.rawPartnerApi, 0))[0]!.to, entry!.to);
    const clean = summarize(await check(s));
    assert.deepEqual([clean.records, clean.gaps, clean.overlaps], [1, 0, 0]);
  });

  it('the check can fail: records Kafka deleted before they were archived show as a gap', async () => {
    const s = await scope('gap');
    const send = (from: number) =>
      producer.send({
        topic: s.topics.rawGateways,
        acks: -1,
        messages: Array.from({ length: 10 }, (_, i) => ({ partition: 0, key: `k${from + i}`, value: `v${from + i}` })),
      });
    await send(0);
    const first = startArchiver(s, 'first');
    await within(first.ready, 60_000, 'the archiver to join');
    await caughtUp(s, 60_000);
    await within(first.stop(), 40_000, 'the archiver to stop');
    // While no archiver runs, 10 more records arrive and Kafka deletes 10..14 (as retention would).
    await send(10);
    const admin = kafka.admin();
    await admin.connect();
    await admin.fetchTopicMetadata({ topics: [s.topics.rawGateways] }); // deleteTopicRecords needs it loaded
    await admin.deleteTopicRecords({ topic: s.topics.rawGateways, partitions: [{ partition: 0, offset: '15' }] });
    await admin.disconnect();
    const second = startArchiver(s, 'second');
    await within(second.ready, 60_000, 'the archiver to join again');
    const partitions = await caughtUp(s, 60_000);
    await within(second.stop(), 40_000, 'the archiver to stop');
    const p0 = partitions.find((p) => p.topic === s.topics.rawGateways && p.partition === 0)!;
    assert.deepEqual(p0.gaps, [{ from: '10', to: '15' }]);
    assert.equal(p0.records, 15);
    assert.deepEqual(summarize(partitions).gaps, 1);
  });

  it('the PII scan reads inside the gzip archive objects and finds a planted card number', async () => {
    const s = await scope('pii');
    await producer.send({
      topic: s.topics.rawWebhooks,
      acks: -1,
      messages: [
        { partition: 0, key: 'pay_ok', value: '{"amount":1250,"currency":"EUR"}' },
        { partition: 0, key: 'pay_leak', value: '{"note":"card 4111 1111 1111 1111 exp 12/30"}' },
      ],
    });
    const p = startArchiver(s, 'main');
    await within(p.ready, 60_000, 'the archiver to join');
    await caughtUp(s, 60_000);
    await within(p.stop(), 40_000, 'the archiver to stop');
    const { scanned, leaks } = await scanS3Leaks({ ...config, S3_BUCKET: s.bucket });
    assert.ok(scanned >= 2, `objects and manifest entries scanned: ${scanned}`);
    assert.equal(leaks.length, 1, JSON.stringify(leaks));
    assert.equal(leaks[0]!.kind, 'pan');
    assert.match(leaks[0]!.where, /\.ndjson\.gz@1 value$/);
    assert.ok(!leaks[0]!.sample.includes('4111 1111 1111 1111'), 'the finding is masked');
  });
});

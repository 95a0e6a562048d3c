import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { type Gzip, createGzip } from 'node:zlib';
import type { S3Client } from '@aws-sdk/client-s3';
import { type Logger, errorMessage } from '../../logger';
import {
  deleteVersion,
  findManifestHead,
  lockCommitted,
  putArchiveObject,
  putManifestEntry,
  sweepOrphans,
} from '../../stores/archive';
import type { BatchHandler, ConsumedBatch, GroupConsumer } from '../kafka';
import { type ManifestEntry, archiveLine, objectKey } from './layout';

// The archiver (consumer group `archiver`): every raw topic, the facts and the quarantine into gzip'd
// NDJSON objects on S3, one open object per partition, closed by size or age. Per object, in this order:
// PUT the object → create manifest entry seq+1 with If-None-Match (the commit point: one writer wins a
// seq) → COMPLIANCE retention on both → commit the Kafka offset. A crash anywhere redoes at most the
// open object; a lost race drops it and rereads from the winner's end. docs/archive.md has the argument.

export interface ArchiverOptions {
  s3: S3Client;
  bucket: string;
  consumer: Pick<GroupConsumer, 'commitOffset' | 'seek'>;
  /** Kafka's log start offset of a partition now (to tell deleted records from transaction markers). */
  logStart: (topic: string, partition: number) => Promise<string>;
  log: Logger;
  maxObjectBytes: number;
  maxObjectAgeMs: number;
  maxBufferBytes: number;
  retentionDays: number;
  orphanGraceMs: number;
  /** Names this process in the manifest entries it writes. */
  writer: string;
  /** Crash tests only: "<point>:<n>" SIGKILLs the process at the n-th flush after that point. */
  killAt?: string;
}

export interface ArchiverCounters {
  objects: number;
  records: number;
  bytes: number;
  /** Seqs another archiver committed first; their objects were dropped and reread. */
  lostRaces: number;
  /** Redelivered records already in a manifested object, skipped. */
  skipped: number;
}

/**
 * An object being filled: the records from `from` on and the offset after them. Each batch's lines go into
 * the object's gzip stream as they arrive, so compression runs on libuv's threads beside the fetching
 * instead of all at the close, where it held up the whole consumer (bench/archiver.ts: 2-3 s per 32 MiB).
 */
interface OpenObject {
  from: bigint;
  to: bigint;
  records: number;
  /** NDJSON bytes (before gzip), which the size and memory bounds count. */
  bytes: number;
  /** Lines appended since the last write to `gzip`. */
  pending: string[];
  gzip: Gzip;
  /** What `gzip` has produced so far. */
  compressed: Buffer[];
  /** The stream's error, if it failed; the close then fails with it. */
  failed: Error | undefined;
  first: string;
  last: string;
  firstTimestamp: number;
  minTimestamp: bigint;
  maxTimestamp: bigint;
  openedAt: number;
}

interface PartitionState {
  topic: string;
  partition: number;
  /** undefined = not read since this member (re)joined; null = the partition was never archived. */
  head: ManifestEntry | null | undefined;
  open: OpenObject | undefined;
  /** Serializes batches, age closes and resets of this partition. */
  queue: Promise<void>;
}

export interface Archiver {
  handle: BatchHandler;
  /** After every rebalance: open objects are dropped (Kafka redelivers them from the committed offset). */
  reset(): void;
  /** Closes every open object (on stop, before leaving the group). */
  flushAll(): Promise<void>;
  /** Closes objects past their age or over the memory bound; run about once a second. */
  tick(): Promise<void>;
  /** Deletes orphans of the topics seen so far. */
  sweep(): Promise<number>;
  counters: ArchiverCounters;
}

export function createArchiver(o: ArchiverOptions): Archiver {
  const states = new Map<string, PartitionState>();
  const counters: ArchiverCounters = { objects: 0, records: 0, bytes: 0, lostRaces: 0, skipped: 0 };
  const flushesAt = new Map<string, number>();
  const [killPoint, killNth] = (o.killAt ?? '').split(':');

  /** Crash tests: a real kill -9 at a chosen step of the n-th flush. */
  const maybeKill = (point: string): void => {
    if (point !== killPoint) return;
    const n = (flushesAt.get(point) ?? 0) + 1;
    flushesAt.set(point, n);
    if (n === Number(killNth)) {
      o.log.warn('fault injection: SIGKILL', { point, n });
      process.kill(process.pid, 'SIGKILL');
    }
  };

  const stateOf = (topic: string, partition: number): PartitionState => {
    const id = `${topic}[${partition}]`;
    let st = states.get(id);
    if (!st) {
      st = { topic, partition, head: undefined, open: undefined, queue: Promise.resolve() };
      states.set(id, st);
    }
    return st;
  };

  const serially = <T>(st: PartitionState, work: () => Promise<T>): Promise<T> => {
    const run = st.queue.then(work);
    st.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  };

  /** The head from S3; re-locks it (a crash may have come between its manifest and its retention). */
  const loadHead = async (st: PartitionState): Promise<ManifestEntry | null> => {
    const head = (await findManifestHead(o.s3, o.bucket, st.topic, st.partition)) ?? null;
    if (head) await lockCommitted(o.s3, o.bucket, head, o.retentionDays);
    st.head = head;
    return head;
  };

  const append = async (st: PartitionState, batch: ConsumedBatch): Promise<void> => {
    const head = st.head === undefined ? await loadHead(st) : st.head;
    const archivedTo = st.open ? st.open.to : head ? BigInt(head.to) : undefined;
    const fresh =
      archivedTo === undefined ? batch.messages : batch.messages.filter((m) => BigInt(m.offset) >= archivedTo);
    counters.skipped += batch.messages.length - fresh.length;
    const next = BigInt(batch.nextOffset);
    if (fresh.length === 0) {
      // Only already-archived records (a redelivery) or markers: an open object may reach past the markers.
      if (st.open && next > st.open.to) st.open.to = next;
      return;
    }
    const firstOffset = BigInt(fresh[0]!.offset);
    if (st.open && firstOffset > st.open.to) {
      // Positions skipped inside an open object are markers, unless Kafka deleted them meanwhile.
      const logStart = BigInt(await o.logStart(st.topic, st.partition));
      if (logStart > st.open.to) await close(st);
    }
    if (!st.open) {
      let from = archivedTo ?? firstOffset;
      if (firstOffset > from || archivedTo === undefined) {
        // Between the archive's end and this record: transaction markers (covered) or records Kafka's
        // retention deleted before they were archived (left as a gap, which the completeness check shows).
        const logStart = BigInt(await o.logStart(st.topic, st.partition));
        if (archivedTo === undefined) from = logStart < firstOffset ? logStart : firstOffset;
        else if (logStart > from) from = logStart < firstOffset ? logStart : firstOffset;
      }
      st.open = openAt(from, fresh[0]!);
    }
    for (const [i, m] of fresh.entries()) {
      if (!st.open) {
        // The previous object closed inside this batch: the next starts where it ended.
        if (!st.head || BigInt(st.head.to) !== BigInt(m.offset)) return; // a lost race: the records are reread
        st.open = openAt(BigInt(st.head.to), m);
      }
      const open = st.open;
      const line = archiveLine(m);
      open.pending.push(line);
      open.records += 1;
      open.bytes += line.length + 1;
      open.last = m.offset;
      const ts = BigInt(m.timestamp);
      if (ts < open.minTimestamp) open.minTimestamp = ts;
      if (ts > open.maxTimestamp) open.maxTimestamp = ts;
      const lastInBatch = i === fresh.length - 1;
      // Up to the next record: transaction markers in between belong to this object.
      open.to = lastInBatch ? next : BigInt(fresh[i + 1]!.offset);
      if (open.bytes >= o.maxObjectBytes) await close(st);
    }
    if (st.open) compress(st.open);
  };

  /** Hands the pending lines to the gzip stream (its threads compress them while the consumer reads on). */
  const compress = (open: OpenObject): void => {
    if (open.pending.length === 0) return;
    open.gzip.write(`${open.pending.join('\n')}\n`);
    open.pending = [];
  };

  /** The object's gzip bytes once its stream has compressed every line. */
  const finish = async (open: OpenObject): Promise<Buffer> => {
    compress(open);
    if (open.failed) throw open.failed; // a destroyed stream never ends
    const ended = once(open.gzip, 'end'); // rejects on a later error
    open.gzip.end();
    await ended;
    return Buffer.concat(open.compressed);
  };

  /** Frees an object that will not be written (its records are read again). */
  const discard = (open: OpenObject | undefined): void => void open?.gzip.destroy();

  const openAt = (from: bigint, m: ConsumedBatch['messages'][number]): OpenObject => {
    const gzip = createGzip();
    const open: OpenObject = {
      from,
      to: from,
      records: 0,
      bytes: 0,
      pending: [],
      gzip,
      compressed: [],
      failed: undefined,
      first: m.offset,
      last: m.offset,
      firstTimestamp: Number(m.timestamp),
      minTimestamp: BigInt(m.timestamp),
      maxTimestamp: BigInt(m.timestamp),
      openedAt: Date.now(),
    };
    gzip.on('data', (chunk: Buffer) => open.compressed.push(chunk));
    gzip.on('error', (err) => (open.failed = err));
    return open;
  };

  /** Writes the open object and commits it; on a lost race rereads from the winner's end. */
  const close = async (st: PartitionState): Promise<void> => {
    const open = st.open;
    if (!open || open.records === 0) return;
    const head = st.head === undefined ? await loadHead(st) : st.head;
    const body = await finish(open);
    const key = objectKey(st.topic, st.partition, open.first, open.last, open.firstTimestamp);
    const startedAt = Date.now();
    const { versionId } = await putArchiveObject(o.s3, o.bucket, key, body);
    maybeKill('object');
    const entry: ManifestEntry = {
      version: 1,
      topic: st.topic,
      partition: st.partition,
      seq: head ? head.seq + 1 : 0,
      from: open.from.toString(),
      to: open.to.toString(),
      firstOffset: open.first,
      lastOffset: open.last,
      records: open.records,
      key,
      versionId,
      bytes: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
      minTimestamp: open.minTimestamp.toString(),
      maxTimestamp: open.maxTimestamp.toString(),
      writtenAt: new Date().toISOString(),
      writer: o.writer,
    };
    // A writer stalled past half the grace period may find its object swept: it starts this object over.
    const stalled = Date.now() - startedAt > o.orphanGraceMs / 2;
    const outcome = stalled ? 'taken' : await putManifestEntry(o.s3, o.bucket, entry);
    if (outcome === 'taken') {
      counters.lostRaces += 1;
      await deleteVersion(o.s3, o.bucket, key, versionId).catch((err: unknown) =>
        o.log.warn('could not delete the dropped object; the sweep will', { key, error: errorMessage(err) }),
      );
      st.open = undefined;
      const winner = await loadHead(st);
      const resumeAt = winner ? winner.to : open.from.toString();
      o.log.warn('another archiver committed this seq first: rereading from its end', {
        topic: st.topic,
        partition: st.partition,
        seq: entry.seq,
        stalled,
        resumeAt,
      });
      o.consumer.seek(st.topic, st.partition, resumeAt);
      return;
    }
    maybeKill('manifest');
    st.head = entry;
    st.open = undefined;
    counters.objects += 1;
    counters.records += entry.records;
    counters.bytes += entry.bytes;
    await lockCommitted(o.s3, o.bucket, entry, o.retentionDays);
    maybeKill('lock');
    // Only now may Kafka forget these offsets. A failure (rebalanced away) is harmless: the manifest is the truth.
    await o.consumer.commitOffset(st.topic, st.partition, entry.to).catch((err: unknown) =>
      o.log.warn('offset commit after the manifest failed; the next owner rereads and skips', {
        topic: st.topic,
        partition: st.partition,
        to: entry.to,
        error: errorMessage(err),
      }),
    );
    maybeKill('commit');
  };

  const openBytes = (): number => [...states.values()].reduce((s, st) => s + (st.open?.bytes ?? 0), 0);

  const archiver: Archiver = {
    counters,
    handle: async (batch, control) => {
      const st = stateOf(batch.topic, batch.partition);
      await serially(st, () => append(st, batch));
      if (openBytes() > o.maxBufferBytes) await archiver.tick();
      // Records stay in an open object; their offsets are committed by close(), after the manifest.
      return control.owned() ? 'hold' : 'redeliver';
    },
    reset: () => {
      for (const st of states.values()) {
        void serially(st, async () => {
          discard(st.open);
          st.open = undefined;
          st.head = undefined;
        });
      }
    },
    flushAll: async () => {
      await Promise.all([...states.values()].map((st) => serially(st, () => close(st))));
    },
    tick: async () => {
      const now = Date.now();
      const due = [...states.values()].filter((st) => st.open && now - st.open.openedAt >= o.maxObjectAgeMs);
      let over = openBytes() - o.maxBufferBytes;
      for (const st of [...states.values()].sort((a, b) => (b.open?.bytes ?? 0) - (a.open?.bytes ?? 0))) {
        if (over <= 0) break;
        if (!st.open || due.includes(st)) continue;
        due.push(st);
        over -= st.open.bytes;
      }
      await Promise.all(due.map((st) => serially(st, () => close(st))));
    },
    sweep: async () => {
      let deleted = 0;
      for (const topic of new Set([...states.values()].map((st) => st.topic))) {
        const result = await sweepOrphans(o.s3, o.bucket, topic, o.orphanGraceMs);
        deleted += result.deleted.length;
        if (result.deleted.length > 0) o.log.warn('deleted orphan objects', { topic, deleted: result.deleted });
      }
      return deleted;
    },
  };
  return archiver;
}

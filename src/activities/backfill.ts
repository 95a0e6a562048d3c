import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Client } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { Pool } from 'pg';
import type { PaymentEvent } from '../contracts/payment-event';
import type { Logger } from '../logger';
import { ArchiveObjectCorrupt, getCommittedObject, listManifestRange } from '../stores/archive';
import { type FactReadFrom, unhandledKeys } from '../stores/payment-inbox';
import { type RestoredRecord, parseArchiveLines } from '../streams/archiver/layout';
import { type RoutingPolicy, routeFacts } from '../streams/payment-router';
import { replayRecord } from '../streams/replay/replay-record';
import type { ReplaySource } from '../workflows/backfill';

// The I/O of a Backfill: pages of manifested archive objects in a time range, and one object replayed
// through the router's own routeFacts (inbox by idempotency key → signalWithStart of new facts only),
// in slices that heartbeat their progress so a retry resumes where the last attempt got.

/** A manifested object: the version its manifest entry commits, and the records it holds. */
export interface ArchiveObjectRef {
  source: ReplaySource;
  topic: string;
  partition: number;
  seq: number;
  key: string;
  versionId: string | null;
  records: number;
  /** What the manifest entry commits (absent in refs listed before the check existed). */
  bytes?: number;
  sha256?: string;
}

/** Where the next listing page starts: a topic (index into the request's topics) and a manifest key. */
export interface ListCursor {
  topicIndex: number;
  startAfter: string | null;
}

export interface ListRequest {
  bucket: string;
  topics: { source: ReplaySource; topic: string }[];
  from: string;
  to: string;
  cursor: ListCursor | null;
  limit: number;
}

export interface ListPage {
  /** Objects with a record timestamp in [from, to) (by the manifest's min/max timestamp). */
  objects: ArchiveObjectRef[];
  /** null: every topic is listed. */
  next: ListCursor | null;
}

export interface ReplayCounts {
  /** Archived records in [from, to) read. */
  records: number;
  /** Records that map to a fact. */
  facts: number;
  /** Of those, facts the router had not handled yet (routed now, or in a dry run: would be). */
  newFacts: number;
  /** Records the live mapping refuses (the live edge quarantined them too); not re-published. */
  quarantined: number;
  /** Records that are no fact by design (a CDC update, a ledger_entries change). */
  skipped: number;
}

export interface ReplayRequest {
  backfillId: string;
  bucket: string;
  /** Objects in order; the slice works through as many as its time allows (small objects share one activity). */
  objects: ArchiveObjectRef[];
  /** The line (record index) of the first object to start at. */
  startLine: number;
  from: string;
  to: string;
  dryRun: boolean;
  /** Records per second at most (0 = no cap). */
  ratePerSecond: number;
  /** Return after about this long, with the position reached. */
  sliceMs: number;
}

export interface ReplaySlice {
  counts: ReplayCounts;
  /** Objects of the request finished. */
  objectsDone: number;
  /** The line reached in the first object not finished (0 when all are). */
  nextLine: number;
  busyMs: number;
  quarantineSamples: string[];
}

/** What a retried attempt resumes from (heartbeat details). */
interface Progress {
  objectsDone: number;
  nextLine: number;
  counts: ReplayCounts;
  busyMs: number;
}

export interface BackfillActivities {
  listArchivePage(request: ListRequest): Promise<ListPage>;
  replayArchiveObjects(request: ReplayRequest): Promise<ReplaySlice>;
}

export interface BackfillDeps {
  s3: S3Client;
  pool: Pool;
  client: Client;
  policy: RoutingPolicy;
  log: Logger;
  /** How far Kafka timestamps may run out of offset order in a partition (ARCHIVE_TIMESTAMP_SKEW_MS). */
  timestampSkewMs: number;
}

const inflate = promisify(gunzip);

/** Facts routed together: one inbox round trip each. */
const BATCH = 200;

export function createBackfillActivities(deps: BackfillDeps): BackfillActivities {
  return {
    async listArchivePage({ bucket, topics, from, to, cursor, limit }) {
      const range = { fromMs: Date.parse(from), toMs: Date.parse(to), skewMs: deps.timestampSkewMs };
      let at: ListCursor = cursor ?? { topicIndex: 0, startAfter: null };
      let scanned = 0;
      const objects: ArchiveObjectRef[] = [];
      // Pages until objects are found or about `limit` entries are read: the workflow's history, not this
      // call, carries a long walk.
      while (at.topicIndex < topics.length && objects.length === 0 && scanned < limit) {
        const { source, topic } = topics[at.topicIndex]!;
        const page = await listManifestRange(deps.s3, bucket, topic, range, at.startAfter, limit);
        scanned += page.scanned;
        for (const e of page.entries) {
          objects.push({
            source,
            topic: e.topic,
            partition: e.partition,
            seq: e.seq,
            key: e.key,
            versionId: e.versionId,
            records: e.records,
            bytes: e.bytes,
            sha256: e.sha256,
          });
        }
        at =
          page.next !== null ? { ...at, startAfter: page.next } : { topicIndex: at.topicIndex + 1, startAfter: null };
      }
      return { objects, next: at.topicIndex < topics.length ? at : null };
    },

    async replayArchiveObjects(request) {
      const ctx = Context.current();
      const resumed = ctx.info.heartbeatDetails as Progress | undefined;
      const fromMs = Date.parse(request.from);
      const toMs = Date.parse(request.to);
      const counts: ReplayCounts = resumed?.counts ?? { records: 0, facts: 0, newFacts: 0, quarantined: 0, skipped: 0 };
      const samples: string[] = [];
      let objectsDone = resumed?.objectsDone ?? 0;
      let line = resumed ? resumed.nextLine : request.startLine;
      const started = Date.now();
      const busyBefore = resumed?.busyMs ?? 0;
      const progress = (): Progress => ({
        objectsDone,
        nextLine: line,
        counts,
        busyMs: busyBefore + Date.now() - started,
      });
      // A batch at most a second's worth of the cap, so the cap holds within a second.
      const batchSize =
        request.ratePerSecond > 0 ? Math.max(1, Math.min(BATCH, Math.floor(request.ratePerSecond))) : BATCH;
      let paced = 0; // records read in this slice, for the rate cap
      // The next object is fetched and inflated while this one is mapped and routed (GET and gunzip wait on
      // S3 and libuv's pool, the mapping on this thread), so the two overlap.
      const load = (index: number) => {
        const loading = readArchiveRecords(deps.s3, request.bucket, request.objects[index]!);
        loading.catch(() => undefined); // a prefetch the slice never reaches must not be an unhandled rejection
        return loading;
      };
      let loading = objectsDone < request.objects.length ? load(objectsDone) : undefined;
      while (objectsDone < request.objects.length && Date.now() - started < request.sliceMs) {
        const object = request.objects[objectsDone]!;
        const records = await loading!;
        loading = objectsDone + 1 < request.objects.length ? load(objectsDone + 1) : undefined;
        // At least one batch per object reached, so a slow GET cannot starve the slice of progress.
        for (
          let first = true;
          line < records.length && (first || Date.now() - started < request.sliceMs);
          first = false
        ) {
          if (ctx.cancellationSignal.aborted) throw new CancelledFailure('backfill cancelled');
          const batch = records.slice(line, line + batchSize);
          const facts: PaymentEvent[] = [];
          const readFrom: FactReadFrom[] = [];
          for (const record of batch) {
            const at = Number(record.timestamp);
            if (at < fromMs || at >= toMs) continue;
            counts.records += 1;
            const replayed = replayRecord(object.source, record);
            if (replayed.kind === 'fact') {
              facts.push(replayed.fact);
              readFrom.push({ raw: { topic: object.topic, partition: object.partition, offset: record.offset } });
            } else if (replayed.kind === 'skip') counts.skipped += 1;
            else {
              counts.quarantined += 1;
              if (samples.length < 5)
                samples.push(`${object.topic}[${object.partition}]@${record.offset}: ${replayed.reason}`);
            }
          }
          counts.facts += facts.length;
          if (request.dryRun) {
            counts.newFacts += (await unhandledKeys(deps.pool, [...new Set(facts.map((f) => f.idempotencyKey))])).size;
          } else if (facts.length > 0) {
            const routed = await routeFacts(deps.client, deps.pool, facts, deps.policy, { log: deps.log, readFrom });
            counts.newFacts += facts.length - routed.skippedDuplicates;
          }
          line += batch.length;
          paced += batch.length;
          ctx.heartbeat(progress());
          if (request.ratePerSecond > 0) {
            // Paced after the batch, so even a slice of small objects takes its share of a second.
            const dueMs = (paced / request.ratePerSecond) * 1000 - (Date.now() - started);
            if (dueMs > 0) await ctx.sleep(dueMs); // throws CancelledFailure on cancel
          }
        }
        if (line < records.length) break; // the slice's time is up inside this object
        objectsDone += 1;
        line = 0;
        ctx.heartbeat(progress());
      }
      return { counts, objectsDone, nextLine: line, busyMs: progress().busyMs, quarantineSamples: samples };
    },
  };
}

/**
 * One archived object's records, from the version its manifest entry commits, checked against the entry's
 * size and SHA-256 and inflated on libuv's pool (a 32 MiB object inflated inline would hold up the worker's
 * workflow tasks). Bytes that are not what was archived, or do not inflate and parse, fail the backfill
 * non-retryably with the object named: a retry would read the same bytes.
 */
export async function readArchiveRecords(
  s3: S3Client,
  bucket: string,
  object: ArchiveObjectRef,
): Promise<RestoredRecord[]> {
  try {
    const body = await getCommittedObject(s3, bucket, object);
    let text: string;
    try {
      text = (await inflate(body)).toString('utf8');
    } catch (err) {
      throw new ArchiveObjectCorrupt(
        `s3://${bucket}/${object.key} (version ${object.versionId ?? 'null'}): does not inflate: ${(err as Error).message}`,
      );
    }
    try {
      return parseArchiveLines(text);
    } catch (err) {
      throw new ArchiveObjectCorrupt(
        `s3://${bucket}/${object.key} (version ${object.versionId ?? 'null'}): ${(err as Error).message}`,
      );
    }
  } catch (err) {
    if (err instanceof ArchiveObjectCorrupt) throw ApplicationFailure.nonRetryable(err.message, err.name);
    throw err;
  }
}

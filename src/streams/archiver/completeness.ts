import type { S3Client } from '@aws-sdk/client-s3';
import { listManifest } from '../../stores/archive';
import { type KafkaAdmin, type KafkaClient, type TopicSet, rawTopicsOf, readTopics } from '../kafka';
import { type OffsetRange, rangeFindings } from './layout';

// The completeness check: per topic-partition, the manifested offset ranges against Kafka's log start,
// the archiver group's committed offset and the high watermark — gaps, overlaps, and archive lag.

/** What the archiver reads: every raw topic, the facts and the quarantine. */
export const archivedTopicsOf = (t: TopicSet): string[] => [...rawTopicsOf(t), t.paymentEvents, t.quarantine];

export interface PartitionCompleteness {
  topic: string;
  partition: number;
  objects: number;
  records: number;
  /** First and after-last archived offsets ('' when nothing is archived). */
  archivedFrom: string;
  archivedTo: string;
  logStart: string;
  high: string;
  committed: string | null;
  gaps: OffsetRange[];
  overlaps: OffsetRange[];
  /** Age of the oldest record Kafka has and no manifest lists yet (0 when caught up). */
  lagSeconds: number;
}

/** The demo's line: `archive: {objects, records, gaps, overlaps, lagSeconds}`. */
export interface ArchiveSummary {
  objects: number;
  records: number;
  gaps: number;
  overlaps: number;
  lagSeconds: number;
}

export interface ArchiveCheckDeps {
  s3: S3Client;
  bucket: string;
  kafka: KafkaClient;
  group: string;
  topics: readonly string[];
  now?: () => number;
}

export async function checkArchive(deps: ArchiveCheckDeps): Promise<PartitionCompleteness[]> {
  const { s3, bucket, kafka, group, topics } = deps;
  const admin: KafkaAdmin = kafka.admin();
  await admin.connect();
  const out: PartitionCompleteness[] = [];
  try {
    const existing = new Set(await admin.listTopics());
    for (const topic of topics.filter((t) => existing.has(t))) {
      const [offsets, committed] = await Promise.all([
        admin.fetchTopicOffsets(topic),
        admin.fetchOffsets({ groupId: group, topics: [topic] }),
      ]);
      const committedBy = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, p.offset]));
      for (const p of offsets.sort((a, b) => a.partition - b.partition)) {
        const entries = await listManifest(s3, bucket, topic, p.partition);
        const c = committedBy.get(p.partition);
        const kafkaOffsets = { logStart: p.low, high: p.high, committed: c === undefined || c === '-1' ? null : c };
        const found = rangeFindings(entries, kafkaOffsets);
        out.push({
          topic,
          partition: p.partition,
          objects: entries.length,
          records: entries.reduce((s, e) => s + e.records, 0),
          archivedFrom: entries[0]?.from ?? '',
          archivedTo: found.archivedTo,
          ...kafkaOffsets,
          gaps: found.gaps,
          overlaps: found.overlaps,
          lagSeconds: 0,
        });
      }
    }
  } finally {
    await admin.disconnect();
  }
  await measureLag(kafka, out, deps.now ?? Date.now);
  return out;
}

/**
 * Lag of the partitions behind the archive: the Kafka timestamp of the first record after the archive's
 * end. A partition whose remaining positions are only transaction markers has no such record: lag 0.
 */
async function measureLag(kafka: KafkaClient, partitions: PartitionCompleteness[], now: () => number) {
  const startOf = (p: PartitionCompleteness): bigint => {
    const to = p.archivedTo === '' ? 0n : BigInt(p.archivedTo);
    return to > BigInt(p.logStart) ? to : BigInt(p.logStart);
  };
  const behind = partitions.filter((p) => startOf(p) < BigInt(p.high));
  if (behind.length === 0) return;
  const byTopic = new Map<string, { partition: number; offset: string }[]>();
  for (const p of partitions.filter((x) => behind.some((b) => b.topic === x.topic))) {
    const at = behind.includes(p) ? startOf(p).toString() : p.high;
    byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), { partition: p.partition, offset: at }]);
  }
  const pending = new Set(behind);
  const find = (topic: string, partition: number) => behind.find((b) => b.topic === topic && b.partition === partition);
  const done = await readTopics(
    kafka,
    byTopic,
    (topic, partition, message) => {
      const p = find(topic, partition);
      if (p && pending.has(p)) {
        p.lagSeconds = Math.max(0, Math.round((now() - Number(message.timestamp)) / 1000));
        pending.delete(p);
      }
      return pending.size === 0;
    },
    30_000,
    (topic, partition, next) => {
      const p = find(topic, partition);
      if (p && next >= BigInt(p.high)) pending.delete(p);
      return pending.size === 0;
    },
  );
  if (!done) throw new Error(`archive lag: could not read ${pending.size} partitions' first unarchived record in 30 s`);
}

export function summarize(partitions: readonly PartitionCompleteness[]): ArchiveSummary {
  return {
    objects: partitions.reduce((s, p) => s + p.objects, 0),
    records: partitions.reduce((s, p) => s + p.records, 0),
    gaps: partitions.reduce((s, p) => s + p.gaps.length, 0),
    overlaps: partitions.reduce((s, p) => s + p.overlaps.length, 0),
    lagSeconds: partitions.reduce((s, p) => Math.max(s, p.lagSeconds), 0),
  };
}

/** The demo's call: the whole check reduced to `{objects, records, gaps, overlaps, lagSeconds}`. */
export async function archiveSummary(deps: ArchiveCheckDeps): Promise<ArchiveSummary> {
  return summarize(await checkArchive(deps));
}

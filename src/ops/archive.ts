import { type Config, loadConfig } from '../config';
import { createLogger, errorMessage } from '../logger';
import { readBucketProtection, sweepOrphans } from '../stores/archive';
import { createS3Client } from '../stores/s3';
import { archivedTopicsOf, checkArchive, summarize } from '../streams/archiver/completeness';
import { createKafka, topicsFor } from '../streams/kafka';

// `npm run archive -- check [--json]`: the raw archive against Kafka, per topic-partition (gaps,
//   overlaps, lag) and the bucket's Object Lock and lifecycle; exit 1 on a gap or an overlap.
// `npm run archive -- sweep [--grace-ms N]`: delete orphan objects (no manifest lists them) older than
//   the grace period (ARCHIVE_ORPHAN_GRACE_MS by default).

async function check(config: Config, json: boolean): Promise<boolean> {
  const s3 = createS3Client(config);
  try {
    const partitions = await checkArchive({
      s3,
      bucket: config.S3_BUCKET,
      kafka: createKafka(config, 'paylink-archive-check'),
      group: config.ARCHIVER_GROUP,
      topics: archivedTopicsOf(topicsFor(config)),
    });
    const archive = summarize(partitions);
    const protection = await readBucketProtection(s3, config.S3_BUCKET);
    if (json) {
      process.stdout.write(
        `${JSON.stringify({ archive, bucket: config.S3_BUCKET, protection, partitions }, null, 2)}\n`,
      );
    } else {
      const rows = partitions.map((p) => ({
        partition: `${p.topic}[${p.partition}]`,
        objects: p.objects,
        records: p.records,
        archived: p.archivedTo === '' ? '-' : `${p.archivedFrom}..${p.archivedTo}`,
        kafka: `${p.logStart}..${p.high}`,
        committed: p.committed ?? '-',
        gaps: p.gaps.map((g) => `${g.from}..${g.to}`).join(' ') || '0',
        overlaps: p.overlaps.map((g) => `${g.from}..${g.to}`).join(' ') || '0',
        lagSeconds: p.lagSeconds,
      }));
      console.table(rows);
      console.log(`archive: ${JSON.stringify(archive)}`);
      console.log(
        `bucket ${config.S3_BUCKET}: object lock ${protection.objectLock ?? 'off'}, lifecycle ${JSON.stringify(protection.lifecycle)}`,
      );
    }
    return archive.gaps === 0 && archive.overlaps === 0;
  } finally {
    s3.destroy();
  }
}

async function sweep(config: Config, graceMs: number): Promise<void> {
  const s3 = createS3Client(config);
  try {
    for (const topic of archivedTopicsOf(topicsFor(config))) {
      const result = await sweepOrphans(s3, config.S3_BUCKET, topic, graceMs);
      process.stdout.write(`${JSON.stringify({ topic, ...result })}\n`);
    }
  } finally {
    s3.destroy();
  }
}

async function main(args: string[]): Promise<void> {
  const config = loadConfig();
  const [command, ...rest] = args;
  if (command === 'check') {
    const unknown = rest.filter((a) => a !== '--json');
    if (unknown.length > 0) throw new Error(`unknown option "${unknown[0]}"; check [--json]`);
    if (!(await check(config, rest.includes('--json')))) process.exitCode = 1;
  } else if (command === 'sweep') {
    const i = rest.indexOf('--grace-ms');
    const grace = i === -1 ? config.ARCHIVE_ORPHAN_GRACE_MS : Number(rest[i + 1]);
    if (!Number.isInteger(grace) || grace < 0) throw new Error('--grace-ms needs a whole number of milliseconds');
    await sweep(config, grace);
  } else {
    throw new Error(`unknown command "${command ?? ''}"; archive check [--json] | archive sweep [--grace-ms N]`);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    createLogger('archive').error('archive command failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

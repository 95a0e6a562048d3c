import { hostname } from 'node:os';
import { loadConfig } from '../../config';
import { createLogger, errorMessage } from '../../logger';
import { ensureArchiveBucket } from '../../stores/archive';
import { createS3Client } from '../../stores/s3';
import { runConsumer, runMain, untilSignal } from '../consumer-runner';
import { createConsumer, createKafka, ensureTopics, topicsFor } from '../kafka';
import { createArchiver } from './archiver';
import { archivedTopicsOf } from './completeness';

// `npm run archiver`: the raw archive's consumer (group ARCHIVER_GROUP) until SIGTERM, which closes
// every open object, commits it and leaves the group.

const log = createLogger('archiver');

runMain(log, async () => {
  const config = loadConfig();
  const topics = archivedTopicsOf(topicsFor(config));
  const kafka = createKafka(config, 'paylink-archiver');
  const admin = kafka.admin();
  const consumer = createConsumer(kafka, config.ARCHIVER_GROUP, config.KAFKA_SESSION_TIMEOUT_MS);
  const s3 = createS3Client(config);
  const timers: NodeJS.Timeout[] = [];
  try {
    await admin.connect();
    await ensureTopics(admin, config);
    const protection = await ensureArchiveBucket(s3, config.S3_BUCKET, config.ARCHIVE_RETENTION_DAYS);
    const archiver = createArchiver({
      s3,
      bucket: config.S3_BUCKET,
      consumer,
      logStart: async (topic, partition) =>
        (await admin.fetchTopicOffsets(topic)).find((p) => p.partition === partition)?.low ?? '0',
      log,
      maxObjectBytes: config.ARCHIVE_OBJECT_MAX_BYTES,
      maxObjectAgeMs: config.ARCHIVE_OBJECT_MAX_AGE_MS,
      maxBufferBytes: config.ARCHIVE_BUFFER_MAX_BYTES,
      retentionDays: config.ARCHIVE_RETENTION_DAYS,
      orphanGraceMs: config.ARCHIVE_ORPHAN_GRACE_MS,
      writer: `${hostname()}/${process.pid}`,
      killAt: config.PAYLINK_FAULT_ARCHIVER_KILL,
    });
    consumer.onJoin(() => archiver.reset());
    const every = (ms: number, what: string, work: () => Promise<unknown>): void => {
      let running = false;
      const timer = setInterval(() => {
        if (running) return;
        running = true;
        work()
          .catch((err: unknown) => log.warn(`${what} failed; next time`, { error: errorMessage(err) }))
          .finally(() => (running = false));
      }, ms);
      timers.push(timer);
    };
    every(Math.min(1_000, config.ARCHIVE_OBJECT_MAX_AGE_MS), 'closing aged objects', () => archiver.tick());
    every(config.ARCHIVE_SWEEP_INTERVAL_MS, 'the orphan sweep', () => archiver.sweep());
    await runConsumer({
      consumer,
      topics,
      handle: archiver.handle,
      log,
      dependency: 's3',
      ready: { bucket: config.S3_BUCKET, objectLock: protection.objectLock },
      // Close the open objects while still in the group, so their offsets can be committed.
      stop: untilSignal().then(() => archiver.flushAll()),
    });
    log.info('archived since start', { ...archiver.counters });
  } finally {
    timers.forEach(clearInterval);
    await consumer.disconnect();
    await admin.disconnect().catch(() => undefined);
    s3.destroy();
  }
});

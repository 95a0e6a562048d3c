import { hostname } from 'node:os';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { createS3ClaimCheckStore } from '../stores/claim-checks';
import { createS3Client } from '../stores/s3';
import { type KafkaClient, createTransactionalProducer, topicsFor } from '../streams/kafka';
import { type Publisher, createPublisher, transactionalIdFor } from '../streams/publish';

// The publish step as every edge process builds it (webhook receiver, gateway connector, ingest worker):
// a transactional producer whose id stays the same for this process slot across restarts, claim checks in
// the raw bucket, and the configured size limit (docs/edge.md, "Publishing").

/**
 * `slot` names what survives a restart of this process (a spool or cursor directory): with the host, it
 * makes the transactional id, so a restarted process fences its zombie. Two live processes must never
 * share a slot: each would fence the other's transactions.
 */
export function createEdgePublisher(
  config: Config,
  kafka: KafkaClient,
  prefix: string,
  slot: string,
  log: Logger,
  /** Default: the configured namespace's quarantine topic. */
  quarantineTopic: string = topicsFor(config).quarantine,
): Publisher & { readonly transactionalId: string } {
  const s3 = createS3Client(config);
  const transactionalId = transactionalIdFor(prefix, `${hostname()}:${slot}`);
  const publisher = createPublisher({
    createProducer: () => createTransactionalProducer(kafka, transactionalId),
    claimChecks: createS3ClaimCheckStore(s3, config.S3_BUCKET),
    quarantineTopic,
    maxRecordBytes: config.KAFKA_MAX_RECORD_BYTES,
    log,
  });
  return {
    transactionalId,
    publish: (events, options) => publisher.publish(events, options),
    counters: publisher.counters,
    async close() {
      await publisher.close();
      s3.destroy();
    },
  };
}

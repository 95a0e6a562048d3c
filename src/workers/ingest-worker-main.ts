import { resolve } from 'node:path';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig, secretSetting } from '../config';
import { parsePartnerApis } from '../contracts/partner-api';
import { tokenizerFromConfig } from '../ingest/tokenize';
import { createLogger } from '../logger';
import { createEdgePublisher } from '../ingest/edge-publisher';
import { type Vault, openVault } from '../stores/vault';
import { runMain } from '../streams/consumer-runner';
import { createKafka, topicsFor } from '../streams/kafka';
import { INGEST_TASK_QUEUE } from '../workflows/partner-poll';
import { createIngestWorker } from './ingest-worker';

// `npm run ingest-worker`: the ingest worker process (PartnerPoll workflows and their page activities).
const log = createLogger('ingest-worker');

async function main(): Promise<void> {
  const config = loadConfig();
  const partners = parsePartnerApis(secretSetting(config, 'PARTNER_APIS'));
  const tokenizer = tokenizerFromConfig(config);
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  // One ingest worker per host and data directory: its transactions fence a killed predecessor's.
  const publisher = createEdgePublisher(
    config,
    createKafka(config, 'ingest-worker'),
    'paylink-partner-poll',
    resolve(config.PAYLINK_DATA),
    log,
  );
  const topics = topicsFor(config);
  let vault: Vault | undefined;
  try {
    vault = await openVault(config);
    const faultPageDelayMs = config.PARTNER_POLL_FAULT_PAGE_DELAY_MS;
    const worker = await createIngestWorker({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      partners,
      publisher,
      topics,
      tokenizer,
      vault,
      faultPageDelayMs,
    });
    // The SDK's runtime shuts the worker down gracefully on SIGINT/SIGTERM.
    log.info('ready', {
      taskQueue: INGEST_TASK_QUEUE,
      partners: partners.map((p) => p.id),
      ...(faultPageDelayMs > 0 && { faultPageDelayMs }),
    });
    await worker.run();
  } finally {
    await publisher.close().catch(() => undefined);
    await vault?.close();
    await connection.close();
  }
}

runMain(log, main);

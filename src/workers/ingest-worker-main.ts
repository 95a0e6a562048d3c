import { NativeConnection } from '@temporalio/worker';
import { loadConfig, secretSetting } from '../config';
import { parsePartnerApis } from '../contracts/partner-api';
import { tokenizerFromConfig } from '../ingest/tokenize';
import { createLogger } from '../logger';
import { type Vault, openVault } from '../stores/vault';
import { runMain } from '../streams/consumer-runner';
import { createKafka, createProducer, topicsFor } from '../streams/kafka';
import { INGEST_TASK_QUEUE } from '../workflows/partner-poll';
import { createIngestWorker } from './ingest-worker';

// `npm run ingest-worker`: the ingest worker process (PartnerPoll workflows and their page activities).
const log = createLogger('ingest-worker');

async function main(): Promise<void> {
  const config = loadConfig();
  const partners = parsePartnerApis(secretSetting(config, 'PARTNER_APIS'));
  const tokenizer = tokenizerFromConfig(config);
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const producer = createProducer(createKafka(config, 'ingest-worker'));
  let vault: Vault | undefined;
  try {
    vault = await openVault(config);
    await producer.connect();
    const faultPageDelayMs = config.PARTNER_POLL_FAULT_PAGE_DELAY_MS;
    const worker = await createIngestWorker({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      partners,
      producer,
      topics: topicsFor(config),
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
    await producer.disconnect();
    await vault?.close();
    await connection.close();
  }
}

runMain(log, main);

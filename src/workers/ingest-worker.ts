import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createPartnerPollActivities } from '../activities/partner-poll';
import { loadConfig, secretSetting } from '../config';
import { type PartnerApiConfig, parsePartnerApis } from '../contracts/partner-api';
import { type Tokenizer, tokenizerFromConfig } from '../ingest/tokenize';
import { createLogger, errorMessage } from '../logger';
import { type Vault, openVault } from '../stores/vault';
import { type Producer, type TopicSet, createKafka, createProducer, topicsFor } from '../streams/kafka';
import { INGEST_TASK_QUEUE } from '../workflows/partner-poll';

// The ingest worker: Temporal-driven ingest paths (PartnerPoll today) on their own task queue, so a
// slow partner never competes with payment postings for worker slots.

const log = createLogger('ingest-worker');

export interface IngestWorkerDeps {
  connection: NativeConnection;
  namespace: string;
  partners: PartnerApiConfig[];
  producer: Producer;
  topics: TopicSet;
  tokenizer: Tokenizer;
  vault: Vault;
  taskQueue?: string;
  /** A prebuilt bundle (production) or, by default, bundle src/workflows at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Crash tests only (0 = off): hold each page after it was produced, before reporting it. */
  faultPageDelayMs?: number;
}

export async function createIngestWorker(deps: IngestWorkerDeps): Promise<Worker> {
  return Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue ?? INGEST_TASK_QUEUE,
    ...(deps.workflowBundle
      ? { workflowBundle: deps.workflowBundle }
      : { workflowsPath: require.resolve('../workflows') }),
    activities: {
      ...createPartnerPollActivities({
        partners: deps.partners,
        producer: deps.producer,
        topics: deps.topics,
        tokenizer: deps.tokenizer,
        vault: deps.vault,
        log,
        faultPageDelayMs: deps.faultPageDelayMs,
      }),
    },
  });
}

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

if (require.main === module) {
  main().catch((err: unknown) => {
    log.error('worker failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createPartnerPollActivities } from '../ingest/partner-api/poll-activities';
import type { PartnerApiConfig } from '../contracts/partner-api';
import type { Tokenizer } from '../ingest/tokenize';
import { createLogger } from '../logger';
import type { Vault } from '../stores/vault';
import type { TopicSet } from '../streams/kafka';
import type { Publisher } from '../streams/publish';
import { INGEST_TASK_QUEUE } from '../workflows/partner-poll';
import { workflowCode } from './workflow-code';

// The ingest worker: Temporal-driven ingest paths (PartnerPoll today) on their own task queue, so a
// slow partner never competes with payment postings for worker slots. The process: ingest-worker-main.ts.

const log = createLogger('ingest-worker');

export interface IngestWorkerDeps {
  connection: NativeConnection;
  namespace: string;
  partners: PartnerApiConfig[];
  publisher: Pick<Publisher, 'publish'>;
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
    ...workflowCode(deps.workflowBundle),
    activities: {
      ...createPartnerPollActivities({
        partners: deps.partners,
        publisher: deps.publisher,
        topics: deps.topics,
        tokenizer: deps.tokenizer,
        vault: deps.vault,
        log,
        faultPageDelayMs: deps.faultPageDelayMs,
      }),
    },
  });
}

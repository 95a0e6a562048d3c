import { Client, Connection, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { type Config, loadConfig, secretSetting } from '../config';
import { parsePartnerApis } from '../contracts/partner-api';
import { createLogger, errorMessage } from '../logger';
import {
  INGEST_TASK_QUEUE,
  type PartnerPollInput,
  type PartnerPollState,
  partnerPollStateQuery,
  partnerPollWorkflow,
  partnerPollWorkflowId,
} from '../workflows/partner-poll';

// `npm run partner-poll`: starts one PartnerPoll per partner in PARTNER_APIS (a running one is left
// as it is: its cursor is the truth) and prints each one's state.

const log = createLogger('partner-poll');

export type PartnerPollSettings = Omit<PartnerPollInput, 'partnerId' | 'carried'>;

export function partnerPollSettings(config: Config): PartnerPollSettings {
  return {
    pageLimit: config.PARTNER_POLL_PAGE_LIMIT,
    idleMs: config.PARTNER_POLL_IDLE_MS,
    pagesBeforeContinue: config.PARTNER_POLL_PAGES_BEFORE_CONTINUE,
    historyEventsBeforeContinue: config.PARTNER_POLL_HISTORY_EVENTS_BEFORE_CONTINUE,
    pageTimeoutMs: config.PARTNER_POLL_PAGE_TIMEOUT_MS,
  };
}

/** Starts the partner's poll unless one is running; answers whether this call started it. */
export async function ensurePartnerPoll(
  client: Client,
  partnerId: string,
  settings: PartnerPollSettings,
): Promise<{ workflowId: string; started: boolean }> {
  const workflowId = partnerPollWorkflowId(partnerId);
  try {
    await client.workflow.start(partnerPollWorkflow, {
      taskQueue: INGEST_TASK_QUEUE,
      workflowId,
      args: [{ partnerId, ...settings }],
    });
    return { workflowId, started: true };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { workflowId, started: false };
    throw err;
  }
}

export async function partnerPollState(client: Client, partnerId: string): Promise<PartnerPollState> {
  return client.workflow.getHandle(partnerPollWorkflowId(partnerId)).query(partnerPollStateQuery);
}

async function main(): Promise<void> {
  const config = loadConfig();
  const partners = parsePartnerApis(secretSetting(config, 'PARTNER_APIS'));
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    const settings = partnerPollSettings(config);
    for (const partner of partners) {
      const { workflowId, started } = await ensurePartnerPoll(client, partner.id, settings);
      // The first query waits for a worker: say so instead of hanging silently.
      const state = await Promise.race([
        partnerPollState(client, partner.id),
        new Promise<string>((resolve) =>
          setTimeout(() => resolve('no answer within 10 s: is `npm run ingest-worker` running?'), 10_000).unref(),
        ),
      ]);
      const ui = `${config.TEMPORAL_UI_URL}/namespaces/${config.TEMPORAL_NAMESPACE}/workflows/${encodeURIComponent(workflowId)}`;
      process.stdout.write(`${JSON.stringify({ partner: partner.id, workflowId, started, ui, state }, null, 2)}\n`);
    }
  } finally {
    await connection.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    log.error('partner-poll failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

import { hostname, userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { Client, Connection, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { type Config, loadConfig, secretSetting } from '../config';
import { parsePartnerApis } from '../contracts/partner-api';
import { createLogger, errorMessage } from '../logger';
import {
  type CursorReset,
  INGEST_TASK_QUEUE,
  type PartnerPollInput,
  type PartnerPollState,
  partnerPollNowSignal,
  partnerPollPauseSignal,
  partnerPollResetCursorSignal,
  partnerPollStateQuery,
  partnerPollWorkflow,
  partnerPollWorkflowId,
} from '../workflows/partner-poll';

// `npm run partner-poll`: starts one PartnerPoll per partner in PARTNER_APIS (a running one is left
// as it is: its cursor is the truth) and prints each one's state. With a command, it sends that
// partner's poll one of the ops signals of docs/partner-poll.md and prints its state.

const log = createLogger('partner-poll');

const USAGE = `usage: npm run partner-poll [-- <command> <partnerId>]
  (no command)                                start a poll per partner in PARTNER_APIS unless running; print each state
  now <partnerId>                             poll now instead of at the end of the idle wait
  pause <partnerId>                           stop after the page in flight (no timer, no actions while paused)
  resume <partnerId>                          go on polling
  reset-cursor <partnerId> --cursor C --reason R [--actor A]
                                              move the cursor between pages ("" = the start of the feed)`;

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

/** Ends the idle wait: the poll reads its next page now. */
export async function pollPartnerNow(client: Client, partnerId: string): Promise<void> {
  await client.workflow.getHandle(partnerPollWorkflowId(partnerId)).signal(partnerPollNowSignal);
}

/** true: stop after the page in flight; false: go on. */
export async function pausePartnerPoll(client: Client, partnerId: string, paused: boolean): Promise<void> {
  await client.workflow.getHandle(partnerPollWorkflowId(partnerId)).signal(partnerPollPauseSignal, paused);
}

/** Back re-ingests (harmless by keys); forward skips records, on ops' word only. Applied between pages. */
export async function resetPartnerPollCursor(client: Client, partnerId: string, reset: CursorReset): Promise<void> {
  if (!reset.actor.trim() || !reset.reason.trim()) throw new Error('a cursor reset needs an actor and a reason');
  await client.workflow.getHandle(partnerPollWorkflowId(partnerId)).signal(partnerPollResetCursorSignal, reset);
}

/** The poll's state, or why there is none yet: a query waits for a worker, so say so instead of hanging. */
function stateOrHint(client: Client, partnerId: string): Promise<PartnerPollState | string> {
  return Promise.race([
    client.workflow.getHandle(partnerPollWorkflowId(partnerId)).query(partnerPollStateQuery),
    new Promise<string>((resolve) =>
      setTimeout(() => resolve('no answer within 10 s: is `npm run ingest-worker` running?'), 10_000).unref(),
    ),
  ]);
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      cursor: { type: 'string' },
      reason: { type: 'string' },
      actor: { type: 'string', default: `${userInfo().username}@${hostname()}` },
    },
  });
  const [command, partnerId] = positionals;
  const config = loadConfig();
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    const print = (value: unknown): void => void process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    if (command === undefined) {
      const partners = parsePartnerApis(secretSetting(config, 'PARTNER_APIS'));
      const settings = partnerPollSettings(config);
      for (const partner of partners) {
        const { workflowId, started } = await ensurePartnerPoll(client, partner.id, settings);
        const state = await stateOrHint(client, partner.id);
        const ui = `${config.TEMPORAL_UI_URL}/namespaces/${config.TEMPORAL_NAMESPACE}/workflows/${encodeURIComponent(workflowId)}`;
        print({ partner: partner.id, workflowId, started, ui, state });
      }
      return;
    }
    if (partnerId === undefined) throw new Error(`${command}: which partner?\n${USAGE}`);
    switch (command) {
      case 'now':
        await pollPartnerNow(client, partnerId);
        break;
      case 'pause':
      case 'resume':
        await pausePartnerPoll(client, partnerId, command === 'pause');
        break;
      case 'reset-cursor': {
        if (values.cursor === undefined)
          throw new Error(`reset-cursor needs --cursor ("" = the start of the feed)\n${USAGE}`);
        await resetPartnerPollCursor(client, partnerId, {
          cursor: values.cursor,
          actor: values.actor ?? '',
          reason: values.reason ?? '',
        });
        break;
      }
      default:
        throw new Error(`unknown command "${command}"\n${USAGE}`);
    }
    print({ partner: partnerId, signalled: command, state: await stateOrHint(client, partnerId) });
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

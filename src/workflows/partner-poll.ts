import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { PartnerPollActivities } from '../ingest/partner-api/poll-activities';

// One PartnerPoll per partner (id partner-poll/<partnerId>): the single reader of that partner's
// settlement feed. Its cursor lives only in workflow state and moves only from a completed page,
// so restarts neither skip nor lose pages; a page whose result was lost is produced again with the
// same idempotency keys (harmless downstream, docs/partner-poll.md). Billable actions: one activity
// per page, plus one timer per idle wait (docs/partner-poll.md).

export const INGEST_TASK_QUEUE = 'paylink-ingest';

export const partnerPollWorkflowId = (partnerId: string): string => `partner-poll/${partnerId}`;

export interface PartnerPollInput {
  partnerId: string;
  pageLimit: number;
  /** Caught up: wait this long before polling again. */
  idleMs: number;
  /** Continue-as-new after this many pages in one run. */
  pagesBeforeContinue: number;
  /** …or once the run's history has more events than this. */
  historyEventsBeforeContinue: number;
  /** Start-to-close timeout of one page; a killed worker's page is retried after it. */
  pageTimeoutMs: number;
  /** Continue-as-new carries the state (and any ops request not applied yet). */
  carried?: { state: PartnerPollState; cursorReset?: CursorReset };
}

export interface PartnerPollState {
  partnerId: string;
  /** Where the next page starts (opaque, the partner's); '' = the start of the feed. */
  cursor: string;
  pages: number;
  records: number;
  quarantined: number;
  /** Runs of this workflow id so far (continue-as-new starts the next). */
  runs: number;
  pagesThisRun: number;
  /** The last page said has_more = false. */
  caughtUp: boolean;
  paused: boolean;
  lastCursorReset?: CursorReset;
}

export interface CursorReset {
  cursor: string;
  actor: string;
  reason: string;
}

export const partnerPollStateQuery = defineQuery<PartnerPollState>('partnerPollState');
/** Poll now instead of at the end of the idle wait (e.g. after the partner announced a batch). */
export const partnerPollNowSignal = defineSignal('partnerPollNow');
/** true = stop after the page in flight; false = resume. */
export const partnerPollPauseSignal = defineSignal<[boolean]>('partnerPollPause');
/** Move the cursor (back = re-ingest, harmless by keys; forward = skip, on ops' word only). */
export const partnerPollResetCursorSignal = defineSignal<[CursorReset]>('partnerPollResetCursor');

export async function partnerPollWorkflow(input: PartnerPollInput): Promise<void> {
  const { pollPartnerPage } = proxyActivities<PartnerPollActivities>({
    startToCloseTimeout: input.pageTimeoutMs,
    // Rate limits retry on the partner's Retry-After (the activity sets nextRetryDelay); the rest back off.
    // Capped at 10 s: a page waiting on the vault (Postgres) resumes within seconds of its return.
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '10 seconds' },
  });
  const state: PartnerPollState = input.carried
    ? { ...input.carried.state, pagesThisRun: 0 }
    : {
        partnerId: input.partnerId,
        cursor: '',
        pages: 0,
        records: 0,
        quarantined: 0,
        runs: 1,
        pagesThisRun: 0,
        caughtUp: false,
        paused: false,
      };
  let cursorReset = input.carried?.cursorReset;
  let pollNow = false;

  setHandler(partnerPollStateQuery, () => state);
  setHandler(partnerPollNowSignal, () => {
    pollNow = true;
  });
  setHandler(partnerPollPauseSignal, (paused) => {
    state.paused = paused;
  });
  setHandler(partnerPollResetCursorSignal, (reset) => {
    cursorReset = reset; // applied between pages, never under a page in flight
  });

  for (;;) {
    await condition(() => !state.paused); // paused: no timer, no action until resumed
    if (cursorReset) {
      state.cursor = cursorReset.cursor;
      state.lastCursorReset = cursorReset;
      cursorReset = undefined;
    }
    const page = await pollPartnerPage({ partnerId: input.partnerId, cursor: state.cursor, limit: input.pageLimit });
    state.cursor = page.nextCursor;
    state.pages += 1;
    state.pagesThisRun += 1;
    state.records += page.received;
    state.quarantined += page.quarantined;
    state.caughtUp = !page.hasMore;

    const info = workflowInfo();
    if (
      state.pagesThisRun >= input.pagesBeforeContinue ||
      info.continueAsNewSuggested ||
      info.historyLength > input.historyEventsBeforeContinue
    ) {
      return continueAsNew<typeof partnerPollWorkflow>({
        ...input,
        carried: { state: { ...state, runs: state.runs + 1 }, cursorReset },
      });
    }
    if (page.hasMore) continue;
    pollNow = false;
    await condition(() => pollNow || state.paused || cursorReset !== undefined, input.idleMs);
  }
}

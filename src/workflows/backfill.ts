import {
  type ActivityOptions,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ArchiveObjectRef, BackfillActivities, ListCursor, ReplayCounts } from '../activities/backfill';
import { PAYMENT_TASK_QUEUE } from './payment';
import { BackfillStatusAttr } from './search-attributes';

// One Backfill per request (id backfill/<id>): replays the raw archive's manifested objects of some
// sources over [from, to) through the router's own path (inbox by idempotency key, then signalWithStart
// only for facts never handled), so nothing posts twice. First it surveys the manifests (total objects
// and records for progress), then replays object by object in time slices; its position lives only in
// workflow state and moves only from a completed slice. Replay never publishes to Kafka (docs/archive.md).

/** On the payment worker: the router's dependencies (Postgres, Temporal client) are there. */
export const BACKFILL_TASK_QUEUE = PAYMENT_TASK_QUEUE;

export const backfillWorkflowId = (id: string): string => `backfill/${id}`;

/** The sources a backfill can read (src/streams/replay/replay-record.ts maps each to its raw topics). */
export const REPLAY_SOURCES = ['webhooks', 'gateways', 'partner', 'cdc'] as const;
export type ReplaySource = (typeof REPLAY_SOURCES)[number];

export interface BackfillInput {
  id: string;
  /** Kafka record timestamps in [from, to), ISO 8601. */
  from: string;
  to: string;
  sources: ReplaySource[];
  /** The archived topics of those sources (resolved by the starter from its config's topic namespace). */
  topics: { source: ReplaySource; topic: string }[];
  /** The archive bucket (the starter's S3_BUCKET), so any payment worker can serve any archive. */
  bucket: string;
  /** Count what would be routed; write nothing. */
  dryRun: boolean;
  /** Records per second at most (0 = no cap); enforced inside the replay activity. */
  ratePerSecond: number;
  /** Manifest entries per listing page. */
  pageSize: number;
  /** One replay activity runs at most this long, so pause and progress are never further away. */
  sliceMs: number;
  /** Continue-as-new after this many slices in one run. */
  slicesBeforeContinue: number;
  carried?: { state: BackfillState; position: Position; survey?: Survey };
}

/** Objects handed to one replay activity (small objects share one; a slice's time bounds the work). */
const OBJECTS_PER_SLICE = 50;

export const BACKFILL_DEFAULTS = { pageSize: 200, sliceMs: 10_000, slicesBeforeContinue: 500 } as const;

/** Where a run is: listing pages (survey, then replay), the page's objects left, the line inside the first. */
interface Position {
  cursor: ListCursor | null;
  page: ArchiveObjectRef[];
  line: number;
}

/** The survey so far: where its listing is and what it counted. */
interface Survey {
  cursor: ListCursor | null;
  objects: number;
  records: number;
}

export type BackfillPhase = 'surveying' | 'replaying' | 'done';

export interface BackfillState extends ReplayCounts {
  id: string;
  from: string;
  to: string;
  sources: ReplaySource[];
  dryRun: boolean;
  phase: BackfillPhase;
  paused: boolean;
  objectsDone: number;
  /** Objects in range; known once the survey is done (null before). */
  objectsTotal: number | null;
  /** Records in the objects in range (objects may hold a few records outside it); null before the survey ends. */
  recordsTotal: number | null;
  /** Time spent inside replay activities. */
  busyMs: number;
  /** Wall time since the start, paused time excluded (what the rate and an ETA go by). */
  activeMs: number;
  /** Records per second over activeMs: listing, scheduling and every object's overhead included. */
  recordsPerSecond: number;
  /** The first quarantine reasons met (at most 5). */
  quarantineSamples: string[];
  runs: number;
  /** Activities of this run (survey pages and replay slices); continue-as-new after slicesBeforeContinue. */
  slicesThisRun: number;
}

export const backfillStatusQuery = defineQuery<BackfillState>('backfillStatus');
/** true = stop after the slice in flight; false = resume. */
export const backfillPauseSignal = defineSignal<[boolean]>('backfillPause');

const ZERO: ReplayCounts = { records: 0, facts: 0, newFacts: 0, quarantined: 0, skipped: 0 };

/** Counts of a slice added to the totals (pure). */
export function addCounts(total: ReplayCounts, slice: ReplayCounts): ReplayCounts {
  return {
    records: total.records + slice.records,
    facts: total.facts + slice.facts,
    newFacts: total.newFacts + slice.newFacts,
    quarantined: total.quarantined + slice.quarantined,
    skipped: total.skipped + slice.skipped,
  };
}

/** Records per second over `ms`, to one decimal. */
export const rateOf = (records: number, ms: number): number => (ms <= 0 ? 0 : Math.round((records * 10_000) / ms) / 10);

const statusAttr = (s: BackfillState): string =>
  s.phase === 'done' ? 'DONE' : s.paused ? 'PAUSED' : s.phase === 'surveying' ? 'SURVEYING' : 'RUNNING';

export async function backfillWorkflow(input: BackfillInput): Promise<BackfillState> {
  const retry: ActivityOptions['retry'] = { initialInterval: '1 second', maximumInterval: '10 seconds' };
  const { listArchivePage } = proxyActivities<BackfillActivities>({ startToCloseTimeout: '2 minutes', retry });
  const { replayArchiveObjects } = proxyActivities<BackfillActivities>({
    // A slice plus what a rate cap or an outage waited (the router waits Postgres/Temporal out in place).
    startToCloseTimeout: input.sliceMs + 10 * 60_000,
    // Heartbeats carry progress (a retry resumes there) and deliver cancellation.
    heartbeatTimeout: '30 seconds',
    retry,
  });
  const state: BackfillState = input.carried
    ? { ...input.carried.state, slicesThisRun: 0 }
    : {
        id: input.id,
        from: input.from,
        to: input.to,
        sources: input.sources,
        dryRun: input.dryRun,
        phase: 'surveying',
        paused: false,
        objectsDone: 0,
        objectsTotal: null,
        recordsTotal: null,
        busyMs: 0,
        activeMs: 0,
        recordsPerSecond: 0,
        quarantineSamples: [],
        runs: 1,
        slicesThisRun: 0,
        ...ZERO,
      };
  const position: Position = input.carried?.position ?? { cursor: null, page: [], line: 0 };
  let attribute = statusAttr(state);
  // Workflow time (deterministic: the workflow task's); paused time does not count towards the rate.
  let activeSince: number | undefined = state.paused ? undefined : Date.now();
  const tick = (): void => {
    if (activeSince !== undefined) state.activeMs += Date.now() - activeSince;
    activeSince = state.paused ? undefined : Date.now();
    state.recordsPerSecond = rateOf(state.records, state.activeMs);
  };
  const showStatus = (): void => {
    const wanted = statusAttr(state);
    if (wanted === attribute) return;
    upsertSearchAttributes([{ key: BackfillStatusAttr, value: wanted }]);
    attribute = wanted;
  };

  setHandler(backfillStatusQuery, () => state);
  setHandler(backfillPauseSignal, (paused) => {
    tick();
    state.paused = paused;
    activeSince = paused ? undefined : Date.now();
    showStatus();
  });
  const list = (cursor: ListCursor | null) =>
    listArchivePage({
      bucket: input.bucket,
      topics: input.topics,
      from: input.from,
      to: input.to,
      cursor,
      limit: input.pageSize,
    });

  try {
    if (state.phase === 'surveying') {
      const survey: Survey = input.carried?.survey ?? { cursor: null, objects: 0, records: 0 };
      do {
        const page = await list(survey.cursor);
        survey.objects += page.objects.length;
        survey.records += page.objects.reduce((n, o) => n + o.records, 0);
        survey.cursor = page.next;
        state.slicesThisRun += 1;
        if (
          survey.cursor !== null &&
          (state.slicesThisRun >= input.slicesBeforeContinue || workflowInfo().continueAsNewSuggested)
        ) {
          tick();
          return await continueAsNew<typeof backfillWorkflow>({
            ...input,
            carried: { state: { ...state, runs: state.runs + 1 }, position, survey },
          });
        }
      } while (survey.cursor !== null);
      state.objectsTotal = survey.objects;
      state.recordsTotal = survey.records;
      state.phase = 'replaying';
      showStatus();
    }
    while (state.phase === 'replaying') {
      if (position.page.length === 0) {
        if (position.cursor === null && state.objectsDone > 0) break; // the last page is done
        const page = await list(position.cursor);
        position.page = page.objects;
        position.line = 0;
        if (page.next === null && page.objects.length === 0) break;
        position.cursor = page.next;
        if (position.page.length === 0) continue;
      }
      await condition(() => !state.paused); // paused: no activity, no action until resumed
      const slice = await replayArchiveObjects({
        backfillId: input.id,
        bucket: input.bucket,
        objects: position.page.slice(0, OBJECTS_PER_SLICE),
        startLine: position.line,
        from: input.from,
        to: input.to,
        dryRun: input.dryRun,
        ratePerSecond: input.ratePerSecond,
        sliceMs: input.sliceMs,
      });
      Object.assign(state, addCounts(state, slice.counts));
      state.busyMs += slice.busyMs;
      tick();
      for (const reason of slice.quarantineSamples) {
        if (state.quarantineSamples.length < 5) state.quarantineSamples.push(reason);
      }
      state.slicesThisRun += 1;
      position.page.splice(0, slice.objectsDone);
      state.objectsDone += slice.objectsDone;
      position.line = slice.nextLine;
      if (position.page.length === 0 && position.cursor === null) break;
      const info = workflowInfo();
      if (state.slicesThisRun >= input.slicesBeforeContinue || info.continueAsNewSuggested) {
        tick();
        return await continueAsNew<typeof backfillWorkflow>({
          ...input,
          carried: { state: { ...state, runs: state.runs + 1 }, position },
        });
      }
    }
    tick();
    state.phase = 'done';
    showStatus();
    return state;
  } catch (err) {
    // Cancelled (npm run replay -- cancel): the Web UI finds it as CANCELLED, with the counts so far.
    if (isCancellation(err)) upsertSearchAttributes([{ key: BackfillStatusAttr, value: 'CANCELLED' }]);
    throw err;
  }
}

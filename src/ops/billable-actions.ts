import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

// Temporal Cloud billable actions per workflow execution, counted from its real event history.
// Rules: https://docs.temporal.io/evaluate/cloud/actions (per-category table "History Event Type"),
// cross-checked with the Cloud UI's per-event "Billable Actions" column (getEventBillableActions in
// github.com/temporalio/ui). Kinds use Cloud's metric names.

type History = temporal.api.history.v1.IHistory;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
type ProtoInt = NonNullable<HistoryEvent['eventId']> | number;
type ProtoTimestamp = NonNullable<HistoryEvent['eventTime']>;

const EventType = temporal.api.enums.v1.EventType;

export type ActionKind =
  | 'start_workflow'
  | 'signal_workflow_with_start'
  | 'schedule_workflow'
  | 'signal_workflow'
  | 'signal_external_workflow'
  | 'schedule_activity'
  | 'retry_activity'
  | 'record_activity_markers'
  | 'retry_activity_local'
  | 'start_timer'
  | 'upsert_workflow_search_attributes'
  | 'start_child_workflow'
  | 'accept_workflow_update'
  | 'update_workflow_options'
  | 'reset_workflow'
  | 'schedule_nexus_operation'
  | 'request_nexus_operation_cancellation'
  | 'query_workflow';

export interface ActionCount {
  total: number;
  /** Only kinds that occurred; keys are ActionKind (Cloud's metric names). */
  byKind: Record<string, number>;
}

export interface CountOptions {
  /** Queries are billed but never written to history: pass how many were sent to include them. */
  queries?: number;
  /**
   * A signal from one workflow to another is one action. Cloud's UI shows it on the signaled history
   * ('receiver', default); 'sender' counts SignalExternalWorkflowExecutionInitiated instead. Either way once.
   */
  externalSignals?: 'receiver' | 'sender';
}

// Cloud's UI caps Local Activity retries billed per workflow task at 100.
const LOCAL_ACTIVITY_RETRY_CAP = 100;
// Markers that record patches/versions, not activities: the Cloud UI bills them 0.
const NON_BILLABLE_MARKERS = new Set(['core_patch', 'Version']);
// The versioning search attribute is exempt from upsert billing (Cloud actions page).
const CHANGE_VERSION_ATTRIBUTE = 'TemporalChangeVersion';
// signalWithStart writes Started and Signaled in one request; a later, separate signal is further apart.
const SAME_REQUEST_MS = 100;

function num(value: ProtoInt | null | undefined): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

function millis(ts: ProtoTimestamp | null | undefined): number {
  return num(ts?.seconds) * 1000 + (ts?.nanos ?? 0) / 1e6;
}

/**
 * True when `signaled` is the signal delivered by the same signalWithStart request that wrote `started`:
 * it is the very next event, the run was started by a client (not continue-as-new, retry, cron or a parent),
 * and, when a start delay lets a separate signal land before the first workflow task, it came from the same
 * caller within the same request's time window.
 */
function isSignalWithStartSignal(started: HistoryEvent, signaled: HistoryEvent): boolean {
  const attrs = started.workflowExecutionStartedEventAttributes;
  if (!attrs || num(signaled.eventId) !== num(started.eventId) + 1) return false;
  if (attrs.continuedExecutionRunId || attrs.parentWorkflowExecution) return false;
  const backoffMs = millis(attrs.firstWorkflowTaskBackoff);
  // Without a start delay, a plain start writes WorkflowTaskScheduled right after Started, atomically.
  if (backoffMs === 0) return true;
  const signal = signaled.workflowExecutionSignaledEventAttributes;
  return (
    signal?.identity === attrs.identity &&
    Math.abs(millis(signaled.eventTime) - millis(started.eventTime)) <= SAME_REQUEST_MS
  );
}

function isResetEvent(event: HistoryEvent): boolean {
  return (
    event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED &&
    event.workflowTaskFailedEventAttributes?.cause ===
      temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW
  );
}

/** Billable actions of one run, from its history. Pure: no I/O. */
export function countBillableActions(history: History, options: CountOptions = {}): ActionCount {
  const byKind: Record<string, number> = {};
  const add = (kind: ActionKind, n = 1): void => {
    if (n > 0) byKind[kind] = (byKind[kind] ?? 0) + n;
  };
  const events = history.events ?? [];
  const externalSignals = options.externalSignals ?? 'receiver';

  // After a reset, the copied events before the reset point were billed on the original run.
  let firstBilledIndex = 0;
  events.forEach((e, i) => {
    if (isResetEvent(e)) firstBilledIndex = i;
  });

  let started: HistoryEvent | undefined;
  let startedBySignalWithStart = false;
  let lastWorkflowTaskCompletedId = 0;
  const workflowTasksWithMarkers = new Set<number>();

  for (const [i, event] of events.entries()) {
    if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED) started = event;
    if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) {
      lastWorkflowTaskCompletedId = num(event.eventId);
    }
    if (i < firstBilledIndex) continue;

    switch (event.eventType) {
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: {
        const attrs = event.workflowExecutionStartedEventAttributes;
        // A workflow-retry run is not billed again by the Cloud UI.
        if ((attrs?.attempt ?? 1) > 1) break;
        const next = events[i + 1];
        startedBySignalWithStart =
          next?.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED && isSignalWithStartSignal(event, next);
        add(startedBySignalWithStart ? 'signal_workflow_with_start' : 'start_workflow');
        // A schedule's first run also bills the schedule's own two actions.
        const scheduled = attrs?.searchAttributes?.indexedFields?.TemporalScheduledById;
        if (scheduled && attrs?.firstExecutionRunId === attrs?.originalExecutionRunId) add('schedule_workflow', 2);
        break;
      }
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: {
        if (startedBySignalWithStart && started && num(event.eventId) === num(started.eventId) + 1) break;
        const fromWorkflow = Boolean(event.workflowExecutionSignaledEventAttributes?.externalWorkflowExecution);
        if (fromWorkflow && externalSignals === 'sender') break;
        add(fromWorkflow ? 'signal_external_workflow' : 'signal_workflow');
        break;
      }
      case EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
        if (externalSignals === 'sender') add('signal_external_workflow');
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        add('schedule_activity');
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        // Only the last attempt writes a Started event; its attempt number counts the retries before it.
        add('retry_activity', (event.activityTaskStartedEventAttributes?.attempt ?? 1) - 1);
        break;
      case EventType.EVENT_TYPE_MARKER_RECORDED: {
        const marker = event.markerRecordedEventAttributes;
        if (NON_BILLABLE_MARKERS.has(marker?.markerName ?? '')) break;
        // All markers (local activities) completed by one workflow task are a single action.
        const task = num(marker?.workflowTaskCompletedEventId) || lastWorkflowTaskCompletedId;
        if (workflowTasksWithMarkers.has(task)) break;
        workflowTasksWithMarkers.add(task);
        add('record_activity_markers');
        break;
      }
      case EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: {
        const retries =
          event.workflowTaskCompletedEventAttributes?.meteringMetadata?.nonfirstLocalActivityExecutionAttempts;
        add('retry_activity_local', Math.min(retries ?? 0, LOCAL_ACTIVITY_RETRY_CAP));
        break;
      }
      case EventType.EVENT_TYPE_TIMER_STARTED:
        add('start_timer');
        break;
      case EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: {
        const fields = Object.keys(
          event.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields ?? {},
        );
        if (fields.length === 1 && fields[0] === CHANGE_VERSION_ATTRIBUTE) break;
        add('upsert_workflow_search_attributes');
        break;
      }
      case EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
        // The intent; the child's own WorkflowExecutionStarted (in its history) is the second of Cloud's two.
        add('start_child_workflow');
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        add('accept_workflow_update');
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED:
        add('update_workflow_options');
        break;
      case EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
        if (isResetEvent(event)) add('reset_workflow');
        break;
      case EventType.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED:
        add('schedule_nexus_operation');
        break;
      case EventType.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED:
        add('request_nexus_operation_cancellation');
        break;
      // Not billed: WorkflowExecutionContinuedAsNew (the new run's Started is), WorkflowPropertiesModified
      // (memo upserts), completions, workflow-task and activity lifecycle events.
      default:
        break;
    }
  }

  add('query_workflow', options.queries ?? 0);
  return { total: Object.values(byKind).reduce((s, n) => s + n, 0), byKind };
}

export function sumActionCounts(counts: ActionCount[]): ActionCount {
  const byKind: Record<string, number> = {};
  let total = 0;
  for (const c of counts) {
    total += c.total;
    for (const [kind, n] of Object.entries(c.byKind)) byKind[kind] = (byKind[kind] ?? 0) + n;
  }
  return { total, byKind };
}

export async function fetchHistory(client: Client, workflowId: string, runId?: string): Promise<History> {
  return client.workflow.getHandle(workflowId, runId).fetchHistory();
}

export interface WorkflowActionCount extends ActionCount {
  workflowId: string;
  runIds: string[];
}

export interface WorkflowsActionCount extends ActionCount {
  workflows: number;
  runs: number;
  perWorkflow: WorkflowActionCount[];
}

function visibilityString(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

async function runIdsOf(client: Client, workflowId: string): Promise<string[]> {
  const runIds = new Set<string>();
  for await (const run of client.workflow.list({ query: `WorkflowId = ${visibilityString(workflowId)}` })) {
    runIds.add(run.runId);
  }
  // Visibility is eventually consistent: describe always knows the latest run (and throws if there is none).
  runIds.add((await client.workflow.getHandle(workflowId).describe()).runId);
  return [...runIds];
}

/**
 * Billable actions summed over every run (continue-as-new, retries, resets, id reuse) of each workflow id.
 * Count closed workflows: an activity attempt still in flight has no history event yet.
 */
export async function countActionsForWorkflows(
  client: Client,
  workflowIds: string[],
  options: CountOptions = {},
): Promise<WorkflowsActionCount> {
  const perWorkflow: WorkflowActionCount[] = [];
  const historyOptions = { externalSignals: options.externalSignals };
  for (const workflowId of workflowIds) {
    const runIds = await runIdsOf(client, workflowId);
    const counts: ActionCount[] = [];
    for (const runId of runIds) {
      counts.push(countBillableActions(await fetchHistory(client, workflowId, runId), historyOptions));
    }
    perWorkflow.push({ workflowId, runIds, ...sumActionCounts(counts) });
  }
  const queries: ActionCount = options.queries
    ? { total: options.queries, byKind: { query_workflow: options.queries } }
    : { total: 0, byKind: {} };
  return {
    ...sumActionCounts([...perWorkflow, queries]),
    workflows: workflowIds.length,
    runs: perWorkflow.reduce((s, w) => s + w.runIds.length, 0),
    perWorkflow,
  };
}

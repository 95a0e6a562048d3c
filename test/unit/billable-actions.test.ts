import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { temporal } from '@temporalio/proto';
import { countBillableActions, sumActionCounts } from '../../src/ops/billable-actions';

const T = temporal.api.enums.v1.EventType;
type EventSpec = { eventType: temporal.api.enums.v1.EventType } & Record<string, unknown>;

// Event ids count from 1 and times advance 1 ms per event unless a spec sets its own.
function history(...specs: EventSpec[]): temporal.api.history.v1.History {
  return temporal.api.history.v1.History.fromObject({
    events: specs.map((spec, i) => ({ eventId: i + 1, eventTime: { seconds: 1_000, nanos: i * 1_000_000 }, ...spec })),
  });
}

const started = (attrs: Record<string, unknown> = {}): EventSpec => ({
  eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
  workflowExecutionStartedEventAttributes: { identity: 'router@host', attempt: 1, ...attrs },
});
const signaled = (attrs: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): EventSpec => ({
  eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
  workflowExecutionSignaledEventAttributes: { signalName: 'paymentFact', identity: 'router@host', ...attrs },
  ...extra,
});
const wftScheduled: EventSpec = { eventType: T.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED };
const wftStarted: EventSpec = { eventType: T.EVENT_TYPE_WORKFLOW_TASK_STARTED };
const wftCompleted = (localActivityRetries = 0): EventSpec => ({
  eventType: T.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
  workflowTaskCompletedEventAttributes: {
    meteringMetadata: { nonfirstLocalActivityExecutionAttempts: localActivityRetries },
  },
});
const marker = (markerName: string, workflowTaskCompletedEventId?: number): EventSpec => ({
  eventType: T.EVENT_TYPE_MARKER_RECORDED,
  markerRecordedEventAttributes: { markerName, workflowTaskCompletedEventId },
});
const upsert = (...names: string[]): EventSpec => ({
  eventType: T.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
  upsertWorkflowSearchAttributesEventAttributes: {
    searchAttributes: { indexedFields: Object.fromEntries(names.map((n) => [n, { data: Buffer.from('"x"') }])) },
  },
});
const completed: EventSpec = { eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED };

describe('countBillableActions', () => {
  it('signalWithStart that creates the run is one action; later signals are one each', () => {
    // Shape of a real router history: Started, Signaled, WorkflowTaskScheduled written by one request.
    const count = countBillableActions(
      history(started(), signaled(), wftScheduled, signaled(), wftStarted, wftCompleted(), signaled(), completed),
    );
    assert.deepEqual(count, { total: 3, byKind: { signal_workflow_with_start: 1, signal_workflow: 2 } });
  });

  it('a plain start is one action and a signal after it is one more', () => {
    const count = countBillableActions(history(started(), wftScheduled, signaled(), wftStarted, wftCompleted()));
    assert.deepEqual(count, { total: 2, byKind: { start_workflow: 1, signal_workflow: 1 } });
  });

  it('with a start delay, a separate caller signal at event 2 is billed; the signalWithStart one is not', () => {
    const delayed = { firstWorkflowTaskBackoff: { seconds: 30 } };
    const separate = history(started(delayed), signaled({ identity: 'other@host' }), wftScheduled);
    assert.deepEqual(countBillableActions(separate).byKind, { start_workflow: 1, signal_workflow: 1 });
    const late = history(started(delayed), signaled({}, { eventTime: { seconds: 1_005 } }), wftScheduled);
    assert.deepEqual(countBillableActions(late).byKind, { start_workflow: 1, signal_workflow: 1 });
    const withStart = history(started(delayed), signaled(), wftScheduled);
    assert.deepEqual(countBillableActions(withStart).byKind, { signal_workflow_with_start: 1 });
  });

  it('a continued-as-new run bills its start; the ContinuedAsNew event itself is free', () => {
    const first = history(started(), wftScheduled, wftStarted, wftCompleted(), {
      eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    });
    const next = history(started({ continuedExecutionRunId: 'run-1', initiator: 1 }), signaled(), wftScheduled);
    assert.deepEqual(countBillableActions(first).byKind, { start_workflow: 1 });
    // A run the server started cannot be a signalWithStart, so its event-2 signal is billed.
    assert.deepEqual(countBillableActions(next).byKind, { start_workflow: 1, signal_workflow: 1 });
  });

  it('all local-activity markers of one workflow task are one action; patch markers are free', () => {
    const count = countBillableActions(
      history(
        started(), // 1
        wftScheduled, // 2
        wftStarted, // 3
        wftCompleted(), // 4
        marker('core_local_activity', 4),
        marker('core_local_activity', 4),
        marker('core_local_activity', 4),
        marker('core_patch', 4),
        wftScheduled, // 9
        wftStarted, // 10
        wftCompleted(), // 11
        marker('core_patch', 11),
        marker('core_local_activity'), // no task id: grouped with the preceding completion (11)
        marker('core_local_activity', 11),
        completed,
      ),
    );
    assert.deepEqual(count, { total: 3, byKind: { start_workflow: 1, record_activity_markers: 2 } });
  });

  it('local-activity attempts after a workflow task heartbeat are billed, capped at 100 per task', () => {
    const count = countBillableActions(
      history(started(), wftScheduled, wftStarted, wftCompleted(3), wftCompleted(250)),
    );
    assert.deepEqual(count.byKind, { start_workflow: 1, retry_activity_local: 103 });
  });

  it('an activity is one action plus one per retry, read from the attempt of its Started event', () => {
    const count = countBillableActions(
      history(
        started(),
        { eventType: T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED },
        { eventType: T.EVENT_TYPE_ACTIVITY_TASK_STARTED, activityTaskStartedEventAttributes: { attempt: 3 } },
        { eventType: T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED },
        { eventType: T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED },
        { eventType: T.EVENT_TYPE_ACTIVITY_TASK_STARTED, activityTaskStartedEventAttributes: { attempt: 1 } },
        { eventType: T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED },
      ),
    );
    assert.deepEqual(count, { total: 5, byKind: { start_workflow: 1, schedule_activity: 2, retry_activity: 2 } });
  });

  it('each timer is one action, fired or cancelled', () => {
    const count = countBillableActions(
      history(
        started(),
        { eventType: T.EVENT_TYPE_TIMER_STARTED },
        { eventType: T.EVENT_TYPE_TIMER_FIRED },
        { eventType: T.EVENT_TYPE_TIMER_STARTED },
        { eventType: T.EVENT_TYPE_TIMER_CANCELED },
      ),
    );
    assert.deepEqual(count.byKind, { start_workflow: 1, start_timer: 2 });
  });

  it('each search-attribute upsert is one action, except one that only sets TemporalChangeVersion; memo is free', () => {
    const count = countBillableActions(
      history(
        started(),
        upsert('PaymentStatus'),
        upsert('PaymentStatus', 'MerchantId'),
        upsert('TemporalChangeVersion'),
        upsert('TemporalChangeVersion', 'PaymentStatus'),
        { eventType: T.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED, workflowPropertiesModifiedEventAttributes: {} },
      ),
    );
    assert.deepEqual(count.byKind, { start_workflow: 1, upsert_workflow_search_attributes: 3 });
  });

  it('child starts, accepted updates, options updates and Nexus operations are one action each', () => {
    const count = countBillableActions(
      history(
        started(),
        { eventType: T.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED },
        { eventType: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED },
        { eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED },
        { eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED },
        { eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED },
        { eventType: T.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED },
        { eventType: T.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED },
      ),
    );
    assert.deepEqual(count, {
      total: 6,
      byKind: {
        start_workflow: 1,
        start_child_workflow: 1,
        accept_workflow_update: 1,
        update_workflow_options: 1,
        schedule_nexus_operation: 1,
        request_nexus_operation_cancellation: 1,
      },
    });
  });

  it('a workflow-to-workflow signal is billed once: on the signaled history by default, or on the sender', () => {
    const sender = history(started(), { eventType: T.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED });
    const receiver = history(
      started(),
      wftScheduled,
      signaled({ externalWorkflowExecution: { workflowId: 'finance-load', runId: 'r' } }),
    );
    const byReceiver = sumActionCounts([countBillableActions(sender), countBillableActions(receiver)]);
    assert.deepEqual(byReceiver.byKind, { start_workflow: 2, signal_external_workflow: 1 });
    const bySender = sumActionCounts([
      countBillableActions(sender, { externalSignals: 'sender' }),
      countBillableActions(receiver, { externalSignals: 'sender' }),
    ]);
    assert.deepEqual(bySender, byReceiver);
    assert.equal(countBillableActions(sender, { externalSignals: 'sender' }).total, 2);
  });

  it('a reset run bills the reset, not the events copied from the run it was reset from', () => {
    const count = countBillableActions(
      history(
        started(),
        signaled(),
        wftScheduled,
        wftStarted,
        wftCompleted(),
        { eventType: T.EVENT_TYPE_TIMER_STARTED },
        wftScheduled,
        wftStarted,
        {
          eventType: T.EVENT_TYPE_WORKFLOW_TASK_FAILED,
          workflowTaskFailedEventAttributes: {
            cause: temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW,
          },
        },
        { eventType: T.EVENT_TYPE_TIMER_STARTED },
      ),
    );
    assert.deepEqual(count, { total: 2, byKind: { reset_workflow: 1, start_timer: 1 } });
  });

  it('a workflow-retry run does not bill its start again; a schedule first run bills the schedule too', () => {
    const retry = history(started({ attempt: 2, continuedExecutionRunId: 'run-1' }), wftScheduled);
    assert.deepEqual(countBillableActions(retry), { total: 0, byKind: {} });
    const scheduled = history(
      started({
        firstExecutionRunId: 'r1',
        originalExecutionRunId: 'r1',
        searchAttributes: { indexedFields: { TemporalScheduledById: { data: Buffer.from('"nightly"') } } },
      }),
      wftScheduled,
    );
    assert.deepEqual(countBillableActions(scheduled).byKind, { start_workflow: 1, schedule_workflow: 2 });
  });

  it('queries never reach history, so they are added from the caller', () => {
    const count = countBillableActions(history(started(), wftScheduled), { queries: 4 });
    assert.deepEqual(count, { total: 5, byKind: { start_workflow: 1, query_workflow: 4 } });
    assert.deepEqual(countBillableActions({ events: [] }), { total: 0, byKind: {} });
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { activityInfo } from '@temporalio/activity';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import { countActionsForWorkflows, countBillableActions, fetchHistory } from '../../src/ops/billable-actions';
import { actionProbe, type ProbeActivities, probeSignal } from '../fixtures/workflows/action-probe';
import { config, requireServices, uniqueId } from '../support/stack';

// The counting rules against a history the real Temporal dev server wrote, not one we imagined.
describe('billable actions of a real workflow history', () => {
  const taskQueue = uniqueId('action-probe');
  // Workflow ids whose remote activity fails its first attempt, to produce a real retry.
  const failFirstAttempt = new Set<string>();
  let nativeConnection: NativeConnection;
  let connection: Connection;
  let client: Client;
  let worker: Worker;
  let running: Promise<void>;

  const activities: ProbeActivities = {
    probeLocal: async (n) => n * 2,
    probeRemote: async () => {
      const info = activityInfo();
      if (info.attempt === 1 && failFirstAttempt.has(info.workflowExecution?.workflowId ?? '')) {
        throw new Error('probe: planned first-attempt failure');
      }
      return 'ok';
    },
  };

  before(async () => {
    await requireServices('temporal');
    nativeConnection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
    connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
    client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    const workflowBundle = await bundleWorkflowCode({
      workflowsPath: require.resolve('../fixtures/workflows/action-probe'),
    });
    worker = await Worker.create({
      connection: nativeConnection,
      namespace: config.TEMPORAL_NAMESPACE,
      taskQueue,
      workflowBundle,
      activities,
    });
    running = worker.run();
  });

  after(async () => {
    worker?.shutdown();
    await running;
    await nativeConnection?.close();
    await connection?.close();
  });

  async function runProbe(workflowId: string): Promise<void> {
    const handle = await client.workflow.signalWithStart(actionProbe, {
      workflowId,
      taskQueue,
      args: [{ signals: 2 }],
      signal: probeSignal,
      signalArgs: ['first'],
    });
    await handle.signal(probeSignal, 'second');
    assert.deepEqual(await handle.result(), ['first', 'second']);
  }

  it('counts the probe workflow exactly as derived by hand', async () => {
    const workflowId = uniqueId('probe');
    await runProbe(workflowId);

    const count = countBillableActions(await fetchHistory(client, workflowId));
    assert.deepEqual(count.byKind, {
      signal_workflow_with_start: 1, // signalWithStart: start + its signal together are one action
      signal_workflow: 1, // the second signal, sent on its own
      record_activity_markers: 1, // two local activities completed in one workflow task
      schedule_activity: 1, // one normal activity, first attempt succeeded
      start_timer: 1, // sleep(1)
      upsert_workflow_search_attributes: 1, // PaymentStatus=PROBED
    });
    assert.equal(count.total, 6);
  });

  it('adds one action for a real activity retry and sums runs per workflow id', async () => {
    const workflowId = uniqueId('probe-retry');
    failFirstAttempt.add(workflowId);
    await runProbe(workflowId);

    const summed = await countActionsForWorkflows(client, [workflowId]);
    assert.equal(summed.workflows, 1);
    assert.equal(summed.runs, 1);
    assert.equal(summed.byKind.retry_activity, 1); // ActivityTaskStarted.attempt = 2
    assert.equal(summed.total, 7); // the 6 above + 1 retry
  });
});

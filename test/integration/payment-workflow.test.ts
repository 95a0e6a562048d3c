import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Client } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { type Worker, bundleWorkflowCode } from '@temporalio/worker';
import { summarizeLedger } from '../../src/ledger/checks';
import { simulatePayments } from '../../src/simulator/payments';
import { migrate } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { routeFact } from '../../src/streams/payment-router';
import { createPaymentWorker } from '../../src/workers/payment-worker';
import { type PaymentState, paymentStateQuery, paymentWorkflowId } from '../../src/workflows/payment';
import { PaymentStatusAttr } from '../../src/workflows/search-attributes';
import { config, requireServices, uniqueId } from '../support/stack';

// Real Temporal dev server, real worker, real Postgres: one payment's facts, each delivered twice.
describe('PaymentWorkflow on the real Temporal server', () => {
  const pool = createPool(config, 4);
  const taskQueue = uniqueId('payments-test');
  let env: TestWorkflowEnvironment;
  let client: Client;
  let worker: Worker;
  let running: Promise<void>;

  before(async () => {
    await requireServices('temporal', 'postgres');
    await migrate(pool);
    // The stack's dev server (same binary, same search attributes), not the SDK's time-skipping fake.
    env = await TestWorkflowEnvironment.createFromExistingServer({
      address: config.TEMPORAL_ADDRESS,
      namespace: config.TEMPORAL_NAMESPACE,
    });
    client = env.client;
    const workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows') });
    worker = await createPaymentWorker({
      connection: env.nativeConnection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      taskQueue,
      workflowBundle,
    });
    running = worker.run();
  });

  after(async () => {
    worker.shutdown();
    await running;
    await env.teardown();
    await pool.end();
  });

  it('posts each money-moving fact once, derives SETTLED, is searchable, and closes after the grace period', async () => {
    const runId = uniqueId('wf');
    const sim = simulatePayments({ payments: 1, seed: 11, duplicateRate: 1, runId });
    assert.equal(sim.deliveries.length, 8);
    for (const fact of sim.deliveries) await routeFact(client, fact, 1500, taskQueue);

    const paymentId = sim.events[0]!.paymentId;
    const handle = client.workflow.getHandle(paymentWorkflowId(paymentId));
    const result = (await handle.result()) as PaymentState;
    assert.equal(result.status, 'SETTLED');
    assert.equal(result.factsSeen, 4);
    assert.equal(result.duplicatesIgnored, 4);
    assert.equal(result.postedKeys.length, 2);
    assert.ok(result.postedKeys.every((k) => k.startsWith(`payment/${paymentId}/`)));

    const description = await handle.describe();
    assert.equal(description.typedSearchAttributes.get(PaymentStatusAttr), 'SETTLED');

    const ledger = await summarizeLedger(pool, paymentId);
    assert.equal(ledger.entries, 2);
    assert.equal(ledger.unbalanced, 0);
    assert.equal(ledger.duplicatePostings, 0);
  });

  it('answers the state query while open', async () => {
    const runId = uniqueId('wfq');
    const sim = simulatePayments({ payments: 1, seed: 12, duplicateRate: 0, runId });
    const [created, authorized] = sim.events;
    await routeFact(client, created!, 60_000, taskQueue);
    await routeFact(client, authorized!, 60_000, taskQueue);
    const handle = client.workflow.getHandle(paymentWorkflowId(created!.paymentId));
    let state: PaymentState | undefined;
    for (let i = 0; i < 50 && state?.status !== 'AUTHORIZED'; i++) {
      state = await handle.query(paymentStateQuery);
      if (state.status !== 'AUTHORIZED') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(state?.status, 'AUTHORIZED');
    assert.equal(state?.postedKeys.length, 0);
    await handle.terminate('test done');
  });
});

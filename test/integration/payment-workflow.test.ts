import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { type Worker, bundleWorkflowCode } from '@temporalio/worker';
import { createLedgerActivities } from '../../src/activities/ledger';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { reopenPayment } from '../../src/ops/payment-reopen';
import { simulatePayments } from '../../src/simulator/payments';
import { admitFacts, markSignalled } from '../../src/stores/payment-inbox';
import { flagKeys, summarizeLedger } from '../../src/stores/ledger';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { type RoutingPolicy, routeFact, routeFacts } from '../../src/streams/payment-router';
import { createPaymentWorker } from '../../src/workers/payment-worker';
import {
  type PaymentState,
  adjustPaymentUpdate,
  paymentFactSignal,
  paymentStateQuery,
  paymentWorkflow,
  paymentWorkflowId,
  preconditionsExpiredSignal,
  resolvePaymentUpdate,
  slaBreachedSignal,
} from '../../src/workflows/payment';
import { PaymentStatusAttr } from '../../src/workflows/search-attributes';
import { slaSweepWorkflow } from '../../src/workflows/sla-sweep';
import { config, requireServices, uniqueId } from '../support/stack';

/** One happy-path payment (created, authorized, captured, settled), unique to this test run. */
function onePayment(seed: number, prefix: string): ReturnType<typeof simulatePayments> {
  return simulatePayments({ payments: 1, seed, duplicateRate: 0, runId: uniqueId(prefix), happyPathOnly: true });
}

/** A full refund of a simulated payment, reported after its settlement (key: the settlement's + `:suffix`). */
function refundOf(sim: ReturnType<typeof simulatePayments>, refundId: string, suffix: string): PaymentEvent {
  const settled = sim.events.find((e) => e.type === 'settled')!;
  const { feeMinor: _f, settlementId: _s, captureId: _c, ...envelope } = settled;
  return {
    ...envelope,
    type: 'refunded',
    refundId,
    idempotencyKey: `${settled.idempotencyKey}:${suffix}`,
    sourceSequence: 9,
  };
}

/** Polls the state query until the payment asks for ops' attention (10 s at most). */
async function attentionBecomes(handle: WorkflowHandle, attention: PaymentState['attention']): Promise<PaymentState> {
  let state = await handle.query(paymentStateQuery);
  for (let i = 0; i < 100 && state.attention !== attention; i++) {
    await new Promise((r) => setTimeout(r, 100));
    state = await handle.query(paymentStateQuery);
  }
  return state;
}

async function searchAttributeBecomes(handle: WorkflowHandle, status: string): Promise<string | undefined> {
  let value = (await handle.describe()).typedSearchAttributes.get(PaymentStatusAttr);
  for (let i = 0; i < 100 && value !== status; i++) {
    await new Promise((r) => setTimeout(r, 100));
    value = (await handle.describe()).typedSearchAttributes.get(PaymentStatusAttr);
  }
  return value;
}

// Real Temporal dev server, real worker, real Postgres.
describe('PaymentWorkflow on the real Temporal server', { timeout: 180_000 }, () => {
  const pool = createPool(config, 4);
  const taskQueue = uniqueId('payments-test');
  const policy: RoutingPolicy = { preconditionTimeoutMs: 60_000, lifecycleSearchAttribute: false, taskQueue };
  let env: TestWorkflowEnvironment;
  let client: Client;
  let worker: Worker;
  let running: Promise<void>;
  let workflowBundle: Awaited<ReturnType<typeof bundleWorkflowCode>>;

  before(async () => {
    await requireServices('temporal', 'postgres');
    await migrateAsOwner(config);
    // The stack's dev server (same binary, same search attributes), not the SDK's time-skipping fake.
    env = await TestWorkflowEnvironment.createFromExistingServer({
      address: config.TEMPORAL_ADDRESS,
      namespace: config.TEMPORAL_NAMESPACE,
    });
    client = env.client;
    workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows') });
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

  it('posts each money-moving fact once (duplicates and reverse order), and closes when settled', async () => {
    const sim = simulatePayments({
      payments: 1,
      seed: 11,
      duplicateRate: 1,
      runId: uniqueId('wf'),
      happyPathOnly: true,
    });
    const reversed = [...sim.deliveries].reverse();
    // Straight to signalWithStart, skipping the inbox: the workflow itself must dedup.
    for (const fact of reversed) await routeFact(client, fact, false, policy);
    const paymentId = sim.events[0]!.paymentId;
    const result = (await client.workflow.getHandle(paymentWorkflowId(paymentId)).result()) as PaymentState;
    assert.equal(result.status, 'SETTLED');
    assert.equal(result.facts.length, 4);
    assert.ok(result.facts.every((f) => f.state === 'applied'));
    assert.equal(result.duplicatesIgnored, 4);
    assert.deepEqual(result.postedKeys.sort(), [
      `payment/${paymentId}/captured:cap1`,
      `payment/${paymentId}/settled:set1`,
    ]);
    const ledger = await summarizeLedger(pool, paymentId);
    assert.deepEqual([ledger.entries, ledger.unbalanced, ledger.duplicatePostings], [2, 0, 0]);
  });

  it('a fact arriving after the payment closed reopens it, loads its history, and posts exactly once', async () => {
    const sim = onePayment(12, 'wfr');
    const paymentId = sim.events[0]!.paymentId;
    await routeFacts(client, pool, sim.events, policy);
    const handle = client.workflow.getHandle(paymentWorkflowId(paymentId));
    await handle.result();
    const refund = refundOf(sim, 'late1', 'refund');
    await routeFacts(client, pool, [refund], policy);
    const reopened = (await client.workflow.getHandle(paymentWorkflowId(paymentId)).result()) as PaymentState;
    assert.equal(reopened.facts.length, 5, 'the new run knows the earlier facts');
    assert.deepEqual(
      reopened.postedKeys.sort(),
      ['captured:cap1', 'refunded:late1', 'settled:set1'].map((k) => `payment/${paymentId}/${k}`),
    );
    const ledger = await summarizeLedger(pool, paymentId);
    assert.deepEqual([ledger.entries, ledger.duplicatePostings], [3, 0]);
  });

  it('a fact signalled while the closing pass posts is handled before the run closes, not lost', async () => {
    // A worker that holds each posting 12 s after its commit, as a Postgres outage holds it: longer than
    // the workflow task's heartbeat (8 s), so the refund signalled meanwhile is delivered to the run while
    // the settlement's posting is pending, and the pass that posted it ends with the payment final.
    // Without the drain the run closed SETTLED here and never posted the refund (reproduced; the
    // CI's Postgres kill -9 drill stopped at 548 of 550 postings with every run closed).
    const slowQueue = uniqueId('payments-slow');
    const slow = await createPaymentWorker({
      connection: env.nativeConnection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      taskQueue: slowQueue,
      workflowBundle,
      faultPostDelayMs: 12_000,
    });
    const slowRunning = slow.run();
    try {
      const slowPolicy: RoutingPolicy = { ...policy, taskQueue: slowQueue };
      const sim = onePayment(17, 'wfdrain');
      const paymentId = sim.events[0]!.paymentId;
      const settled = sim.events.find((e) => e.type === 'settled')!;
      await routeFacts(client, pool, sim.events, slowPolicy);
      // The settlement is committed and its posting held: the workflow is mid-pass, about to close.
      const settlementKey = `payment/${paymentId}/settled:${settled.settlementId}`;
      const deadline = Date.now() + 60_000;
      while (
        !(await pool.query('select 1 from ledger.journal_entries where posting_key = $1', [settlementKey])).rowCount
      ) {
        assert.ok(Date.now() < deadline, `the settlement ${settlementKey} was not posted within 60 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const refund = refundOf(sim, 'during-close', 'during-close');
      await routeFacts(client, pool, [refund], slowPolicy);
      const handle = client.workflow.getHandle(paymentWorkflowId(paymentId));
      const result = (await handle.result()) as PaymentState;
      assert.equal(result.status, 'REFUNDED', 'the run closed before it saw the refund');
      assert.deepEqual(
        result.postedKeys.sort(),
        ['captured:cap1', 'refunded:during-close', 'settled:set1'].map((k) => `payment/${paymentId}/${k}`),
      );
      const ledger = await summarizeLedger(pool, paymentId);
      assert.deepEqual([ledger.entries, ledger.duplicatePostings, ledger.unbalanced], [3, 0, 0]);
    } finally {
      slow.shutdown();
      await slowRunning;
    }
  });

  it('reopen repairs a payment closed with a signalled fact it never posted: posted once, nothing else', async () => {
    const sim = onePayment(18, 'wfreopen');
    const paymentId = sim.events[0]!.paymentId;
    await routeFacts(client, pool, sim.events, policy);
    await client.workflow.getHandle(paymentWorkflowId(paymentId)).result();
    // The loss runs before drain-before-close could leave: the inbox has the refund, marked signalled,
    // and no run will ever post it.
    const refund = refundOf(sim, 'lost1', 'lost');
    await admitFacts(pool, [refund]);
    await markSignalled(pool, [refund.idempotencyKey]);
    assert.equal((await summarizeLedger(pool, paymentId)).entries, 2, 'the refund is missing before the repair');

    const repaired = await reopenPayment({ client, pool, policy }, paymentId);
    assert.equal(repaired.closed, true);
    assert.equal(repaired.status, 'REFUNDED');
    assert.deepEqual(
      repaired.postedKeys,
      ['captured:cap1', 'refunded:lost1', 'settled:set1'].map((k) => `payment/${paymentId}/${k}`),
    );
    const ledger = await summarizeLedger(pool, paymentId);
    assert.deepEqual([ledger.entries, ledger.duplicatePostings, ledger.unbalanced], [3, 0, 0]);
    // A second reopen finds nothing to post.
    const again = await reopenPayment({ client, pool, policy }, paymentId);
    assert.deepEqual(again.postedKeys, repaired.postedKeys);
    assert.equal((await summarizeLedger(pool, paymentId)).entries, 3);
  });

  it('an impossible fact is an anomaly ops can find, resolve, and adjust for, all audited', async () => {
    const sim = onePayment(13, 'wfa');
    const paymentId = sim.events[0]!.paymentId;
    const capture = sim.events.find((e) => e.type === 'captured')!;
    // A second capture beyond the authorized amount.
    const overCapture = {
      ...capture,
      captureId: 'cap9',
      idempotencyKey: `${capture.idempotencyKey}:over`,
      sourceSequence: 8,
    };
    await routeFacts(client, pool, [...sim.events, overCapture], policy);
    const handle = client.workflow.getHandle(paymentWorkflowId(paymentId));
    const state = await attentionBecomes(handle, 'ANOMALY');
    assert.equal(state.attention, 'ANOMALY');
    assert.match(state.anomalies[0]!.reason, /exceed the authorized/);
    // The query can answer before the task that upserted the attribute completes: wait for it.
    assert.equal(await searchAttributeBecomes(handle, 'ANOMALY'), 'ANOMALY');

    const adjustedAfter = Date.now();
    await handle.executeUpdate(adjustPaymentUpdate, {
      args: [
        {
          adjustmentId: 'adj1',
          actor: 'ops@paylink',
          reason: 'gateway double capture',
          account: 'gateway_clearing',
          side: 'debit',
          amountMinor: 100,
          currency: capture.currency,
        },
      ],
    });
    await assert.rejects(
      handle.executeUpdate(adjustPaymentUpdate, {
        args: [
          {
            adjustmentId: 'adj2',
            actor: 'ops',
            reason: 'x',
            account: 'gateway_clearing',
            side: 'debit',
            amountMinor: 1.5,
            currency: 'EUR',
          },
        ],
      }),
      (err: Error) => /amountMinor must be a positive integer/.test(String((err.cause as Error | undefined)?.message)),
    );
    const resolved = await handle.executeUpdate(resolvePaymentUpdate, {
      args: [{ actor: 'ops@paylink', reason: 'confirmed with gateway', close: false }],
    });
    assert.equal(resolved.attention, 'OPEN');
    await handle.result();
    const flags = await pool.query<{ kind: string; actor: string | null }>(
      'select kind, actor from ledger.payment_flags where payment_id = $1 order by flag_id',
      [paymentId],
    );
    assert.deepEqual(
      flags.rows.map((r) => r.kind),
      ['anomaly', 'adjustment', 'resolved'],
    );
    const manual = await pool.query<{ actor: string; memo: string; occurred_at: Date }>(
      `select actor, memo, occurred_at from ledger.journal_entries where payment_id = $1 and fact_type = 'manual_adjustment'`,
      [paymentId],
    );
    assert.deepEqual(
      manual.rows.map(({ actor, memo }) => ({ actor, memo })),
      [{ actor: 'ops@paylink', memo: 'gateway double capture' }],
    );
    // The adjustment happened when ops made it, not when the payment's run started.
    const runStarted = (await handle.describe()).startTime.getTime();
    assert.ok(runStarted < adjustedAfter, 'the run started before the adjustment was requested');
    assert.ok(
      manual.rows[0]!.occurred_at.getTime() >= adjustedAfter,
      `occurred_at ${manual.rows[0]!.occurred_at.toISOString()}`,
    );
  });

  it('a posting key already in the ledger with other lines becomes a posting-conflict anomaly, not a second posting', async () => {
    const sim = onePayment(15, 'wfc');
    const paymentId = sim.events[0]!.paymentId;
    const capture = sim.events.find((e) => e.type === 'captured')!;
    await createLedgerActivities(pool).postJournalEntry({
      postingKey: `payment/${paymentId}/captured:cap1`,
      paymentId,
      merchantId: capture.merchantId,
      factType: 'captured',
      idempotencyKey: 'planted-by-test',
      occurredAt: capture.occurredAt,
      lines: [
        { account: 'gateway_clearing', side: 'debit', amountMinor: 1, currency: capture.currency },
        { account: 'merchant_payable', side: 'credit', amountMinor: 1, currency: capture.currency },
      ],
    });
    await routeFacts(client, pool, sim.events, policy);
    const handle = client.workflow.getHandle(paymentWorkflowId(paymentId));
    const state = await attentionBecomes(handle, 'ANOMALY');
    assert.equal(state.anomalies[0]?.kind, 'posting-conflict');
    assert.equal(
      (await summarizeLedger(pool, paymentId)).entries,
      2,
      'the planted capture and the settlement, nothing more',
    );
    await handle.terminate('test done');
  });

  it('continues as new past its history budget, carrying the state: every refund still posts once', async () => {
    const sim = onePayment(16, 'wfcan');
    const paymentId = sim.events[0]!.paymentId;
    const settled = sim.events.find((e) => e.type === 'settled')!;
    // Thirty 1-unit refunds: a long-lived payment with many facts (the shape that needs continue-as-new).
    const refunds = Array.from({ length: 30 }, (_, i) => {
      const { settlementId: _s, captureId: _c, feeMinor: _f, ...envelope } = settled;
      return {
        ...envelope,
        type: 'refunded' as const,
        refundId: `r${i}`,
        amountMinor: 1,
        idempotencyKey: `${settled.idempotencyKey}:r${i}`,
        sourceSequence: 10 + i,
      };
    });
    // Refunds first: they wait for the capture, so the run stays open and must carry them across runs.
    const [created, ...rest] = sim.events;
    for (const fact of [created!, ...refunds, ...rest]) {
      await client.workflow.signalWithStart(paymentWorkflow, {
        workflowId: paymentWorkflowId(paymentId),
        taskQueue,
        args: [
          {
            paymentId,
            merchantId: fact.merchantId,
            region: fact.region,
            hasHistory: false,
            preconditionTimeoutMs: 60_000,
            lifecycleSearchAttribute: false,
            historyEventsBeforeContinue: 25,
          },
        ],
        signal: paymentFactSignal,
        signalArgs: [fact],
      });
    }
    const result = (await client.workflow.getHandle(paymentWorkflowId(paymentId)).result()) as PaymentState;
    assert.equal(result.facts.length, 34);
    assert.ok(result.facts.every((f) => f.state === 'applied'));
    const statuses: string[] = [];
    for await (const run of client.workflow.list({ query: `WorkflowId = "${paymentWorkflowId(paymentId)}"` })) {
      statuses.push(run.status.name);
    }
    assert.ok(statuses.includes('CONTINUED_AS_NEW'), `expected continue-as-new, saw ${statuses.join(', ')}`);
    const ledger = await summarizeLedger(pool, paymentId);
    assert.deepEqual([ledger.entries, ledger.duplicatePostings, ledger.unbalanced], [32, 0, 0]);
  });

  it('an SLA breach marks a captured payment STUCK; resolve with close ends it', async () => {
    const sim = simulatePayments({ payments: 1, seed: 14, duplicateRate: 0, runId: uniqueId('wfs'), stuck: 1 });
    const paymentId = sim.events[0]!.paymentId;
    await routeFacts(client, pool, sim.events, policy);
    const handle = client.workflow.getHandle(paymentWorkflowId(paymentId));
    await handle.signal(slaBreachedSignal, { stage: 'AUTHORIZED', since: '2026-01-01T00:00:00Z', slaMs: 1000 }); // stale picture: ignored
    await handle.signal(slaBreachedSignal, { stage: 'CAPTURED', since: '2026-01-01T00:00:00Z', slaMs: 1000 });
    const state = await attentionBecomes(handle, 'STUCK');
    assert.equal(state.status, 'CAPTURED');
    assert.equal(state.stuck?.stage, 'CAPTURED');
    const done = await handle.executeUpdate(resolvePaymentUpdate, {
      args: [{ actor: 'ops', reason: 'written off', close: true }],
    });
    assert.equal(done.closedBy, 'ops: written off');
    const result = (await handle.result()) as PaymentState;
    assert.equal(result.status, 'CAPTURED');
  });

  it('a `created` alone starts no run; past the CREATED SLA the sweep starts it STUCK, and the payment goes on', async () => {
    const sim = onePayment(17, 'wfcr');
    const paymentId = sim.events[0]!.paymentId;
    const created = sim.events.filter((e) => e.type === 'created');
    const routed = await routeFacts(client, pool, created, policy);
    assert.deepEqual([routed.signalled, routed.absorbed], [0, 1]);
    const handle = client.workflow.getHandle(paymentWorkflowId(paymentId));
    await assert.rejects(handle.describe(), /not found/i, 'no run for a payment that is only created');

    const runPrefix = paymentId.slice(0, paymentId.lastIndexOf('-') + 1);
    await new Promise((r) => setTimeout(r, 50)); // older than the 20 ms SLA below (a busy machine only adds)
    const sweep = await client.workflow.execute(slaSweepWorkflow, {
      taskQueue,
      workflowId: uniqueId('sweep'),
      args: [{ slas: { CREATED: 20 }, limit: 10, paymentIdPrefix: runPrefix }],
    });
    assert.deepEqual([sweep.started, sweep.signalled], [[paymentId], []]);
    const stuck = await attentionBecomes(handle, 'STUCK');
    assert.deepEqual([stuck.status, stuck.stuck?.stage], ['CREATED', 'CREATED'], 'the run loaded the absorbed created');
    assert.ok((await flagKeys(pool, [paymentId])).get(paymentId)?.includes('stuck:CREATED'));
    const again = await client.workflow.execute(slaSweepWorkflow, {
      taskQueue,
      workflowId: uniqueId('sweep'),
      args: [{ slas: { CREATED: 20 }, limit: 10, paymentIdPrefix: runPrefix }],
    });
    assert.deepEqual(again.started ?? [], [], 'flagged once: the next sweep leaves it alone');

    await routeFacts(client, pool, sim.events, policy);
    const done = await handle.executeUpdate(resolvePaymentUpdate, {
      args: [{ actor: 'ops', reason: 'merchant confirmed the late authorization', close: false }],
    });
    assert.equal(done.attention, 'OPEN');
    const result = (await handle.result()) as PaymentState;
    assert.equal(result.status, 'SETTLED');
    const ledger = await summarizeLedger(pool, paymentId);
    assert.deepEqual([ledger.entries, ledger.duplicatePostings, ledger.unbalanced], [2, 0, 0]);
  });

  it('a fact waiting for its precondition costs no timer; a signal from the sweep expires it into an anomaly', async () => {
    const sim = onePayment(15, 'wfw');
    const paymentId = sim.events[0]!.paymentId;
    const withoutCapture = sim.events.filter((e) => e.type !== 'captured');
    await routeFacts(client, pool, withoutCapture, policy);
    const handle = client.workflow.getHandle(paymentWorkflowId(paymentId));
    let state = await handle.query(paymentStateQuery);
    for (let i = 0; i < 100 && !state.facts.some((f) => f.state === 'waiting'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      state = await handle.query(paymentStateQuery);
    }
    const waiting = state.facts.filter((f) => f.state === 'waiting');
    assert.deepEqual(
      waiting.map((f) => [f.type, f.waitingFor]),
      [['settled', 'capture cap1']],
    );
    const timers = async () =>
      (await handle.fetchHistory()).events?.filter((e) => e.timerStartedEventAttributes).length ?? 0;
    assert.equal(await timers(), 0, 'a wait must not start a durable timer (a billable action)');

    // A stale signal naming a fact that is not waiting changes nothing.
    await handle.signal(preconditionsExpiredSignal, { factKeys: ['created'], idleSince: '2026-01-01T00:00:00Z' });
    await handle.signal(preconditionsExpiredSignal, {
      factKeys: waiting.map((f) => f.factKey),
      idleSince: '2026-01-01T00:00:00Z',
    });
    const anomalous = await attentionBecomes(handle, 'ANOMALY');
    assert.deepEqual(
      anomalous.anomalies.map((a) => [a.kind, a.factKey]),
      [['precondition-timeout', waiting[0]!.factKey]],
    );
    assert.ok(anomalous.facts.every((f) => f.state !== 'waiting'));
    assert.equal(await timers(), 0);
    const done = await handle.executeUpdate(resolvePaymentUpdate, {
      args: [{ actor: 'ops', reason: 'capture never reported; settlement written off', close: true }],
    });
    assert.equal(done.attention, 'OPEN');
    await handle.result();
    const ledger = await summarizeLedger(pool, paymentId);
    assert.deepEqual(
      [ledger.entries, ledger.duplicatePostings],
      [0, 0],
      'nothing posted for a settlement without its capture',
    );
  });
});

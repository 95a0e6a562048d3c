import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { compareLedger } from '../../src/ledger/checks';
import { simulatePayments } from '../../src/simulator/payments';
import { publishPaymentEvents } from '../../src/simulator/publish';
import { expectedLedger } from '../../src/starters/expected-ledger';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { summarizeLedger } from '../../src/stores/ledger';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { createKafka, createProducer } from '../../src/streams/kafka';
import {
  type RunScope,
  alreadyPostedResults,
  countWorkflows,
  resignalledFacts,
  inboxCounts,
  routerGroupMembers,
  runHistories,
  runPrefix,
  waitFor,
  waitForRunComplete,
  within,
} from '../support/pipeline';
import { config, requireServices, topics, uniqueId } from '../support/stack';

// kill -9 of the real worker / router processes in the middle of their work, then a fresh process
// finishes the run: the ledger must still match the simulator exactly, with no double posting.

const WORKER = 'src/workers/payment-worker-main.ts';
const ROUTER = 'src/streams/payment-router-main.ts';
const PAYMENTS = 150;
const RUN_TIMEOUT_MS = 180_000;
const READY_TIMEOUT_MS = 60_000; // a new router joins only once the killed one's Kafka session (6 s here) expired
const KILL_AT = 0.1; // kill once this share of the work is done (and before all of it is)

describe('crash recovery with real processes (kill -9)', () => {
  const pool = createPool(config, 4);
  const kafka = createKafka(config, 'crash-test');
  const producer = createProducer(kafka);
  const admin = kafka.admin();
  let connection: Connection | undefined;
  let client: Client;
  const processes: PipelineProcess[] = [];

  const start = async (name: string, script: string, env: NodeJS.ProcessEnv = {}): Promise<PipelineProcess> => {
    // A router killed -9 holds its partitions for its Kafka session: 6 s here, so the next one joins sooner.
    const p = startPipelineProcess(name, script, { KAFKA_SESSION_TIMEOUT_MS: '6000', ...env });
    processes.push(p);
    await within(p.ready, READY_TIMEOUT_MS, `${name} to be ready (log: ${p.logFile})`);
    return p;
  };
  /** SIGTERM, and SIGKILL whatever has not exited 30 s later. */
  const stopAll = async (): Promise<void> => {
    const stopping = processes.splice(0);
    await Promise.allSettled(stopping.map((p) => within(p.stop(), 30_000, `${p.name} to stop`).catch(() => p.kill9())));
  };
  /** Fails a wait at once when a process we did not kill has exited. */
  const guard = (): void => {
    for (const p of processes) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) {
        throw new Error(
          `${p.name} exited unexpectedly (code ${p.child.exitCode}, signal ${p.child.signalCode}); see ${p.logFile}`,
        );
      }
    }
  };

  before(async () => {
    await requireServices('postgres', 'kafka', 'temporal');
    await migrateAsOwner(config);
    connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
    client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    await Promise.all([producer.connect(), admin.connect()]);
  });

  after(async () => {
    await stopAll(); // even when a test failed half way
    await Promise.allSettled([producer.disconnect(), admin.disconnect()]);
    await connection?.close();
    await pool.end();
  });

  /** The router group is fixed and shared: ours must be its only member. A killed router leaves within its session (6 s here, 30 s by default). */
  async function noOtherRouter(deadline: number): Promise<void> {
    await waitFor('no other payment-router in the consumer group (stop it)', deadline, async () => {
      const members = await routerGroupMembers(admin);
      return members.length === 0 || `members: ${members.join(', ')}`;
    });
  }

  async function simulateAndPublish(prefix: string): Promise<RunScope & { deadline: number }> {
    const runId = uniqueId(prefix);
    const sim = simulatePayments({ payments: PAYMENTS, seed: 7, duplicateRate: 0.5, shuffle: true, runId });
    await publishPaymentEvents(producer, topics.paymentEvents, sim.deliveries);
    return {
      pool,
      admin,
      client,
      runId,
      payments: PAYMENTS,
      truth: sim.truth,
      guard,
      deadline: Date.now() + RUN_TIMEOUT_MS,
    };
  }

  async function assertKilled(p: PipelineProcess): Promise<void> {
    const pid = p.child.pid;
    processes.splice(processes.indexOf(p), 1);
    await p.kill9();
    assert.equal(p.child.signalCode, 'SIGKILL', `${p.name} did not die of SIGKILL`);
    assert.throws(() => process.kill(pid!, 0), /ESRCH/, `${p.name} (pid ${pid}) is still alive`);
  }

  async function assertLedgerMatches(t: TestContext, run: RunScope): Promise<void> {
    const ledger = await summarizeLedger(pool, runPrefix(run.runId));
    const comparison = compareLedger(ledger, expectedLedger(run.truth));
    assert.equal(ledger.duplicatePostings, 0, 'double postings');
    assert.equal(ledger.unbalanced, 0, 'unbalanced entries');
    assert.ok(comparison.matches, `ledger differs from the simulator:\n${comparison.mismatches.join('\n')}`);
    const notCompleted = await countWorkflows(run, 'ExecutionStatus != "Completed"');
    assert.equal(notCompleted, 0, 'payment workflows that failed, timed out or were terminated');
    t.diagnostic(`run ${run.runId}: ${ledger.entries} entries, ${run.truth.uniqueEvents} unique facts`);
  }

  it('a worker killed between a posting commit and Temporal learning of it: no double posting', async (t) => {
    const began = Date.now();
    await noOtherRouter(began + 45_000);
    const [, doomed] = await Promise.all([
      start('crash-router', ROUTER),
      // Each posting is held 1.5 s after its commit, so the kill lands on committed-but-unreported postings.
      start('crash-worker-doomed', WORKER, { PAYLINK_FAULT_POST_DELAY_MS: '1500' }),
    ]);
    const run = await simulateAndPublish('crashw');
    const total = run.truth.moneyMovingFacts;

    await waitFor(
      `${KILL_AT * 100}% of postings before the kill`,
      run.deadline,
      async () => {
        const { entries } = await summarizeLedger(pool, runPrefix(run.runId));
        return entries >= Math.ceil(total * KILL_AT) || `ledger entries ${entries}/${total}`;
      },
      { intervalMs: 50, guard },
    );
    await assertKilled(doomed);
    const atKill = (await summarizeLedger(pool, runPrefix(run.runId))).entries;
    assert.ok(atKill < total, `the kill came too late: all ${total} postings were already there`);

    await start('crash-worker-fresh', WORKER);
    await waitForRunComplete(run, run.deadline);
    await assertLedgerMatches(t, run);

    // Evidence the kill hit the worst case: postings the new worker re-ran and found already committed.
    const rePosted = alreadyPostedResults(await runHistories(run));
    assert.ok(rePosted > 0, 'no posting was re-run after the kill: the crash missed the commit window');
    t.diagnostic(
      `worker killed at ${atKill}/${total} entries; ${rePosted} postings re-run and deduplicated; ` +
        `${((Date.now() - began) / 1000).toFixed(1)} s`,
    );
    await stopAll();
  });

  it('a router killed in the middle of a batch: facts re-delivered, posted once', async (t) => {
    const began = Date.now();
    await noOtherRouter(began + 45_000);
    const [, doomed] = await Promise.all([
      start('crash-worker', WORKER),
      // Each signalWithStart is held 100 ms after Temporal accepted it, before the inbox marks it signalled.
      start('crash-router-doomed', ROUTER, { PAYLINK_FAULT_SIGNAL_DELAY_MS: '100' }),
    ]);
    const run = await simulateAndPublish('crashr');
    const unique = run.truth.uniqueEvents;

    await waitFor(
      `${KILL_AT * 100}% of facts signalled before the kill`,
      run.deadline,
      async () => {
        const { signalled } = await inboxCounts(pool, run.runId);
        return signalled >= Math.ceil(unique * KILL_AT) || `signalled ${signalled}/${unique}`;
      },
      { intervalMs: 50, guard },
    );
    await assertKilled(doomed);
    const atKill = (await inboxCounts(pool, run.runId)).signalled;
    assert.ok(atKill < unique, `the kill came too late: all ${unique} facts were already signalled`);

    await start('crash-router-fresh', ROUTER);
    await waitForRunComplete(run, run.deadline);
    await assertLedgerMatches(t, run);

    // Evidence the kill hit a batch mid-way: facts Temporal accepted before the kill were signalled again.
    // (Not every fact is signalled at all: the router records inert ones without a signal, docs/ledger.md.)
    const resignalled = resignalledFacts(await runHistories(run));
    assert.ok(resignalled > 0, 'no fact was re-signalled after the kill: the crash missed the batch');
    t.diagnostic(
      `router killed at ${atKill}/${unique} facts signalled; ${resignalled} re-signalled after the kill; ` +
        `${((Date.now() - began) / 1000).toFixed(1)} s`,
    );
    await stopAll();
  });
});

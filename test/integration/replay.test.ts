import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import type { Pool } from 'pg';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import {
  type BackfillRequest,
  backfillStatus,
  cancelBackfill,
  pauseBackfill,
  parseBackfillRequest,
  startBackfill,
  waitForBackfill,
} from '../../src/starters/replay';
import { summarizeLedger } from '../../src/stores/ledger';
import { createPool } from '../../src/stores/postgres';
import {
  REPLAY_SOURCES,
  backfillStatusQuery,
  backfillWorkflow,
  backfillWorkflowId,
} from '../../src/workflows/backfill';
import { runDemo } from '../support/demo';
import { waitFor } from '../support/pipeline';
import { config, requireServices, uniqueId } from '../support/stack';

// Replay and backfill from the raw archive with real services: a small demo run (all four paths, the
// archiver) backfills its own window and posts nothing new; a dry run counts the same records; the
// starter's pause, resume and cancel drive a rate-capped backfill while the ledger stays as it was.

interface DemoSummary {
  runId: string;
  uniqueEvents: number;
  quarantined: number;
  replay: {
    id: string;
    from: string;
    to: string;
    records: number;
    facts: number;
    newFacts: number;
    quarantined: number;
    newPostings: number;
    recordsPerSecond: number;
  };
  ledger: { entries: number; unbalanced: number; duplicatePostings: number; matchesSimulator: boolean };
}

describe('replay and backfill from the raw archive', { timeout: 300_000 }, () => {
  let demo: DemoSummary;
  let worker: PipelineProcess | undefined;
  let connection: Connection | undefined;
  let client: Client;
  let pool: Pool;

  before(async () => {
    await requireServices('postgres', 'kafka', 'temporal', 's3', 'snowflake');
    pool = createPool(config);
  });
  after(async () => {
    await worker?.stop();
    await connection?.close();
    await pool.end();
  });

  it('`npm run demo -- --replay`: the run window backfilled again adds no journal entry', () => {
    demo = runDemo<DemoSummary>(['--payments', '10', '--seed', '11', '--invalid', '1', '--replay'], 200_000);
    const r = demo.replay;
    assert.equal(r.facts, demo.uniqueEvents, 'every fact of the run is in the archive and maps again');
    assert.equal(r.newFacts, 0, 'the inbox had every replayed fact already');
    assert.equal(r.newPostings, 0);
    assert.equal(r.quarantined, demo.quarantined, 'the live edge quarantined the same records');
    assert.ok(r.recordsPerSecond > 0);
    assert.equal(demo.ledger.duplicatePostings, 0);
    assert.equal(demo.ledger.matchesSimulator, true);
  });

  describe('the starter against a payment worker', () => {
    const request = (over: Partial<BackfillRequest>): BackfillRequest => ({
      from: demo.replay.from,
      to: demo.replay.to,
      sources: [...REPLAY_SOURCES],
      dryRun: false,
      ratePerSecond: 0,
      id: uniqueId('replay-test'),
      ...over,
    });
    const ledgerOfRun = async () => {
      const l = await summarizeLedger(pool, `${demo.runId}-`);
      return { entries: l.entries, totals: l.totals };
    };

    before(async () => {
      assert.ok(demo, 'the demo test above ran');
      worker = startPipelineProcess('payment-worker-replay-test', 'src/workers/payment-worker-main.ts');
      await worker.ready;
      connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
      client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    });

    it('a dry run counts the same records and facts and writes nothing', async () => {
      const before = await ledgerOfRun();
      const r = request({ dryRun: true });
      await startBackfill(client, config, r);
      const state = await waitForBackfill(client, r.id);
      assert.equal(state.records, demo.replay.records);
      assert.equal(state.facts, demo.replay.facts);
      assert.equal(state.newFacts, 0);
      assert.equal(state.quarantined, demo.replay.quarantined);
      assert.deepEqual(await ledgerOfRun(), before);
    });

    it('pause stops a rate-capped backfill, resume finishes it, balances unchanged', async () => {
      const before = await ledgerOfRun();
      const r = request({ ratePerSecond: 20 });
      await startBackfill(client, config, r, { sliceMs: 1000, pageSize: 5 });
      const handle = client.workflow.getHandle<typeof backfillWorkflow>(backfillWorkflowId(r.id));
      const deadline = Date.now() + 60_000;
      await waitFor('the backfill to replay some records', deadline, async () => {
        const s = await handle.query(backfillStatusQuery);
        return s.records > 0 || `${s.phase}, ${s.records} records`;
      });
      await pauseBackfill(client, r.id, true);
      // Paused and idle: no replay activity pending, so nothing can move.
      await waitFor('the backfill to stand still', deadline, async () => {
        const s = await handle.query(backfillStatusQuery);
        const pending = (await handle.describe()).raw.pendingActivities?.length ?? 0;
        return (s.paused && pending === 0) || `paused ${s.paused}, ${pending} activities pending`;
      });
      const paused = await backfillStatus(client, r.id);
      assert.equal(paused.status, 'RUNNING');
      assert.ok(paused.state!.records < demo.replay.records, `paused at ${paused.state!.records} records`);
      // Findable in the Web UI by its search attribute.
      await waitFor('visibility to list it as PAUSED', deadline, async () => {
        const n = await client.workflow.count(
          `BackfillStatus = "PAUSED" AND WorkflowId = "${backfillWorkflowId(r.id)}"`,
        );
        return n.count === 1 || 'not yet';
      });
      await pauseBackfill(client, r.id, false);
      const state = await waitForBackfill(client, r.id);
      assert.equal(state.records, demo.replay.records);
      assert.equal(state.newFacts, 0);
      assert.ok(state.recordsPerSecond <= 25, `rate cap 20/s, measured ${state.recordsPerSecond}`);
      assert.deepEqual(await ledgerOfRun(), before, 'zero new journal entries, identical balances');
    });

    it('cancel stops a backfill through Temporal cancellation', async () => {
      const r = request({ ratePerSecond: 5 });
      await startBackfill(client, config, r, { sliceMs: 1000, pageSize: 5 });
      const handle = client.workflow.getHandle<typeof backfillWorkflow>(backfillWorkflowId(r.id));
      await waitFor('the backfill to replay some records', Date.now() + 60_000, async () => {
        const s = await handle.query(backfillStatusQuery);
        return s.records > 0 || `${s.phase}, ${s.records} records`;
      });
      await cancelBackfill(client, r.id);
      await assert.rejects(handle.result(), (err) => err instanceof WorkflowFailedError);
      assert.equal((await backfillStatus(client, r.id)).status, 'CANCELLED');
    });

    it('names the bad argument', () => {
      assert.throws(() => parseBackfillRequest({ from: 'yesterday', to: demo.replay.to }), /--from "yesterday"/);
      assert.throws(
        () => parseBackfillRequest({ from: demo.replay.from, to: demo.replay.to, source: 'webhooks,fax' }),
        /--source "webhooks,fax"/,
      );
      assert.throws(
        () => parseBackfillRequest({ from: demo.replay.from, to: demo.replay.to, rate: '-3' }),
        /--rate "-3"/,
      );
      assert.throws(() => parseBackfillRequest({ from: demo.replay.to, to: demo.replay.from }), /must be before --to/);
    });
  });
});

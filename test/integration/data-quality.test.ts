import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import {
  type DataQualityActivities,
  type DqTuning,
  createDataQualityActivities,
  runDataQualityHere,
} from '../../src/activities/data-quality';
import { type FinanceLoadActivities, createFinanceLoadActivities } from '../../src/activities/finance-load';
import {
  DQ_CATALOGUE,
  DQ_CHECKS,
  type DqCheckName,
  type DqResult,
  type DqRunSummary,
  dayWindowOf,
} from '../../src/contracts/data-quality';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { factKey, linesFor, postingKey } from '../../src/ledger/posting-rules';
import { createLogger } from '../../src/logger';
import { createOltpPool, ensureOltpSchema, recordInOltp } from '../../src/simulator/oltp';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { scanValue } from '../../src/quality/pii-scanner';
import { latestDqResults } from '../../src/stores/data-quality';
import { lastPublishedWindow } from '../../src/stores/finance-ledger';
import { postJournalEntry } from '../../src/stores/ledger';
import { migrateAsOwner } from '../../src/stores/migrate';
import { admitFacts } from '../../src/stores/payment-inbox';
import { createPool } from '../../src/stores/postgres';
import { type SnowflakeSession, connectSnowflake } from '../../src/stores/snowflake';
import { migrateSnowflake } from '../../src/stores/snowflake-migrate';
import { dataQualityWorkflow } from '../../src/workflows/data-quality';
import { FINANCE_TASK_QUEUE } from '../../src/workflows/finance-load';
import { within } from '../support/pipeline';
import { config, requireServices, uniqueId } from '../support/stack';

// The data-quality checks against the real stack (Postgres, Snowflake's local server, Temporal with the
// finance worker as a process). Each test scopes its run to its own payment-id prefix, so defects planted
// here are invisible to the whole-pipeline scope that gates finance. Issue 15: each check fails on a
// planted defect and passes on a clean run; a failing money check blocks publishing the finance window.

const WORKER = 'src/workers/finance-worker-main.ts';
const log = createLogger('data-quality-test');
// Postings are due at once: the test posts them itself, no workflow in between.
const TUNING: Partial<DqTuning> = { postingSlaMs: 0 };

describe('data-quality checks: each fails on its planted defect, all pass on a clean run', () => {
  const pool = createPool(config, 4);
  const owner = createPool(config, 1, 'MIGRATION_DATABASE_URL');
  /** The scopes this suite planted defects in: their facts and deliveries are removed afterwards. */
  const scopes: string[] = [];
  const scoped = (prefix: string): string => {
    const scope = uniqueId(prefix);
    scopes.push(scope);
    return scope;
  };
  const oltp = createOltpPool(config, 2);
  // Its own OLTP schema: the legacy ledger rows written here are the only ones the checks see.
  const oltpSchema = `dq_${Date.now().toString(36)}`;
  let snowflake: SnowflakeSession;
  let connection: Connection;
  let client: Client;
  let worker: PipelineProcess | undefined;
  let dq: DataQualityActivities;
  const window = dayWindowOf(Date.now());

  const fact = (scope: string, paymentId: string, type: string, extra: Record<string, unknown> = {}): PaymentEvent =>
    ({
      version: 1,
      type,
      idempotencyKey: `${scope}-${paymentId}-${type}`,
      paymentId: `${scope}-${paymentId}`,
      merchantId: 'merchant-dq-test',
      region: 'eu',
      currency: 'EUR',
      occurredAt: new Date().toISOString(),
      source: 'webhook',
      sourceSequence: 1,
      ...(type === 'captured' && { captureId: 'c1', amountMinor: 1000, platformFeeMinor: 30 }),
      ...(type === 'authorized' && { amountMinor: 1000 }),
      ...(type === 'settled' && { settlementId: 's1', captureId: 'c1', amountMinor: 1000, feeMinor: 20 }),
      ...(type === 'refunded' && { refundId: 'r1', amountMinor: 500 }),
      ...extra,
    }) as PaymentEvent;

  const post = async (f: PaymentEvent): Promise<number> =>
    (
      await postJournalEntry(pool, {
        postingKey: postingKey(f.paymentId, factKey(f)),
        paymentId: f.paymentId,
        merchantId: f.merchantId,
        factType: f.type,
        idempotencyKey: f.idempotencyKey,
        occurredAt: f.occurredAt,
        lines: linesFor(f),
      })
    ).entryId;

  const run = (scope: string): Promise<{ results: DqResult[]; summary: DqRunSummary }> =>
    runDataQualityHere(dq, { window, scope, tuning: TUNING });
  const resultOf = (results: DqResult[], check: DqCheckName): DqResult => {
    const r = results.find((x) => x.check === check);
    assert.ok(r, `no result for ${check}`);
    return r;
  };
  const scopedFailures = (s: DqRunSummary): DqCheckName[] => s.failed.filter((c) => DQ_CATALOGUE[c].scoped);

  /** Publishes every committed entry in process, with the finance load's own activities gated by `scope`. */
  const publishAll = async (finance: FinanceLoadActivities): Promise<void> => {
    for (let i = 0; i < 20; i++) {
      const w = await finance.planFinanceWindow();
      if (!w) return;
      const request = { ...w, loadId: `load/${w.lo}-${w.hi}` };
      const loaded = await finance.loadFinanceWindow(request);
      await finance.verifyFinanceWindow(request);
      await finance.publishFinanceWindow({ ...request, loadedAt: loaded.loadedAt });
    }
    throw new Error('still windows to publish after 20 loads');
  };
  const financeFor = (scope: string): FinanceLoadActivities =>
    createFinanceLoadActivities({ pool, snowflake, log, dataQualityScope: scope });

  before(async () => {
    await requireServices('postgres', 'temporal', 'snowflake');
    await migrateAsOwner(config);
    await migrateSnowflake(config);
    snowflake = await connectSnowflake(config);
    await ensureOltpSchema(oltp, oltpSchema);
    dq = createDataQualityActivities({ pool, oltp, oltpSchema, snowflake, log });
    connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
    client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  });

  after(async () => {
    if (worker) await within(worker.stop(), 30_000, 'finance worker to stop').catch(() => worker?.kill9());
    await snowflake?.close();
    await connection?.close();
    // The planted defects must not fail a whole-pipeline run later (it gates finance publication).
    for (const scope of scopes) {
      await owner.query('delete from payments.facts where payment_id like $1', [`${scope}-%`]);
      await owner.query('delete from quality.fact_deliveries where payment_id like $1', [`${scope}-%`]);
    }
    await owner.end();
    await oltp.query(`drop schema if exists ${oltpSchema} cascade`);
    await oltp.end();
    await pool.end();
  });

  it('a clean run passes every check, run by the DataQuality workflow, with rows in Postgres and Snowflake', async () => {
    const scope = scoped('dq-clean');
    const authorized = fact(scope, 'p1', 'authorized');
    const captured = fact(scope, 'p1', 'captured');
    const settled = fact(scope, 'p1', 'settled');
    // One redelivery with the same content: expected from at-least-once sources, under the threshold.
    await admitFacts(pool, [authorized, captured]);
    await admitFacts(pool, [captured, settled]);
    await recordInOltp(oltp, [authorized, captured, settled], oltpSchema);
    await post(captured);
    await post(settled);

    worker = startPipelineProcess('finance-worker-dq', WORKER, {
      FINANCE_LOAD_INTERVAL_S: '0',
      CDC_SCHEMA: oltpSchema,
    });
    await within(worker.ready, 90_000, `the finance worker to be ready (log: ${worker.logFile})`);
    const summary = await client.workflow.execute(dataQualityWorkflow, {
      taskQueue: FINANCE_TASK_QUEUE,
      workflowId: `data-quality/${window}/${scope}`,
      args: [{ window, scope, tuning: TUNING }],
      workflowExecutionTimeout: '3 minutes',
    });
    assert.equal(summary.checks, DQ_CHECKS.length);
    assert.deepEqual(scopedFailures(summary), [], JSON.stringify(summary.byCheck, null, 2));
    assert.ok((summary.byCheck['duplicates.repeat_rate']?.measured ?? 0) > 0, 'the redelivery is counted');
    assert.match(summary.byCheck['ledger.oltp_counterpart']?.summary ?? '', /^2 legacy OLTP ledger rows all have/);

    const latest = await latestDqResults(pool, scope, [window]);
    assert.deepEqual(latest.map((r) => r.check).sort(), [...DQ_CHECKS].sort());
    assert.ok(latest.every((r) => r.runId === summary.runId));
    assert.ok(summary.runId.endsWith(`/${window}`), 'the run id names its window');
    const rows = await snowflake.query<{ N: number }>('SELECT COUNT(*) AS N FROM QUALITY.DQ_RESULTS WHERE RUN_ID = ?', [
      summary.runId,
    ]);
    assert.equal(Number(rows[0]!.N), DQ_CHECKS.length);
  });

  it('a duplicate with other content fails duplicates.conflicting and names the key', async () => {
    const scope = scoped('dq-conflict');
    const first = fact(scope, 'p1', 'captured');
    const other = { ...first, amountMinor: 2000 } as PaymentEvent;
    await admitFacts(pool, [first]);
    await admitFacts(pool, [other]);
    await post(first);
    const { results } = await run(scope);
    const r = resultOf(results, 'duplicates.conflicting');
    assert.equal(r.passed, false);
    assert.equal(r.measured, 1);
    assert.match(JSON.stringify(r.details), new RegExp(first.idempotencyKey));
    assert.equal(resultOf(results, 'ledger.missing_postings').passed, true);
  });

  it('a fact without postings fails ledger.missing_postings and ledger.oltp_counterpart; posting it makes the re-run pass', async () => {
    const scope = scoped('dq-unposted');
    const captured = fact(scope, 'p1', 'captured');
    await admitFacts(pool, [captured]);
    await recordInOltp(oltp, [captured], oltpSchema);
    const first = await run(scope);
    const legacy = resultOf(first.results, 'ledger.oltp_counterpart');
    assert.equal(legacy.passed, false);
    assert.equal(legacy.measured, 2, 'both legacy rows (debit and credit) lack their journal entry');
    const before = resultOf(first.results, 'ledger.missing_postings');
    assert.equal(before.passed, false);
    assert.equal(before.measured, 1);
    assert.match(before.summary, new RegExp(postingKey(captured.paymentId, factKey(captured))));
    assert.deepEqual(before.details['byCurrency'], { EUR: { facts: 1, amountMinor: '1000' } });

    await post(captured);
    const after = await run(scope);
    assert.deepEqual(scopedFailures(after.summary), []);
    const latest = await latestDqResults(pool, scope, [window]);
    assert.equal(latest.find((r) => r.check === 'ledger.missing_postings')?.passed, true, 'the re-run supersedes');
  });

  it('a late fact fails ordering.lateness, a refund before its capture fails ordering.before_precondition', async () => {
    const scope = scoped('dq-late');
    const late = fact(scope, 'p1', 'authorized', { occurredAt: new Date(Date.now() - 3 * 3_600_000).toISOString() });
    const refund = fact(scope, 'p2', 'refunded', { source: 'gateway' });
    await admitFacts(pool, [late]);
    await admitFacts(pool, [refund]);
    const { results } = await run(scope);
    const lateness = resultOf(results, 'ordering.lateness');
    assert.equal(lateness.passed, false);
    assert.deepEqual(lateness.details['examples'], [late.idempotencyKey]);
    // Skews and rates are rounded: a long float in the details would read as a card number.
    assert.deepEqual(scanValue(results.map((r) => r.details)), []);
    const order = resultOf(results, 'ordering.before_precondition');
    assert.equal(order.passed, false);
    assert.deepEqual(order.perSource, { gateway: 1 });
  });

  it('a journal entry missing from Snowflake fails ledger.snowflake_completeness; reloading the window restores it', async () => {
    const scope = scoped('dq-warehouse');
    const captured = fact(scope, 'p1', 'captured');
    await admitFacts(pool, [captured]);
    const entryId = await post(captured);
    const finance = financeFor(scope);
    await publishAll(finance);
    assert.equal(resultOf((await run(scope)).results, 'ledger.snowflake_completeness').passed, true);

    await snowflake.query('DELETE FROM FINANCE.JOURNAL_LINES WHERE ENTRY_ID = ?', [entryId]);
    await snowflake.query('DELETE FROM FINANCE.JOURNAL_ENTRIES WHERE ENTRY_ID = ?', [entryId]);
    const missing = resultOf((await run(scope)).results, 'ledger.snowflake_completeness');
    assert.equal(missing.passed, false);
    assert.deepEqual(missing.details['missingEntryIds'], [String(entryId)]);
    assert.match(missing.summary, /EUR: ledger 3 lines 1000\/1000, Snowflake 0 lines 0\/0/);

    // The finance load's replay of the window restores exactly the rows Snowflake lacks.
    const xid = (
      await pool.query<{ xid: string }>('select xid::text from ledger.journal_entries where entry_id = $1', [entryId])
    ).rows[0]!.xid;
    const w = (
      await pool.query<{ lo: string; hi: string }>(
        'select lo::text, hi::text from finance.windows where lo <= $1::xid8 and hi > $1::xid8',
        [xid],
      )
    ).rows[0]!;
    await finance.loadFinanceWindow({ ...w, loadId: `load/${w.lo}-${w.hi}` });
    assert.equal(resultOf((await run(scope)).results, 'ledger.snowflake_completeness').passed, true);
  });

  it('a failing money check holds the finance window with entries of its payment and says why; once fixed, it publishes', async () => {
    const scope = scoped('dq-gate');
    const finance = financeFor(scope);
    await publishAll(finance);
    // p1 is captured (posted) but its settlement is not; p3's capture never posts and p3 has no entry at all.
    const paid = fact(scope, 'p1', 'captured');
    const unposted = fact(scope, 'p1', 'settled');
    const elsewhere = fact(scope, 'p3', 'captured');
    await admitFacts(pool, [paid, unposted, elsewhere]);
    await post(paid);
    assert.deepEqual((await run(scope)).summary.blocking, ['ledger.missing_postings']);

    const w = await finance.planFinanceWindow();
    assert.ok(w, 'the new entry makes a window to publish');
    const request = { ...w, loadId: `load/${w.lo}-${w.hi}` };
    const loaded = await finance.loadFinanceWindow(request);
    await finance.verifyFinanceWindow(request);
    await assert.rejects(finance.publishFinanceWindow({ ...request, loadedAt: loaded.loadedAt }), (err: Error) => {
      // The activity hands it to the workflow as a non-retryable ApplicationFailure of this type.
      assert.equal((err as Error & { type?: string }).type, 'FinanceQualityGateError');
      assert.match(err.message, /ledger\.missing_postings/);
      assert.match(err.message, new RegExp(paid.paymentId));
      return true;
    });
    assert.equal((await lastPublishedWindow(pool))?.hi === w.hi, false, 'the window is not published');
    const failure = await pool.query<{ reason: string }>(
      'select reason from finance.load_failures where load_id = $1 order by failure_id desc limit 1',
      [request.loadId],
    );
    assert.match(failure.rows[0]?.reason ?? '', /ledger\.missing_postings/);

    // p1's settlement posts; p3's capture is still missing, and the check still fails and says so, but p3
    // has no entry in the window: its numbers are not partial, so the window publishes.
    await post(unposted);
    const after = await run(scope);
    assert.deepEqual(after.summary.blocking, ['ledger.missing_postings']);
    const missing = after.results.find((r) => r.check === 'ledger.missing_postings');
    assert.deepEqual(missing?.details.paymentIds, [elsewhere.paymentId]);
    const published = await finance.publishFinanceWindow({ ...request, loadedAt: loaded.loadedAt });
    assert.equal(published.outcome, 'published');
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { createLogger } from '../../src/logger';
import { factKey, linesFor, postingKey } from '../../src/ledger/posting-rules';
import { createOltpPool, ensureOltpSchema, recordInOltp } from '../../src/simulator/oltp';
import { type Simulation, simulatePayments } from '../../src/simulator/payments';
import { type BreakPlan, type InjectedBreak, simulateSettlementFiles } from '../../src/simulator/settlement-files';
import { dayAfter } from '../../src/reconciliation/match';
import { postJournalEntry } from '../../src/stores/ledger';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { listBreaks, listRuns } from '../../src/stores/reconciliation';
import { createS3Client, ensureBucket } from '../../src/stores/s3';
import { publishSettlementFiles } from '../../src/stores/settlement-files';
import { type SnowflakeSession, connectSnowflake } from '../../src/stores/snowflake';
import { migrateSnowflake } from '../../src/stores/snowflake-migrate';
import { createFinanceWorker } from '../../src/workers/finance-worker';
import {
  type ReconciliationInput,
  type ReconciliationResult,
  reconciliationWorkflow,
  reconciliationWorkflowId,
} from '../../src/workflows/reconciliation';
import { config, requireServices, uniqueId } from '../support/stack';

// ReconciliationWorkflow against the real stack: the simulator's facts posted to the ledger (the posting
// rules, one journal entry per fact, as the payment workflow posts them) and written to an OLTP schema as
// PayLink's API writes them, its settlement files published to S3; the finance worker runs in-process on
// its own task queue. Every window of a run together must report exactly the injected breaks.

const PAYMENTS = 120;

describe('reconciliation: ledger ↔ OLTP ↔ settlement files, per UTC day', () => {
  const pool = createPool(config, 4);
  const oltp = createOltpPool(config, 2);
  const s3 = createS3Client(config);
  const bucket = uniqueId('recon').toLowerCase();
  const taskQueue = uniqueId('reconciliation-test');
  let snowflake: SnowflakeSession;
  let connection: Connection;
  let nativeConnection: NativeConnection;
  let client: Client;
  let worker: Worker;
  let running: Promise<void>;

  before(async () => {
    await requireServices('postgres', 'temporal', 'snowflake', 's3');
    await migrateAsOwner(config);
    await migrateSnowflake(config);
    await ensureBucket(s3, bucket);
    snowflake = await connectSnowflake(config);
    connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
    nativeConnection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
    client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    worker = await createFinanceWorker({
      connection: nativeConnection,
      namespace: config.TEMPORAL_NAMESPACE,
      pool,
      snowflake,
      log: createLogger('reconciliation-test'),
      taskQueue,
      oltp,
      oltpSchema: config.CDC_SCHEMA,
      reconciliation: { oltp, s3, bucket },
    });
    running = worker.run();
  });

  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await snowflake?.close();
    await connection?.close();
    await nativeConnection?.close();
    await pool.end();
    await oltp.end();
    s3.destroy();
  });

  /** Posts every fact once, as the payment workflow does: the posting rules, idempotent by posting key. */
  async function postLedger(sim: Simulation): Promise<void> {
    const disputed = new Map<string, number>();
    for (const e of sim.events)
      if (e.type === 'chargeback_opened') disputed.set(`${e.paymentId}/${e.chargebackId}`, e.amountMinor);
    const byPayment = new Map<string, PaymentEvent[]>();
    for (const e of sim.events) byPayment.set(e.paymentId, [...(byPayment.get(e.paymentId) ?? []), e]);
    const postPayment = async (facts: PaymentEvent[]): Promise<void> => {
      for (const e of facts) {
        const lines = linesFor(e, 'chargebackId' in e ? (disputed.get(`${e.paymentId}/${e.chargebackId}`) ?? 0) : 0);
        if (lines.length === 0) continue;
        await postJournalEntry(pool, {
          postingKey: postingKey(e.paymentId, factKey(e)),
          paymentId: e.paymentId,
          merchantId: e.merchantId,
          factType: e.type,
          idempotencyKey: e.idempotencyKey,
          occurredAt: e.occurredAt,
          lines,
        });
      }
    };
    const payments = [...byPayment.values()];
    for (let i = 0; i < payments.length; i += 4) await Promise.all(payments.slice(i, i + 4).map(postPayment));
  }

  interface Prepared {
    runId: string;
    scope: string;
    schema: string;
    /** One bucket per run: a partner's file for a day has one name, so runs cannot share a bucket. */
    bucket: string;
    truth: InjectedBreak[];
    days: string[];
  }

  /** Moves payment p (its number) `p % days` days later, so several windows hold data and breaks. */
  function spread(sim: Simulation, days: number): Simulation {
    const shift = (e: PaymentEvent): PaymentEvent => {
      const n = Number(/-p(\d+)$/.exec(e.paymentId)?.[1] ?? 0) % days;
      return { ...e, occurredAt: new Date(Date.parse(e.occurredAt) + n * 86_400_000).toISOString() };
    };
    return { ...sim, events: sim.events.map(shift), deliveries: sim.deliveries.map(shift) };
  }

  async function prepare(seed: number, breaks: 'none' | 'default' | BreakPlan, spreadDays = 1): Promise<Prepared> {
    const runId = uniqueId(`rc${seed}`);
    const sim = spread(simulatePayments({ payments: PAYMENTS, seed, duplicateRate: 0, runId }), spreadDays);
    const truth = simulateSettlementFiles(sim, { seed, breaks });
    const schema = `recon_${runId.replace(/[^a-z0-9]/gi, '_').toLowerCase()}`.slice(0, 60);
    await ensureOltpSchema(oltp, schema);
    await recordInOltp(oltp, sim.deliveries, schema);
    await postLedger(sim);
    const runBucket = runId.toLowerCase();
    await ensureBucket(s3, runBucket);
    await publishSettlementFiles(s3, runBucket, truth.files);
    const days = [
      ...new Set([...sim.events.map((e) => e.occurredAt.slice(0, 10)), ...truth.files.map((f) => f.date)]),
    ].sort();
    return { runId, scope: `${runId}-`, schema, bucket: runBucket, truth: truth.breaks, days };
  }

  const reconcile = (p: Prepared, window: string): Promise<ReconciliationResult> => {
    const input: ReconciliationInput = { window, scope: p.scope, oltpSchema: p.schema, bucket: p.bucket };
    return client.workflow.execute(reconciliationWorkflow, {
      taskQueue,
      workflowId: reconciliationWorkflowId(window, p.scope),
      args: [input],
      workflowExecutionTimeout: '3 minutes',
    });
  };

  const norm = (b: { type: string; paymentId: string; amountMinor: number; currency: string }): string =>
    `${b.type}|${b.paymentId}|${b.amountMinor}|${b.currency}`;

  /** Suspense balance of the scope per currency: debits − credits. */
  const suspenseBalance = async (scope: string): Promise<Record<string, number>> => {
    const r = await pool.query<{ currency: string; net: string }>(
      `select l.currency, sum(case when l.side = 'debit' then l.amount_minor else -l.amount_minor end)::text as net
         from ledger.journal_lines l join ledger.journal_entries e on e.entry_id = l.entry_id
        where l.account_code = 'suspense' and e.payment_id like $1 group by l.currency`,
      [`${scope}%`],
    );
    return Object.fromEntries(r.rows.filter((x) => x.net !== '0').map((x) => [x.currency, Number(x.net)]));
  };

  for (const [seed, spreadDays] of [
    [3, 1],
    [17, 1],
    [2026, 3],
  ] as const) {
    it(`seed ${seed}, payments over ${spreadDays} day(s): every window together reports exactly the injected breaks, by type, payment and amount`, async () => {
      const p = await prepare(seed, 'default', spreadDays);
      assert.ok(p.days.length >= spreadDays, `windows ${p.days.join(', ')}`);
      assert.equal(p.truth.length, 14);
      const results: ReconciliationResult[] = [];
      for (const day of p.days) results.push(await reconcile(p, day));
      const found = await listBreaks(pool, { scope: p.scope });
      assert.deepEqual(found.map(norm).sort(), p.truth.map(norm).sort());
      assert.ok(results.reduce((s, r) => s + r.items.matched, 0) > 50, 'most items match');
      // Timing breaks are resolved by the next day's run (its file books the late line); the others stay open.
      const open = await listBreaks(pool, { scope: p.scope, open: true });
      assert.deepEqual(
        open.map(norm).sort(),
        p.truth
          .filter((b) => b.type !== 'timing')
          .map(norm)
          .sort(),
      );
      // Suspense holds exactly the open breaks' money, signed by direction; timing entries were closed.
      const expected: Record<string, number> = {};
      for (const b of open) expected[b.currency] = (expected[b.currency] ?? 0) - b.direction * b.amountMinor;
      for (const [c, v] of Object.entries(expected)) if (v === 0) delete expected[c];
      assert.deepEqual(await suspenseBalance(p.scope), expected);
      assert.equal(
        results.reduce((s, r) => s + r.suspense.closed, 0),
        p.truth.filter((b) => b.type === 'timing').length,
      );
      // Snowflake has the same breaks.
      const [sf] = await snowflake.query<{ N: number }>(
        `SELECT COUNT(*) AS N FROM FINANCE.RECONCILIATION_BREAKS b JOIN FINANCE.RECONCILIATION_RUNS r
            ON r.RUN_ID = b.RUN_ID WHERE r.STATUS = 'current' AND b.SCOPE = ?`,
        [p.scope],
      );
      assert.equal(Number(sf!.N), found.length);
    });
  }

  it('a malformed settlement file fails the run at once, naming the file, line and column; nothing is recorded', async () => {
    const p = await prepare(8, 'none');
    const day = p.days[0]!;
    const bad = 'payout_reconciliation_itemized_broken.csv';
    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    await s3.send(
      new PutObjectCommand({
        Bucket: p.bucket,
        Key: `settlements/stripe/date=${day}/${bad}`,
        Body: 'automatic_payout_id,currency\r\npo_1,eur\r\n',
      }),
    );
    await assert.rejects(reconcile(p, day), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      const chain: string[] = [];
      for (let e: unknown = err; e instanceof Error; e = e.cause) chain.push(`${e.name}: ${e.message}`);
      const text = chain.join(' <- ');
      assert.match(text, /ApplicationFailure: settlements\/stripe\//);
      assert.match(text, /line \d+/);
      assert.match(text, new RegExp(bad.replace(/\./g, '\\.')));
      return true;
    });
    assert.deepEqual(await listRuns(pool, day, p.scope), []);
  });

  it('a clean file set gives zero breaks, a zero clearing difference and no suspense', async () => {
    const p = await prepare(5, 'none');
    for (const day of p.days) {
      const r = await reconcile(p, day);
      assert.equal(r.breaks, 0, `window ${day}: ${JSON.stringify(r.breaksByType)}`);
      for (const [c, v] of Object.entries(r.byCurrency)) assert.equal(v.clearingDifferenceMinor, 0, `${day} ${c}`);
    }
    assert.deepEqual(await listBreaks(pool, { scope: p.scope }), []);
    assert.deepEqual(await suspenseBalance(p.scope), {});
  });

  it('a re-run supersedes the earlier run, keeps it, and duplicates no break, suspense entry or Snowflake row', async () => {
    const p = await prepare(41, { missing: 2, duplicate: 1, fee_mismatch: 1 });
    for (const day of p.days) await reconcile(p, day);
    const before = await listBreaks(pool, { scope: p.scope });
    const suspense = await suspenseBalance(p.scope);
    const window = before[0]!.window;
    const again = await reconcile(p, window);
    assert.equal(again.suspense.opened, 0);
    assert.ok(again.suspense.alreadyPosted > 0);
    assert.ok(again.supersededRunId !== null);
    const runs = await listRuns(pool, window, p.scope);
    assert.deepEqual(
      runs.map((r) => r.status),
      ['superseded', 'current'],
    );
    assert.equal(runs[0]!.supersededBy, runs[1]!.runId);
    const after = await listBreaks(pool, { scope: p.scope });
    assert.deepEqual(after.map(norm).sort(), before.map(norm).sort());
    assert.deepEqual(after.map((b) => b.firstSeenWindow).sort(), before.map((b) => b.firstSeenWindow).sort());
    assert.deepEqual(await suspenseBalance(p.scope), suspense);
    const history = await listBreaks(pool, { scope: p.scope, window, allRuns: true });
    assert.equal(history.length, 2 * before.filter((b) => b.window === window).length);
    const [sf] = await snowflake.query<{ RUNS: number; BREAKS: number }>(
      `SELECT (SELECT COUNT(*) FROM FINANCE.RECONCILIATION_RUNS WHERE SCOPE = ? AND WINDOW_DAY = ?) AS RUNS,
              (SELECT COUNT(*) FROM FINANCE.RECONCILIATION_BREAKS WHERE SCOPE = ? AND WINDOW_DAY = ?) AS BREAKS`,
      [p.scope, window, p.scope, window],
    );
    assert.deepEqual({ runs: Number(sf!.RUNS), breaks: Number(sf!.BREAKS) }, { runs: 2, breaks: history.length });
    // Aging: the next day's run (no data of its own) carries over every open break of the earlier windows,
    // the oldest aged by days since the window that first found it.
    const next = dayAfter(p.days.at(-1)!);
    const nextRun = await reconcile(p, next);
    assert.equal(nextRun.breaks, 0);
    const earlierOpen = after.filter((b) => b.status === 'open');
    assert.ok(earlierOpen.length > 0);
    assert.equal(nextRun.carriedOver.breaks, earlierOpen.length);
    const days = (a: string, b: string): number => (Date.parse(a) - Date.parse(b)) / 86_400_000;
    assert.equal(nextRun.carriedOver.oldestAgeDays, Math.max(...earlierOpen.map((b) => days(next, b.firstSeenWindow))));
    assert.ok(nextRun.carriedOver.oldestAgeDays >= 1);
  });
});

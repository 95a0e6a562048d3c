import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { PaymentEvent } from '../../src/contracts/payment-event';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  Client,
  Connection,
  ScheduleNotFoundError,
  WorkflowFailedError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import { factMessage, traceIdOf } from '../../src/contracts/envelope';
import { type MoneyTrail, traceMoney } from '../../src/ops/finance-trace';
import { CURRENT_SCHEMAS } from '../../src/quality/schema-registry';
import { simulatePayments } from '../../src/simulator/payments';
import { repoRoot } from '../../src/stack/service';
import { parseObjectKey } from '../../src/streams/archiver/layout';
import type { FinanceWindow } from '../../src/contracts/finance';
import type { JournalLine } from '../../src/ledger/posting-rules';
import { totalsDifferences } from '../../src/ledger/seals';
import { verifyFinance } from '../../src/ops/finance-verify';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import {
  countWindowEntries,
  lastPublishedWindow,
  ledgerWindowTotals,
  publishedWindows,
  watermarkStatus,
} from '../../src/stores/finance-ledger';
import { warehouseWindowTotals } from '../../src/stores/finance-warehouse';
import { postJournalEntry } from '../../src/stores/ledger';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { type SnowflakeSession, connectSnowflake } from '../../src/stores/snowflake';
import { migrateSnowflake } from '../../src/stores/snowflake-migrate';
import {
  FINANCE_SCHEDULE_ID,
  FINANCE_TASK_QUEUE,
  type FinanceLoadInput,
  type FinanceLoadResult,
  financeLoadWorkflow,
} from '../../src/workflows/finance-load';
import { testKafka } from '../support/kafka';
import { waitFor, within } from '../support/pipeline';
import { config, requireServices, topics, uniqueId } from '../support/stack';

// The finance load against the real stack: Postgres (ledger), Temporal (the finance worker as a real
// process, no schedule: the test starts each load), Snowflake's local server. The Done-means lines
// of issue 14: (a) a transaction held open is loaded once it commits, (b) kill -9 mid-load, (c) reruns
// and replays change nothing, (d) a ledger row altered by the owner is named by verify; and every row
// leads back to its events: the Kafka coordinates of its fact, in Snowflake and in `npm run trace`.

const WORKER = 'src/workers/finance-worker-main.ts';
const TIMEOUT_MS = 120_000;

describe('finance load: ledger → Snowflake, exactly once, verified and sealed', () => {
  const pool = createPool(config, 4);
  const owner = createPool(config, 2, 'MIGRATION_DATABASE_URL');
  let snowflake: SnowflakeSession;
  let connection: Connection;
  let client: Client;
  let schedulePaused = false;
  const processes: PipelineProcess[] = [];

  const startWorker = async (env: NodeJS.ProcessEnv = {}): Promise<PipelineProcess> => {
    const p = startPipelineProcess('finance-worker', WORKER, { FINANCE_LOAD_INTERVAL_S: '0', ...env });
    processes.push(p);
    await within(p.ready, 60_000, `the finance worker to be ready (log: ${p.logFile})`);
    return p;
  };
  const stopWorkers = async (): Promise<void> => {
    const stopping = processes.splice(0);
    await Promise.allSettled(
      stopping.map((p) => within(p.stop(), 30_000, 'finance worker to stop').catch(() => p.kill9())),
    );
  };

  const runLoad = (input: FinanceLoadInput = {}): Promise<FinanceLoadResult> =>
    client.workflow.execute(financeLoadWorkflow, {
      taskQueue: FINANCE_TASK_QUEUE,
      workflowId: uniqueId('finance-load-test'),
      args: [input],
      workflowExecutionTimeout: '3 minutes',
    });

  /** Runs loads until every entry with xid ≤ `xid` is published. */
  const loadPast = async (xid: string): Promise<void> => {
    await waitFor(`windows published past xid ${xid}`, Date.now() + TIMEOUT_MS, async () => {
      const last = await lastPublishedWindow(pool);
      const lo = last?.hi ?? '0';
      if (BigInt(lo) > BigInt(xid)) return true;
      if ((await countWindowEntries(pool, { lo, hi: (BigInt(xid) + 1n).toString() })) === 0) return true;
      const r = await runLoad();
      return `last load ${r.outcome} ${r.loadId ?? ''}; published hi ${last?.hi ?? 0}`;
    });
  };

  const lines = (amountMinor: number, currency: string): JournalLine[] => [
    { account: 'gateway_clearing', side: 'debit', amountMinor, currency },
    { account: 'merchant_payable', side: 'credit', amountMinor, currency },
  ];
  const post = async (
    paymentId: string,
    amountMinor: number,
    currency = 'EUR',
  ): Promise<{ entryId: number; xid: string }> => {
    const r = await postJournalEntry(pool, {
      postingKey: `payment/${paymentId}/captured:c1`,
      paymentId,
      merchantId: 'merchant-finance-test',
      factType: 'captured',
      idempotencyKey: `${paymentId}:captured`,
      occurredAt: new Date().toISOString(),
      lines: lines(amountMinor, currency),
    });
    return { entryId: r.entryId, xid: await xidOf(r.entryId) };
  };
  const xidOf = async (entryId: number): Promise<string> =>
    (
      await pool.query<{ xid: string }>('select xid::text as xid from ledger.journal_entries where entry_id = $1', [
        entryId,
      ])
    ).rows[0]!.xid;
  const inWarehouse = async (entryIds: number[], view = 'FINANCE.JOURNAL_ENTRIES'): Promise<number> => {
    const rows = await snowflake.query<{ N: number }>(
      `SELECT COUNT(*) AS N FROM ${view} WHERE ENTRY_ID IN (${entryIds.map(() => '?').join(', ')})`,
      entryIds,
    );
    return rows[0]!.N;
  };
  /** Every published window: Snowflake's counts and sums per currency equal the ledger's, no duplicate rows. */
  const assertWarehouseEqualsLedger = async (): Promise<number> => {
    const windows = await publishedWindows(pool);
    for (const w of windows) {
      const ledger = await ledgerWindowTotals(pool, w);
      const warehouse = await warehouseWindowTotals(snowflake, w);
      assert.deepEqual(totalsDifferences(ledger, warehouse), [], `window ${w.lo}-${w.hi}`);
      assert.equal(warehouse.duplicateEntries, 0, `duplicate entries in window ${w.lo}-${w.hi}`);
      assert.equal(warehouse.duplicateLines, 0, `duplicate lines in window ${w.lo}-${w.hi}`);
    }
    const [dupes] = await snowflake.query<{ E: number; L: number }>(
      `SELECT (SELECT COUNT(*) - COUNT(DISTINCT ENTRY_ID) FROM FINANCE.JOURNAL_ENTRIES) AS E,
              (SELECT COUNT(*) - COUNT(DISTINCT LINE_ID) FROM FINANCE.JOURNAL_LINES) AS L`,
    );
    assert.deepEqual(dupes, { E: 0, L: 0 }, 'no entry or line is in Snowflake twice');
    return windows.length;
  };

  before(async () => {
    await requireServices('postgres', 'temporal', 'snowflake', 'kafka', 's3');
    await migrateAsOwner(config);
    await migrateSnowflake(config);
    snowflake = await connectSnowflake(config);
    connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
    client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    // A schedule left by a demo would start loads between the test's own: pause it for the suite.
    schedulePaused = await client.schedule
      .getHandle(FINANCE_SCHEDULE_ID)
      .pause('finance-load.test')
      .then(() => true)
      .catch((err: unknown) => {
        if (err instanceof ScheduleNotFoundError) return false;
        throw err;
      });
    await startWorker();
    // Publish whatever earlier runs left in the ledger, so each test starts at the chain's end.
    await loadPast((await pool.query<{ x: string }>('select pg_current_xact_id()::text as x')).rows[0]!.x);
  });

  after(async () => {
    if (schedulePaused) await client.schedule.getHandle(FINANCE_SCHEDULE_ID).unpause('finance-load.test done');
    await stopWorkers();
    await snowflake?.close();
    await connection?.close();
    await pool.end();
    await owner.end();
  });

  it('(a) a transaction held open while later ones commit is loaded once it commits', async () => {
    const run = uniqueId('fin-held');
    const held = await pool.connect();
    try {
      await held.query('begin');
      const heldEntry = await held.query<{ entry_id: number; xid: string }>(
        `insert into ledger.journal_entries (posting_key, payment_id, merchant_id, fact_type, idempotency_key, lines_hash, occurred_at)
         values ($1, $2, 'merchant-finance-test', 'captured', $3, 'held', now()) returning entry_id, xid::text as xid`,
        [`payment/${run}-0/captured:c1`, `${run}-0`, `${run}-0:captured`],
      );
      const { entry_id: heldId, xid: heldXid } = heldEntry.rows[0]!;
      for (const l of lines(700, 'GBP')) {
        await held.query(
          `insert into ledger.journal_lines (entry_id, account_code, merchant_id, side, amount_minor, currency)
           values ($1, $2, 'merchant-finance-test', $3, $4, $5)`,
          [heldId, l.account, l.side, l.amountMinor, l.currency],
        );
      }
      // Later transactions commit while the first stays open: their entry ids and xids are higher.
      const later = [await post(`${run}-1`, 1100), await post(`${run}-2`, 2200, 'USD')];
      assert.ok(later.every((e) => e.entryId > heldId && BigInt(e.xid) > BigInt(heldXid)));

      const r = await runLoad();
      const published = await lastPublishedWindow(pool);
      // The open transaction holds the watermark: neither it nor anything after it is published yet.
      assert.ok(
        BigInt(published?.hi ?? '0') <= BigInt(heldXid),
        `published ${published?.hi} must stay ≤ held ${heldXid}`,
      );
      assert.notEqual(r.outcome, 'published', 'nothing new below the held transaction to publish');
      assert.equal(
        await inWarehouse(
          later.map((e) => e.entryId),
          'FINANCE.V_JOURNAL_ENTRIES',
        ),
        0,
      );
      // …and status says how far behind it is and what holds it.
      const status = await watermarkStatus(pool);
      assert.ok(BigInt(status.safeHi) <= BigInt(heldXid), `safe watermark ${status.safeHi} ≤ held ${heldXid}`);
      assert.ok(status.heldBackEntries >= 2, `held back: ${status.heldBackEntries}`);
      assert.ok(status.oldestOpenTransaction, 'the open transaction is shown (same role here)');

      await held.query('commit');
      await loadPast(later[1]!.xid);
      const ids = [heldId, ...later.map((e) => e.entryId)];
      assert.equal(await inWarehouse(ids, 'FINANCE.V_JOURNAL_ENTRIES'), 3, 'all three published, once each');
      assert.equal(await inWarehouse(ids), 3);
    } finally {
      await held.query('rollback').catch(() => undefined);
      held.release();
    }
  });

  it('(b) kill -9 of the finance worker mid-load: after recovery Snowflake equals the ledger, no duplicates', async () => {
    const run = uniqueId('fin-kill');
    await stopWorkers();
    const faulty = await startWorker({ FINANCE_FAULT_HOLD_BEFORE_COMMIT_MS: '120000' });
    const posted: { entryId: number; xid: string }[] = [];
    for (let i = 0; i < 20; i++) posted.push(await post(`${run}-${i}`, 100 + i, i % 2 ? 'EUR' : 'JPY'));
    const loading = runLoad();
    loading.catch(() => undefined); // awaited below
    await waitFor('the load to hold inside its Snowflake transaction', Date.now() + TIMEOUT_MS, async () =>
      readFileSync(faulty.logFile, 'utf8').includes('fault: holding the load before COMMIT') ? true : 'not yet',
    );
    await faulty.kill9();
    processes.splice(processes.indexOf(faulty), 1);
    // Nothing of the killed transaction is visible.
    assert.equal(await inWarehouse(posted.map((e) => e.entryId)), 0, 'the killed load committed nothing');
    await startWorker();
    const result = await within(loading, TIMEOUT_MS, 'the load to finish on the new worker (heartbeat timeout, retry)');
    assert.equal(result.outcome, 'published');
    await loadPast(posted[posted.length - 1]!.xid);
    assert.equal(
      await inWarehouse(
        posted.map((e) => e.entryId),
        'FINANCE.V_JOURNAL_ENTRIES',
      ),
      posted.length,
    );
    await assertWarehouseEqualsLedger();
  });

  it('(c) re-running a load id and replaying windows change nothing', async () => {
    const run = uniqueId('fin-rerun');
    const first = await post(`${run}-1`, 5000);
    await post(`${run}-2`, 6000, 'USD');
    await loadPast(first.xid);
    const windows = await publishedWindows(pool);
    const last = windows[windows.length - 1]!;
    const count = async () =>
      (
        await snowflake.query<{ E: number; L: number; A: number; S: number; D: string }>(
          `SELECT (SELECT COUNT(*) FROM FINANCE.JOURNAL_ENTRIES) AS E, (SELECT COUNT(*) FROM FINANCE.JOURNAL_LINES) AS L,
                  (SELECT COUNT(*) FROM FINANCE.LOAD_AUDIT) AS A, (SELECT COUNT(*) FROM FINANCE.SEALS) AS S,
                  (SELECT TO_VARCHAR(CAST(SUM(DEBIT_MINOR) AS NUMBER(38,0))) FROM FINANCE.DAILY_BALANCES) AS D`,
        )
      )[0]!;
    const before = await count();

    const rerun = await runLoad({ window: { lo: last.lo, hi: last.hi } });
    assert.equal(rerun.outcome, 'already-published');
    assert.equal(rerun.entriesInserted + rerun.linesInserted, 0);
    assert.equal(rerun.seal, last.seal);
    // A replay over several windows (another load id) re-merges: it inserts nothing and publishes nothing new.
    const span: FinanceWindow = { lo: windows[Math.max(0, windows.length - 3)]!.lo, hi: last.hi };
    const replay = await runLoad({ window: span });
    assert.equal(replay.entriesInserted + replay.linesInserted, 0);
    assert.equal(replay.outcome, windows.length >= 2 ? 'superseded' : 'already-published');
    const afterRuns = await count();
    assert.deepEqual({ ...afterRuns, A: before.A }, before, 'no row added or changed by reruns');
    assert.ok(afterRuns.A <= before.A + 1, 'at most the replay’s own audit row');

    // A window whose rows went missing in Snowflake: the rerun restores exactly them (never skips).
    await snowflake.query('DELETE FROM FINANCE.JOURNAL_LINES WHERE ENTRY_ID = ?', [first.entryId]);
    const restore = await runLoad({
      window: windows.find((w) => BigInt(w.lo) <= BigInt(first.xid) && BigInt(first.xid) < BigInt(w.hi))!,
    });
    assert.equal(restore.linesInserted, 2);
    assert.equal(restore.outcome, 'already-published');
    await assertWarehouseEqualsLedger();
  });

  it('(d) a ledger row altered as the owner is named by verify', async () => {
    const run = uniqueId('fin-tamper');
    const victim = await post(`${run}-1`, 4200);
    await post(`${run}-2`, 4300);
    await loadPast(victim.xid);
    const clean = await verifyFinance(pool, snowflake);
    assert.ok(clean.ok, `verify before tampering: ${clean.problems.join('; ')}`);

    const line = (
      await owner.query<{ line_id: number }>(
        `select line_id from ledger.journal_lines where entry_id = $1 and side = 'debit'`,
        [victim.entryId],
      )
    ).rows[0]!.line_id;
    const setAmount = async (amount: number) => {
      const c = await owner.connect();
      try {
        await c.query('begin');
        await c.query('alter table ledger.journal_lines disable trigger journal_lines_append_only');
        await c.query('update ledger.journal_lines set amount_minor = $1 where line_id = $2', [amount, line]);
        await c.query('alter table ledger.journal_lines enable trigger journal_lines_append_only');
        await c.query('commit');
      } catch (err) {
        await c.query('rollback');
        throw err;
      } finally {
        c.release();
      }
    };
    await setAmount(4201);
    try {
      const report = await verifyFinance(pool, snowflake);
      assert.equal(report.ok, false);
      const bad = report.verdicts.filter((v) => !v.ok);
      assert.equal(bad.length, 1, report.problems.join('; '));
      assert.deepEqual(bad[0]!.ledger, { altered: [victim.entryId], missing: [], added: [] });
      assert.equal(bad[0]!.ledgerSealOk, false);
      assert.equal(bad[0]!.snowflakeSealOk, true, 'Snowflake still holds what was sealed');
      assert.ok(
        report.problems.some((p) => p.includes(`ledger: entries altered ${victim.entryId}`)),
        report.problems.join('; '),
      );
      // Re-running the sealed window now refuses to publish it again with another seal, loudly.
      const w = bad[0]!;
      await assert.rejects(runLoad({ window: { lo: w.lo, hi: w.hi } }), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        const chain: string[] = [];
        for (let e: unknown = err; e instanceof Error; e = e.cause) chain.push(`${e.name}: ${e.message}`);
        assert.match(chain.join(' <- '), /FinanceVerificationError|Snowflake does not match the ledger/);
        return true;
      });
    } finally {
      await setAmount(4200);
    }
    assert.ok((await verifyFinance(pool, snowflake)).ok, 'verify is clean again once the row is restored');
  });

  it('trace: every hop it prints exists, from the fact to the Snowflake row and its seal', async () => {
    const run = uniqueId('fin-trace');
    const paymentId = `${run}-1`;
    const key = `${paymentId}:captured`;
    const traceId = traceIdOf(key);
    await pool.query(
      `insert into payments.facts (idempotency_key, payment_id, fact_key, fact_type, occurred_at, body, signalled_at)
       values ($1, $2, 'captured:c1', 'captured', now(), $3, now())`,
      // A whole fact, as the router stores it: other readers of the inbox (the SLA sweep) parse every body.
      [
        key,
        paymentId,
        JSON.stringify(
          PaymentEvent.parse({
            version: 1,
            type: 'captured',
            idempotencyKey: key,
            paymentId,
            merchantId: 'merchant-finance-test',
            region: 'eu-west',
            currency: 'EUR',
            occurredAt: new Date().toISOString(),
            source: 'gateway',
            sourceSequence: 7,
            traceId,
            captureId: 'c1',
            amountMinor: 990,
            platformFeeMinor: 0,
          }),
        ),
      ],
    );
    const posted = await postJournalEntry(pool, {
      postingKey: `payment/${paymentId}/captured:c1`,
      paymentId,
      merchantId: 'merchant-finance-test',
      factType: 'captured',
      idempotencyKey: key,
      traceId,
      occurredAt: new Date().toISOString(),
      lines: lines(990, 'EUR'),
    });
    await loadPast(await xidOf(posted.entryId));
    const trail = await traceMoney(
      { pool, snowflake, client, uiUrl: config.TEMPORAL_UI_URL, namespace: config.TEMPORAL_NAMESPACE },
      String(posted.entryId),
    );
    assert.equal(trail.paymentId, paymentId);
    assert.deepEqual(
      trail.hops.map((h) => h.hop),
      ['source event', 'fact', 'workflow', 'journal entry', 'journal line', 'journal line', 'snowflake row', 'seal'],
    );
    for (const h of trail.hops) {
      switch (h.hop) {
        case 'source event':
          assert.equal(h.ref, `trace-id ${traceId}`);
          break;
        case 'fact':
          assert.equal(
            (await pool.query('select 1 from payments.facts where idempotency_key = $1', [h.ref])).rowCount,
            1,
          );
          break;
        case 'workflow':
          // No workflow ran for this hand-made payment: the hop must say so, not pretend.
          assert.equal(h.exists, false);
          await assert.rejects(client.workflow.getHandle(h.ref).describe(), WorkflowNotFoundError);
          break;
        case 'journal entry':
          assert.equal(h.ref, String(posted.entryId));
          break;
        case 'journal line':
          assert.equal(
            (
              await pool.query('select 1 from ledger.journal_lines where line_id = $1 and entry_id = $2', [
                h.ref,
                posted.entryId,
              ])
            ).rowCount,
            1,
          );
          break;
        case 'snowflake row': {
          const rows = await snowflake.query<{ LOAD_ID: string }>(
            'SELECT LOAD_ID FROM FINANCE.JOURNAL_ENTRIES WHERE ENTRY_ID = ?',
            [posted.entryId],
          );
          assert.deepEqual(rows, [{ LOAD_ID: h.detail.loadId }]);
          break;
        }
        case 'seal': {
          const [lo, hi] = h.ref.replace('window ', '').split('-');
          const window = (await publishedWindows(pool)).find((w) => w.lo === lo && w.hi === hi);
          assert.equal(window?.seal, h.detail.seal, 'the seal printed is the one Postgres keeps for the window');
          break;
        }
      }
      if (h.hop !== 'workflow') assert.ok(h.exists, `${h.hop} ${h.ref} exists`);
    }
  });

  it('source coordinates: a payment routed from Kafka lands in Snowflake with its facts’ topic, partition and offset, and trace prints them with their archive objects', async () => {
    const runId = uniqueId('fin-src');
    const { events } = simulatePayments({ payments: 1, seed: 1414, duplicateRate: 0, runId, happyPathOnly: true });
    const paymentId = events[0]!.paymentId;
    const side = [
      startPipelineProcess('payment-router-fin-src', 'src/streams/payment-router-main.ts'),
      startPipelineProcess('payment-worker-fin-src', 'src/workers/payment-worker-main.ts'),
      startPipelineProcess('archiver-fin-src', 'src/streams/archiver/archiver-main.ts', {
        ARCHIVE_OBJECT_MAX_AGE_MS: '1000',
      }),
    ];
    const producer = testKafka('finance-source-test').producer();
    try {
      await Promise.all(side.map((p) => within(p.ready, 60_000, `${p.name} to be ready (log: ${p.logFile})`)));
      await producer.connect();
      // One send per fact: Kafka's own answer is the truth the rows must match. The captured fact is sent
      // twice (a redelivery): the row keeps the first message's offset.
      const sent = new Map<string, string>();
      const captured = events.find((e) => e.type === 'captured')!;
      for (const e of [...events, captured]) {
        const m = factMessage(
          e,
          { receivedAt: new Date().toISOString() },
          topics.paymentEvents,
          CURRENT_SCHEMAS['payment-fact'],
        );
        const [meta] = await producer.send({
          topic: m.topic,
          acks: -1,
          messages: [{ key: m.key, value: m.value, headers: m.headers }],
        });
        if (!sent.has(e.idempotencyKey))
          sent.set(e.idempotencyKey, `${meta!.topicName}[${meta!.partition}]@${meta!.baseOffset}`);
      }
      let entries: { entry_id: number; idempotency_key: string; xid: string }[] = [];
      await waitFor(
        'the payment posted through the router and its workflow',
        Date.now() + TIMEOUT_MS,
        async () => {
          entries = (
            await pool.query<{ entry_id: number; idempotency_key: string; xid: string }>(
              `select entry_id, idempotency_key, xid::text as xid from ledger.journal_entries
              where payment_id = $1 order by entry_id`,
              [paymentId],
            )
          ).rows;
          // captured and settled move money on the happy path
          return entries.length >= 2 || `${entries.length} entries`;
        },
        { guard: () => side.forEach((p) => assert.equal(p.child.exitCode, null, `${p.name} exited`)) },
      );
      await loadPast(entries.reduce((max, e) => (BigInt(e.xid) > BigInt(max) ? e.xid : max), '0'));

      const rows = await snowflake.query<{ ENTRY_ID: number; IDEMPOTENCY_KEY: string; AT: string }>(
        `SELECT ENTRY_ID, IDEMPOTENCY_KEY, SOURCE_TOPIC || '[' || TO_VARCHAR(SOURCE_PARTITION) || ']@' || TO_VARCHAR(SOURCE_OFFSET) AS AT
           FROM FINANCE.V_JOURNAL_ENTRIES WHERE ENTRY_ID IN (${entries.map(() => '?').join(', ')}) ORDER BY ENTRY_ID`,
        entries.map((e) => e.entry_id),
      );
      assert.equal(rows.length, entries.length, 'every entry is published');
      for (const r of rows) {
        assert.ok(sent.has(r.IDEMPOTENCY_KEY), `entry ${r.ENTRY_ID}: ${r.IDEMPOTENCY_KEY} is one of the facts sent`);
        assert.equal(r.AT, sent.get(r.IDEMPOTENCY_KEY), `entry ${r.ENTRY_ID}: SOURCE_TOPIC/PARTITION/OFFSET`);
      }

      // The command people run, once the archiver has committed the objects holding the fact messages.
      let trail: MoneyTrail | undefined;
      await waitFor(
        'npm run trace to name every fact message and its archive object',
        Date.now() + 60_000,
        async () => {
          const r = spawnSync('npm', ['run', '--silent', 'trace', '--', paymentId, '--json'], {
            cwd: repoRoot,
            encoding: 'utf8',
            timeout: 60_000,
          });
          assert.equal(r.status, 0, `trace failed:\n${r.stdout}\n${r.stderr}`);
          trail = JSON.parse(r.stdout) as MoneyTrail;
          const messages = trail.hops.filter((h) => h.hop === 'fact message');
          const archived = messages.filter((h) => typeof h.detail.archive === 'object').length;
          return archived === sent.size || `${messages.length} fact messages, ${archived} archived`;
        },
        { intervalMs: 2000 },
      );
      const messages = trail!.hops.filter((h) => h.hop === 'fact message');
      assert.deepEqual(messages.map((h) => h.ref).sort(), [...sent.values()].sort());
      for (const h of messages) {
        const { object } = h.detail.archive as { object: string };
        const key = parseObjectKey(object.replace(`s3://${config.S3_BUCKET}/`, ''));
        const [, topic, partition, offset] = /^(.+)\[(\d+)\]@(\d+)$/.exec(h.ref)!;
        assert.ok(key, `${object} is an archive object key`);
        assert.deepEqual([key.topic, key.partition], [topic, Number(partition)], object);
        assert.ok(key.first <= BigInt(offset!) && BigInt(offset!) <= key.last, `${object} holds offset ${offset}`);
      }
      for (const h of trail!.hops.filter((x) => x.hop === 'snowflake row')) {
        const entry = entries.find((e) => h.ref.endsWith(`=${e.entry_id}`))!;
        assert.equal(h.detail.sourceRecord, sent.get(entry.idempotency_key), h.ref);
      }
    } finally {
      await producer.disconnect();
      await Promise.allSettled(side.map((p) => within(p.stop(), 30_000, `${p.name} to stop`).catch(() => p.kill9())));
    }
  });
});

import { parseArgs } from 'node:util';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { loadConfig } from '../config';
import type { FinanceWindow } from '../contracts/finance';
import { parseWindow } from '../ledger/seals';
import { createLogger, errorMessage } from '../logger';
import { type VerifyReport, verifyFinance } from '../ops/finance-verify';
import { watermarkStatus } from '../stores/finance-ledger';
import { createPool } from '../stores/postgres';
import { connectSnowflake } from '../stores/snowflake';
import { listBreaks } from '../stores/reconciliation';
import { FINANCE_SCHEDULE_ID, FINANCE_TASK_QUEUE, financeLoadWorkflow } from '../workflows/finance-load';
import {
  RECONCILIATION_TASK_QUEUE,
  type ReconciliationResult,
  progressQuery,
  reconciliationWorkflow,
  reconciliationWorkflowId,
} from '../workflows/reconciliation';

// `npm run finance -- status | load [--window lo-hi] | verify [--from xid --to xid]` (docs/finance.md),
// `reconcile --window <day> | breaks [--open] [--type T]` (docs/reconciliation.md):
// the finance load's watermark and lag, a load run by hand (idempotent: a published window re-runs to
// the same seal), and the seals recomputed from the ledger and from Snowflake. `--json`: one object on stdout.

const log = createLogger('finance');

const USAGE = `usage: npm run finance -- status [--json]
       npm run finance -- load [--window <lo>-<hi>] [--json]
       npm run finance -- verify [--from <xid>] [--to <xid>] [--json]
       npm run finance -- reconcile --window <YYYY-MM-DD> [--scope <payment-id prefix>] [--oltp-schema <s>] [--json]
       npm run finance -- breaks [--open] [--type <break type>] [--window <YYYY-MM-DD>] [--scope <prefix>] [--json]`;

const DAY = /^\d{4}-\d{2}-\d{2}$/;
function dayOption(raw: string | undefined): string {
  if (!raw || !DAY.test(raw) || Number.isNaN(Date.parse(`${raw}T00:00:00Z`))) {
    throw new Error(`--window "${raw ?? ''}" is not a UTC day (YYYY-MM-DD)`);
  }
  return raw;
}

const money = (byCurrency: Record<string, number> | undefined): string =>
  Object.entries(byCurrency ?? {})
    .map(([c, v]) => `${v} ${c}`)
    .join(', ');

function reconcileText(r: ReconciliationResult & { workflowId: string }): string {
  const types = Object.entries(r.breaksByType)
    .map(([t, n]) => `  ${t}: ${n} (${money(r.amountsByType[t as keyof typeof r.amountsByType])} minor units)`)
    .join('\n');
  return [
    `window ${r.window}: run ${r.runId} (${r.outcome}${r.supersededRunId ? `, supersedes run ${r.supersededRunId}` : ''})`,
    `${r.files} files, ${r.settlementLines} settlement lines, ${r.ledgerEntries} ledger entries`,
    `matched ${r.items.matched}, partially matched ${r.items.partiallyMatched}, unmatched ${r.items.unmatched}`,
    `${r.breaks} breaks${r.breaks ? `:\n${types}` : ''}`,
    `resolved ${r.resolved} earlier breaks; ${r.carriedOver.breaks} open from earlier windows (oldest ${r.carriedOver.oldestAgeDays} days)`,
    `suspense: ${r.suspense.opened} opened, ${r.suspense.closed} closed, ${r.suspense.alreadyPosted} already posted`,
  ].join('\n');
}

function xidOption(name: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new Error(`--${name} "${raw}" is not a transaction id (a whole number, see status)`);
  return BigInt(raw).toString();
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      window: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      scope: { type: 'string' },
      'oltp-schema': { type: 'string' },
      open: { type: 'boolean', default: false },
      type: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const [command] = positionals;
  const json = values.json ?? false;
  const print = (value: unknown, text: string): void =>
    void process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${text}\n`);
  const config = loadConfig();
  const pool = createPool(config, 2);
  try {
    switch (command) {
      case 'status': {
        const s = await watermarkStatus(pool);
        const open = s.oldestOpenTransaction;
        print(
          s,
          [
            `published below xid ${s.publishedHi} (${s.windows} windows, last ${s.publishedAt ?? 'never'})`,
            `safe watermark xid ${s.safeHi}; ${s.unpublishedEntries} entries not yet published` +
              (s.unpublishedAgeS === null ? '' : `, oldest ${s.unpublishedAgeS} s old`),
            `${s.heldBackEntries} committed entries held back by an open transaction` +
              (open ? ` (pid ${open.pid}, open ${open.ageS} s, ${open.state ?? 'state hidden'})` : ''),
            `last failure: ${s.lastFailure ? `${s.lastFailure.loadId} at ${s.lastFailure.failedAt}: ${s.lastFailure.reason}` : 'none'}`,
          ].join('\n'),
        );
        return;
      }
      case 'load': {
        const window: FinanceWindow | undefined = values.window ? parseWindow(values.window) : undefined;
        const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
        try {
          const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
          // Its own id per run: a window re-run by hand never collides with the schedule's runs.
          const workflowId = `finance-load/manual-${window ? `${window.lo}-${window.hi}` : 'next'}-${Date.now().toString(36)}`;
          if (!json)
            process.stderr.write(
              `loading ${window ? `window ${window.lo}-${window.hi}` : 'the next window'} (${workflowId})…\n`,
            );
          const r = await client.workflow.execute(financeLoadWorkflow, {
            taskQueue: FINANCE_TASK_QUEUE,
            workflowId,
            args: [window ? { window } : {}],
            workflowExecutionTimeout: '10 minutes',
          });
          print(
            { workflowId, ...r },
            r.window
              ? `${r.outcome}: window ${r.window.lo}-${r.window.hi}, ${r.entries} entries / ${r.lines} lines ` +
                  `(${r.entriesInserted} / ${r.linesInserted} inserted), seal ${r.seal}`
              : `${r.outcome}: no committed entries past the published watermark (schedule ${FINANCE_SCHEDULE_ID})`,
          );
        } catch (err) {
          if (err instanceof WorkflowFailedError) throw new Error(`load failed: ${causes(err)}`);
          throw err;
        } finally {
          await connection.close();
        }
        return;
      }
      case 'verify': {
        const range = { lo: xidOption('from', values.from), hi: xidOption('to', values.to) };
        const snowflake = await connectSnowflake(config);
        const tty = process.stderr.isTTY === true && !json;
        try {
          const report = await verifyFinance(pool, snowflake, range, (done, total) => {
            if (tty) process.stderr.write(`\r\x1b[Kverifying window ${done}/${total}`);
          });
          if (tty) process.stderr.write('\n');
          print(report, verifyText(report));
          if (!report.ok) process.exitCode = 1;
        } finally {
          await snowflake.close();
        }
        return;
      }
      case 'reconcile': {
        const window = dayOption(values.window);
        const scope = values.scope ?? '';
        const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
        try {
          const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
          // The window's own id: a re-run supersedes the earlier result (docs/reconciliation.md).
          const workflowId = reconciliationWorkflowId(window, scope);
          const handle = await client.workflow.start(reconciliationWorkflow, {
            taskQueue: RECONCILIATION_TASK_QUEUE,
            workflowId,
            args: [{ window, scope, oltpSchema: values['oltp-schema'] ?? 'public' }],
            workflowExecutionTimeout: '30 minutes',
          });
          if (!json) process.stderr.write(`reconciling ${window} (${workflowId})…\n`);
          let last = '';
          const poll = setInterval(() => {
            handle
              .query(progressQuery)
              .then((p) => {
                if (!json && p.step !== last) process.stderr.write(`  ${p.step}\n`);
                last = p.step;
              })
              .catch(() => undefined); // no worker has picked it up yet
          }, 500);
          try {
            const r = await handle.result();
            print({ workflowId, ...r }, reconcileText({ workflowId, ...r }));
          } finally {
            clearInterval(poll);
          }
        } catch (err) {
          if (err instanceof WorkflowFailedError) throw new Error(`reconciliation failed: ${causes(err)}`);
          throw err;
        } finally {
          await connection.close();
        }
        return;
      }
      case 'breaks': {
        const rows = await listBreaks(pool, {
          open: values.open,
          type: values.type,
          scope: values.scope,
          window: values.window === undefined ? undefined : dayOption(values.window),
        });
        print(
          rows,
          rows.length === 0
            ? 'no breaks'
            : rows
                .map(
                  (b) =>
                    `${b.window} ${b.status.padEnd(8)} ${b.type.padEnd(22)} ${b.paymentId} ${b.reference} ` +
                    `${b.amountMinor} ${b.currency} age ${b.ageDays} d${b.suspensePostingKey ? ' (suspense)' : ''}`,
                )
                .join('\n'),
        );
        return;
      }
      default:
        throw new Error(command ? `unknown command "${command}"\n${USAGE}` : USAGE);
    }
  } finally {
    await pool.end();
  }
}

function verifyText(r: VerifyReport): string {
  if (r.ok) return `ok: ${r.windows} windows, ledger and Snowflake both match their seals, chain unbroken`;
  return [`FAILED: ${r.problems.length} problems in ${r.windows} windows`, ...r.problems.map((p) => `  ${p}`)].join(
    '\n',
  );
}

/** The messages down a Temporal failure's cause chain (the activity's error is at the bottom). */
function causes(err: Error): string {
  const out: string[] = [];
  for (let e: unknown = err; e instanceof Error; e = e.cause) out.push(e.message);
  return out.join(' <- ');
}

if (require.main === module) {
  main().catch((err: unknown) => {
    log.error('finance failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

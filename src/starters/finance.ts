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
import { FINANCE_SCHEDULE_ID, FINANCE_TASK_QUEUE, financeLoadWorkflow } from '../workflows/finance-load';

// `npm run finance -- status | load [--window lo-hi] | verify [--from xid --to xid]` (docs/finance.md):
// the finance load's watermark and lag, a load run by hand (idempotent: a published window re-runs to
// the same seal), and the seals recomputed from the ledger and from Snowflake. `--json`: one object on stdout.

const log = createLogger('finance');

const USAGE = `usage: npm run finance -- status [--json]
       npm run finance -- load [--window <lo>-<hi>] [--json]
       npm run finance -- verify [--from <xid>] [--to <xid>] [--json]`;

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

import { ApplicationFailure } from '@temporalio/activity';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Pool } from 'pg';
import {
  SettlementFileError,
  type SettlementItem,
  type SettlementProvider,
  parseSettlementItems,
} from '../contracts/settlement-files';
import type { JournalLine } from '../ledger/posting-rules';
import type { Logger } from '../logger';
import {
  type MatchResult,
  type ReconciliationBreak,
  dayAfter,
  dayBefore,
  ledgerItemOf,
  matchWindow,
} from '../reconciliation/match';
import { postJournalEntry, reverseEntry } from '../stores/ledger';
import { type RunOutcome, readLedgerWindow, readOltpPayments, writeRun } from '../stores/reconciliation';
import { loadReconciliationToWarehouse } from '../stores/reconciliation-warehouse';
import { getSettlementFile, listSettlementFiles } from '../stores/settlement-files';
import type { SnowflakeSession } from '../stores/snowflake';

// The I/O of a ReconciliationWorkflow (src/workflows/reconciliation.ts): read the window's ledger, OLTP
// rows and settlement files and match them; record the run in Postgres; open and close suspense entries;
// copy the run to Snowflake. Each step is idempotent by the run key or by posting keys.

export interface ReconciliationRequest {
  window: string;
  /** Payment-id prefix ('' = all payments). */
  scope: string;
  /** OLTP schema holding PayLink's payments table. */
  oltpSchema: string;
  /** S3 bucket of the settlement files (default: S3_BUCKET). */
  bucket?: string;
}

export interface MatchSummary {
  result: MatchResult;
  files: string[];
  ledgerEntries: number;
  settlementLines: number;
}

export interface RecordRequest extends ReconciliationRequest {
  runKey: string;
  /** This execution's workflow id (the schedule's runs have their own). */
  workflowId: string;
  /** reconciliation/<window>[/<scope>]: suspense posting keys derive from it. */
  windowId: string;
  startedAt: string;
  result: MatchResult;
}

export interface SuspenseSummary {
  opened: number;
  closed: number;
  alreadyPosted: number;
}

export interface ReconciliationActivities {
  matchReconciliationWindow(request: ReconciliationRequest): Promise<MatchSummary>;
  recordReconciliationRun(request: RecordRequest): Promise<RunOutcome>;
  postSuspenseEntries(request: {
    /** reconciliation/<window>[/<scope>]. */
    workflowId: string;
    window: string;
    breaks: ReconciliationBreak[];
    resolved: RunOutcome['resolved'];
  }): Promise<SuspenseSummary>;
  loadReconciliationRun(request: { runId: number }): Promise<{ runs: number; breaks: number }>;
}

export interface ReconciliationDeps {
  pool: Pool;
  oltp: Pool;
  s3: S3Client;
  bucket: string;
  snowflake: SnowflakeSession;
  log: Logger;
}

const PROVIDERS: readonly SettlementProvider[] = ['adyen', 'stripe'];

/** The suspense entry's posting key: the workflow id (reconciliation/<window>[/scope]) and the break key. */
export const suspenseOpenKey = (workflowId: string, breakKey: string): string => `${workflowId}/break/${breakKey}/open`;
const closeKeyOf = (openKey: string): string => openKey.replace(/\/open$/, '/close');

/** Money at stake on a break: held in suspense against settlement cash until the break is resolved. */
export function suspenseLines(b: Pick<ReconciliationBreak, 'direction' | 'amountMinor' | 'currency'>): JournalLine[] {
  if (b.direction === 0 || b.amountMinor <= 0) return [];
  const { amountMinor, currency } = b;
  // −1: the partner paid less than the ledger booked as cash; +1: more.
  return b.direction < 0
    ? [
        { account: 'suspense', side: 'debit', amountMinor, currency },
        { account: 'settlement_cash', side: 'credit', amountMinor, currency },
      ]
    : [
        { account: 'settlement_cash', side: 'debit', amountMinor, currency },
        { account: 'suspense', side: 'credit', amountMinor, currency },
      ];
}

export function createReconciliationActivities(deps: ReconciliationDeps): ReconciliationActivities {
  const { pool, oltp, s3, snowflake, log } = deps;
  return {
    async matchReconciliationWindow(req) {
      const bucket = req.bucket ?? deps.bucket;
      const ledgerRows = await readLedgerWindow(pool, dayBefore(req.window), dayAfter(req.window), req.scope);
      const ledger = ledgerRows.flatMap((r) => ledgerItemOf(r) ?? []);
      const files: string[] = [];
      const lines: SettlementItem[] = [];
      for (const day of [req.window, dayAfter(req.window)]) {
        for (const provider of PROVIDERS) {
          for (const f of await listSettlementFiles(s3, bucket, provider, day)) {
            const name = f.key.slice(f.key.lastIndexOf('/') + 1);
            const bytes = await getSettlementFile(s3, bucket, f.key);
            let items: SettlementItem[];
            try {
              items = parseSettlementItems(provider, name, bytes);
            } catch (err) {
              // A malformed file stays malformed: fail the run naming file, line and column, never retry.
              if (err instanceof SettlementFileError) {
                throw ApplicationFailure.nonRetryable(`${f.key}: ${err.message}`, 'SettlementFileError');
              }
              throw err;
            }
            files.push(f.key);
            lines.push(...items.filter((i) => !req.scope || i.paymentId.startsWith(req.scope) || i.kind === 'payout'));
          }
        }
      }
      const ids = [...new Set([...ledger.map((l) => l.paymentId), ...lines.map((l) => l.paymentId)])];
      const payments = await readOltpPayments(oltp, req.oltpSchema, ids);
      const result = matchWindow({ window: req.window, ledger, files: lines, oltp: payments });
      log.info('reconciliation matched', {
        window: req.window,
        scope: req.scope,
        files: files.length,
        ...result.items,
        breaks: result.breaks.length,
      });
      return { result, files, ledgerEntries: ledgerRows.length, settlementLines: lines.length };
    },

    async recordReconciliationRun(req) {
      const suspenseKeys = Object.fromEntries(
        req.result.breaks
          .filter((b) => suspenseLines(b).length > 0)
          .map((b) => [b.breakKey, suspenseOpenKey(req.windowId, b.breakKey)]),
      );
      return writeRun(pool, {
        runKey: req.runKey,
        workflowId: req.workflowId,
        window: req.window,
        scope: req.scope,
        startedAt: req.startedAt,
        result: req.result,
        suspenseKeys,
      });
    },

    async postSuspenseEntries(req) {
      const out: SuspenseSummary = { opened: 0, closed: 0, alreadyPosted: 0 };
      const now = new Date().toISOString();
      for (const b of req.breaks) {
        const lines = suspenseLines(b);
        if (lines.length === 0) continue;
        const key = suspenseOpenKey(req.workflowId, b.breakKey);
        const r = await postJournalEntry(pool, {
          postingKey: key,
          paymentId: b.paymentId,
          merchantId: b.merchantId ?? 'unknown',
          factType: 'reconciliation_suspense_open',
          idempotencyKey: key,
          occurredAt: `${req.window}T23:59:59.999Z`,
          lines,
          actor: 'reconciliation',
          memo: `${b.type} ${b.amountMinor} ${b.currency} (${req.workflowId})`,
        });
        if (r.outcome === 'posted') out.opened++;
        else out.alreadyPosted++;
      }
      for (const x of req.resolved) {
        if (!x.suspensePostingKey) continue;
        const r = await reverseEntry(pool, {
          postingKey: x.suspensePostingKey,
          reversalKey: closeKeyOf(x.suspensePostingKey),
          factType: 'reconciliation_suspense_close',
          occurredAt: now,
          actor: 'reconciliation',
          memo: `resolved (${req.workflowId})`,
        });
        if (!r) continue; // never opened (the run failed before): nothing to close
        if (r.outcome === 'posted') out.closed++;
        else out.alreadyPosted++;
      }
      return out;
    },

    async loadReconciliationRun(req) {
      return loadReconciliationToWarehouse(pool, snowflake, req.runId);
    },
  };
}

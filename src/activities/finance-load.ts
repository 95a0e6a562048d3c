import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Pool } from 'pg';
import { blockingFailures, dqWindowsOverlapping } from '../contracts/data-quality';
import { FINANCE_NON_RETRYABLE_ERRORS } from '../contracts/finance';
import type { Logger } from '../logger';
import {
  type FinanceWindow,
  type WindowTotals,
  GENESIS_SEAL,
  entryDifferences,
  sealOf,
  totalsDifferences,
  totalsOf,
} from '../ledger/seals';
import {
  countPublishedWindows,
  countWindowEntries,
  lastPublishedWindow,
  ledgerWindowTotals,
  publishedWindows,
  publishWindow,
  readWindowEntries,
  recordLoadFailure,
  safeWatermark,
  windowAt,
} from '../stores/finance-ledger';
import {
  countWarehouseSeals,
  loadWindowToWarehouse,
  publishToWarehouse,
  readWarehouseWindow,
  warehouseSeals,
  warehouseWindowTotals,
} from '../stores/finance-warehouse';
import { latestDqResults, paymentsOfFinanceWindow, postedRangeOfFinanceWindow } from '../stores/data-quality';
import type { SnowflakeSession } from '../stores/snowflake';

// The I/O of a FinanceLoad (src/workflows/finance-load.ts): plan the next watermark window, write it to
// Snowflake in one transaction, verify Snowflake against the ledger after commit, publish and seal it.
// Each step is idempotent by its window, so Temporal's retries and a kill -9 at any point are safe.

/** Error types a retry cannot fix; the workflow lists the same as non-retryable (STYLE.md). */
const NON_RETRYABLE: readonly string[] = FINANCE_NON_RETRYABLE_ERRORS;

export interface FinanceLoadRequest extends FinanceWindow {
  loadId: string;
}

export interface LoadSummary {
  entries: number;
  lines: number;
  entriesInserted: number;
  linesInserted: number;
  loadedAt: string;
}

export interface PublishSummary {
  outcome: 'published' | 'already-published' | 'superseded';
  seal: string;
  publishedAt: string;
}

export interface FinanceLoadActivities {
  /** The next window after the published chain, up to the safe watermark; null when it has no entries. */
  planFinanceWindow(): Promise<FinanceWindow | null>;
  loadFinanceWindow(request: FinanceLoadRequest): Promise<LoadSummary>;
  /** Throws FinanceVerificationError (non-retryable) when Snowflake's window differs from the ledger's. */
  verifyFinanceWindow(request: FinanceLoadRequest): Promise<WindowTotals>;
  publishFinanceWindow(request: FinanceLoadRequest & { loadedAt: string }): Promise<PublishSummary>;
}

export interface FinanceLoadDeps {
  pool: Pool;
  snowflake: SnowflakeSession;
  log: Logger;
  /** Crash tests only (0 = off): hold each load inside its Snowflake transaction, before COMMIT. */
  faultHoldBeforeCommitMs?: number;
  /** Whose data-quality results gate publishing: '' (the whole pipeline); tests use their payment-id prefix. */
  dataQualityScope?: string;
}

/** Snowflake's window is not the ledger's: the window stays unpublished until someone looks. */
export class FinanceVerificationError extends Error {
  constructor(
    readonly loadId: string,
    readonly differences: string[],
  ) {
    super(`load ${loadId}: Snowflake does not match the ledger: ${differences.join('; ')}`);
    this.name = 'FinanceVerificationError';
  }
}

/** A money check of the data-quality run failed in a DQ window this finance window's entries fall in. */
export class FinanceQualityGateError extends Error {
  constructor(
    readonly loadId: string,
    readonly reasons: string[],
  ) {
    super(`load ${loadId}: not published, failing data-quality money checks: ${reasons.join('; ')}`);
    this.name = 'FinanceQualityGateError';
  }
}

/**
 * The failing money checks (latest result per check) of the DQ windows the finance window's entries were
 * posted in that concern this window: a check names the payments it is about (a conflicting duplicate, a
 * money fact without postings, a published entry missing from Snowflake), and the window is held when it
 * has entries of one of them, since its numbers for that payment would be wrong or partial. A payment with
 * no entry in the window does not hold it (the check still fails, alerts and says so). A result that names
 * no payments, or too many to list, holds every window it overlaps.
 */
async function qualityGateReasons(pool: Pool, w: FinanceWindow, scope: string): Promise<string[]> {
  const posted = await postedRangeOfFinanceWindow(pool, w);
  if (!posted) return [];
  const windows = dqWindowsOverlapping(posted.from.getTime(), posted.to.getTime());
  const failures = blockingFailures(await latestDqResults(pool, scope, windows));
  if (failures.length === 0) return [];
  const inWindow = new Set(await paymentsOfFinanceWindow(pool, w));
  const reasons: string[] = [];
  for (const r of failures) {
    const named = r.details.paymentIds;
    if (!Array.isArray(named) || r.details.paymentIdsTruncated === true) {
      reasons.push(`${r.check} in ${r.window.id}: ${r.summary}`);
      continue;
    }
    const held = named.filter((id): id is string => typeof id === 'string' && inWindow.has(id));
    if (held.length > 0)
      reasons.push(
        `${r.check} in ${r.window.id} concerns ${held.length} payment(s) in this window (${held.slice(0, 5).join(', ')}${held.length > 5 ? ', …' : ''}): ${r.summary}`,
      );
  }
  return reasons;
}

function heartbeat(details?: unknown): void {
  try {
    Context.current().heartbeat(details);
  } catch {
    // called outside an activity (tests, the starter): nothing to heartbeat
  }
}

/** Our domain errors cross to the workflow as ApplicationFailures of their own type (non-retryable). */
function named<T>(fn: () => Promise<T>): Promise<T> {
  return fn().catch((err: unknown) => {
    if (err instanceof Error && NON_RETRYABLE.includes(err.name)) {
      throw ApplicationFailure.nonRetryable(err.message, err.name);
    }
    throw err;
  });
}

export function createFinanceLoadActivities(deps: FinanceLoadDeps): FinanceLoadActivities {
  const { pool, snowflake, log } = deps;
  const holdMs = deps.faultHoldBeforeCommitMs ?? 0;

  const firstUnsealedWindow = async (): Promise<FinanceWindow | undefined> => {
    if ((await countWarehouseSeals(snowflake)) >= (await countPublishedWindows(pool))) return undefined;
    const sealed = new Set((await warehouseSeals(snowflake)).map((x) => x.lo));
    const w = (await publishedWindows(pool)).find((x) => !sealed.has(x.lo));
    return w && { lo: w.lo, hi: w.hi };
  };

  const loadWindow = async (request: FinanceLoadRequest): Promise<LoadSummary> => {
    const entries = await readWindowEntries(pool, request);
    const totals = totalsOf(entries);
    const result = await loadWindowToWarehouse(snowflake, {
      ...request,
      entries,
      totals,
      beforeCommit:
        holdMs > 0
          ? async () => {
              log.warn('fault: holding the load before COMMIT', { loadId: request.loadId, holdMs });
              const until = Date.now() + holdMs;
              while (Date.now() < until) {
                heartbeat();
                await new Promise((r) => setTimeout(r, 500));
              }
            }
          : undefined,
    });
    log.info('window loaded', {
      loadId: request.loadId,
      entries: totals.entries,
      lines: totals.lines,
      ...result,
    });
    return { ...result, entries: totals.entries, lines: totals.lines, loadedAt: new Date().toISOString() };
  };

  return {
    async planFinanceWindow() {
      // A window published in Postgres whose Snowflake seal never landed (the load died in between):
      // run it again first (it re-merges nothing and writes the seal), so Snowflake's chain has no gap.
      const unsealed = await firstUnsealedWindow();
      if (unsealed) return unsealed;
      const last = await lastPublishedWindow(pool);
      const window = { lo: last?.hi ?? '0', hi: await safeWatermark(pool) };
      if (BigInt(window.hi) <= BigInt(window.lo)) return null;
      // An empty window is not published: the next one starts at the same lo and takes it in.
      return (await countWindowEntries(pool, window)) > 0 ? window : null;
    },

    async loadFinanceWindow(request) {
      // Heartbeats while this process lives: a kill -9 shows within the heartbeat timeout, a slow load never.
      const beating = setInterval(() => heartbeat(), 2000);
      try {
        return await loadWindow(request);
      } finally {
        clearInterval(beating);
      }
    },

    verifyFinanceWindow: (request) =>
      named(async () => {
        const ledger = await ledgerWindowTotals(pool, request);
        const warehouse = await warehouseWindowTotals(snowflake, request);
        const differences = totalsDifferences(ledger, warehouse);
        if (warehouse.duplicateEntries > 0) differences.push(`${warehouse.duplicateEntries} duplicate entry rows`);
        if (warehouse.duplicateLines > 0) differences.push(`${warehouse.duplicateLines} duplicate line rows`);
        if (differences.length === 0) {
          // Totals can agree while a row differs: compare every entry's canonical row as well.
          const d = entryDifferences(
            await readWindowEntries(pool, request),
            await readWarehouseWindow(snowflake, request),
          );
          if (d.altered.length > 0) differences.push(`entries differing in Snowflake: ${d.altered.join(', ')}`);
          if (d.missing.length > 0) differences.push(`entries missing in Snowflake: ${d.missing.join(', ')}`);
          if (d.added.length > 0) differences.push(`entries only in Snowflake: ${d.added.join(', ')}`);
        }
        if (differences.length > 0) {
          const err = new FinanceVerificationError(request.loadId, differences);
          log.error('finance load failed verification: window not published', {
            loadId: request.loadId,
            differences,
          });
          await recordLoadFailure(pool, request.loadId, request, err.message);
          throw err;
        }
        return ledger;
      }),

    publishFinanceWindow: (request) =>
      named(async () => {
        const existing = await windowAt(pool, request.lo);
        // A window already published stays published; a new one waits for its money checks to pass.
        if (!existing) {
          const reasons = await qualityGateReasons(pool, request, deps.dataQualityScope ?? '');
          if (reasons.length > 0) {
            const err = new FinanceQualityGateError(request.loadId, reasons);
            log.error('finance window blocked by data quality: not published', { loadId: request.loadId, reasons });
            await recordLoadFailure(pool, request.loadId, request, err.message);
            throw err;
          }
        }
        const prevSeal = existing ? existing.prevSeal : ((await lastPublishedWindow(pool))?.seal ?? GENESIS_SEAL);
        const entries = await readWindowEntries(pool, request);
        const published = await publishWindow(pool, {
          ...request,
          totals: totalsOf(entries),
          prevSeal,
          seal: sealOf(prevSeal, entries),
        });
        const w = published.window;
        if (published.outcome !== 'superseded') {
          // Postgres' chain decides; Snowflake gets the same seal (MERGE by window: a retry adds nothing).
          await publishToWarehouse(snowflake, { ...w, totals: w.totals });
        }
        log.info(`window ${published.outcome}`, { loadId: request.loadId, seal: w.seal, entries: w.entries });
        return { outcome: published.outcome, seal: w.seal, publishedAt: w.publishedAt };
      }),
  };
}

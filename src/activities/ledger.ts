import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Pool } from 'pg';
import { createLogger } from '../logger';
import { retryTransient } from '../resilience';
import type { PaymentEvent } from '../contracts/payment-event';
import {
  type JournalEntryRequest,
  type PaymentFlag,
  type PostingResult,
  PostingConflictError,
  flagKeys,
  postJournalEntry,
  postedKeys,
  recordPaymentFlag,
} from '../stores/ledger';
import { paymentFacts } from '../stores/payment-inbox';

// Ledger activities: persist one journal entry per posting key, exactly once; keep the payment's
// audit flags; load what a reopened payment workflow must know. The SQL is in src/stores.

export interface PaymentHistory {
  facts: PaymentEvent[];
  postedKeys: string[];
  flagKeys: string[];
}

export interface LedgerActivities {
  postJournalEntry(request: JournalEntryRequest): Promise<PostingResult>;
  recordPaymentFlag(flag: PaymentFlag): Promise<void>;
  loadPaymentHistory(paymentId: string): Promise<PaymentHistory>;
}

const log = createLogger('ledger-activities');

/**
 * Longest a ledger activity waits out Postgres inside one attempt, under the workflow's 30 s start-to-close.
 * A Postgres restart or kill -9 is then ridden out by the attempt in flight, not by Temporal retrying it:
 * every retry of a local activity is a billed action (a kill -9 mid-posting: 110 retries, x1.12 the
 * actions of a quiet run, docs/cost.md). Past this, the attempt fails and Temporal's backoff takes over.
 */
export const WAIT_OUT_POSTGRES_MS = 25_000;

/** The attempt's cancellation; none when these functions are called outside an activity (tests, scripts). */
function attemptCancellation(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined; // "Activity context not initialized": a direct call
  }
}

/** `fn` (idempotent by its key), retried in this attempt while Postgres is unreachable; stops if cancelled. */
function waitingOutPostgres<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const signal = attemptCancellation();
  return retryTransient('postgres', what, fn, {
    log,
    shouldContinue: () => !signal?.aborted,
    initialDelayMs: 100,
    maxDelayMs: 1_000, // postings resume within a second of Postgres answering again
    maxElapsedMs: WAIT_OUT_POSTGRES_MS,
  });
}

export function createLedgerActivities(pool: Pool): LedgerActivities {
  return {
    async postJournalEntry(request) {
      try {
        return await waitingOutPostgres('posting a journal entry', () => postJournalEntry(pool, request));
      } catch (err) {
        if (!(err instanceof PostingConflictError)) throw err;
        // Same fact, different money: never a second posting. Alert, and stop retrying.
        throw ApplicationFailure.nonRetryable(err.message, 'PostingConflict', {
          postingKey: err.postingKey,
          entryId: err.entryId,
        });
      }
    },

    async recordPaymentFlag(flag) {
      await waitingOutPostgres('recording a payment flag', () => recordPaymentFlag(pool, flag));
    },

    async loadPaymentHistory(paymentId) {
      const [facts, posted, flags] = await waitingOutPostgres('loading a payment history', () =>
        Promise.all([
          paymentFacts(pool, [paymentId], 'accepted'),
          postedKeys(pool, paymentId),
          flagKeys(pool, [paymentId]),
        ]),
      );
      return { facts: facts.get(paymentId) ?? [], postedKeys: posted, flagKeys: flags.get(paymentId) ?? [] };
    },
  };
}

import { ApplicationFailure } from '@temporalio/activity';
import type { Pool } from 'pg';
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

export function createLedgerActivities(pool: Pool): LedgerActivities {
  return {
    async postJournalEntry(request) {
      try {
        return await postJournalEntry(pool, request);
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
      await recordPaymentFlag(pool, flag);
    },

    async loadPaymentHistory(paymentId) {
      const [facts, posted, flags] = await Promise.all([
        paymentFacts(pool, [paymentId], 'accepted'),
        postedKeys(pool, paymentId),
        flagKeys(pool, [paymentId]),
      ]);
      return { facts: facts.get(paymentId) ?? [], postedKeys: posted, flagKeys: flags.get(paymentId) ?? [] };
    },
  };
}

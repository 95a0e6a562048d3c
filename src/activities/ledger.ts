import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import type { Pool } from 'pg';
import type { PaymentEvent } from '../contracts/payment-event';
import type { JournalLine } from '../ledger/posting-rules';
import { paymentFacts } from '../stores/payment-inbox';

// Ledger activities: persist one journal entry per posting key, exactly once; keep the payment's
// audit flags; load what a reopened payment workflow must know.

export interface JournalEntryRequest {
  /** payment/<paymentId>/<fact key>: unique forever in ledger.journal_entries. */
  postingKey: string;
  paymentId: string;
  merchantId: string;
  factType: string;
  idempotencyKey: string;
  occurredAt: string;
  lines: JournalLine[];
  /** Manual entries: who and why. */
  actor?: string;
  memo?: string;
}

export type PostingResult = { ok: true; outcome: 'posted' | 'already-posted'; entryId: number };

export interface PaymentFlag {
  paymentId: string;
  /** Unique per payment: recording the same flag twice is a no-op. */
  flagKey: string;
  kind: 'anomaly' | 'stuck' | 'resolved' | 'adjustment';
  stage?: string;
  reason: string;
  actor?: string;
}

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

/** Canonical hash of an entry's lines, independent of line order. */
export function linesHash(lines: JournalLine[]): string {
  const canonical = lines
    .map((l) => `${l.account}|${l.side}|${l.amountMinor}|${l.currency}`)
    .sort()
    .join('\n');
  return createHash('sha256').update(canonical).digest('hex');
}

export function createLedgerActivities(pool: Pool): LedgerActivities {
  return {
    async postJournalEntry(request) {
      const hash = linesHash(request.lines);
      const client = await pool.connect();
      try {
        await client.query('begin');
        const inserted = await client.query<{ entry_id: number }>(
          `insert into ledger.journal_entries
             (posting_key, payment_id, merchant_id, fact_type, idempotency_key, lines_hash, occurred_at, actor, memo)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           on conflict (posting_key) do nothing
           returning entry_id`,
          [
            request.postingKey,
            request.paymentId,
            request.merchantId,
            request.factType,
            request.idempotencyKey,
            hash,
            request.occurredAt,
            request.actor ?? null,
            request.memo ?? null,
          ],
        );
        const entryId = inserted.rows[0]?.entry_id;
        if (entryId === undefined) {
          await client.query('rollback');
          const existing = await client.query<{ entry_id: number; lines_hash: string }>(
            'select entry_id, lines_hash from ledger.journal_entries where posting_key = $1',
            [request.postingKey],
          );
          const row = existing.rows[0];
          if (!row) throw new Error(`posting ${request.postingKey} conflicted but is not readable`);
          if (row.lines_hash !== hash) {
            // Same fact, different money: never a second posting. Alert, and stop retrying.
            throw ApplicationFailure.nonRetryable(
              `posting key ${request.postingKey} already posted with different lines (entry ${row.entry_id})`,
              'PostingConflict',
              { postingKey: request.postingKey, entryId: row.entry_id },
            );
          }
          return { ok: true, outcome: 'already-posted', entryId: row.entry_id };
        }
        for (const line of request.lines) {
          await client.query(
            `insert into ledger.journal_lines (entry_id, account_code, merchant_id, side, amount_minor, currency)
             values ($1, $2, $3, $4, $5, $6)`,
            [entryId, line.account, request.merchantId, line.side, line.amountMinor, line.currency],
          );
        }
        await client.query('commit');
        return { ok: true, outcome: 'posted', entryId };
      } catch (err) {
        await client.query('rollback').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },

    async recordPaymentFlag(flag) {
      await pool.query(
        `insert into ledger.payment_flags (payment_id, flag_key, kind, stage, reason, actor)
         values ($1, $2, $3, $4, $5, $6) on conflict (payment_id, flag_key) do nothing`,
        [flag.paymentId, flag.flagKey, flag.kind, flag.stage ?? null, flag.reason, flag.actor ?? null],
      );
    },

    async loadPaymentHistory(paymentId) {
      const [facts, posted, flags] = await Promise.all([
        paymentFacts(pool, paymentId),
        pool.query<{ posting_key: string }>('select posting_key from ledger.journal_entries where payment_id = $1', [
          paymentId,
        ]),
        pool.query<{ flag_key: string }>('select flag_key from ledger.payment_flags where payment_id = $1', [
          paymentId,
        ]),
      ]);
      return { facts, postedKeys: posted.rows.map((r) => r.posting_key), flagKeys: flags.rows.map((r) => r.flag_key) };
    },
  };
}

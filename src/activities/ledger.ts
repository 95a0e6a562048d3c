import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import type { Pool } from 'pg';
import type { JournalLine } from '../ledger/posting-rules';

// Ledger activities: persist one journal entry per posting key, exactly once.

export interface JournalEntryRequest {
  /** payment/<paymentId>/<fact key>: unique forever in ledger.journal_entries. */
  postingKey: string;
  paymentId: string;
  merchantId: string;
  factType: string;
  idempotencyKey: string;
  occurredAt: string;
  lines: JournalLine[];
}

export type PostingResult =
  { ok: true; outcome: 'posted'; entryId: number } | { ok: true; outcome: 'already-posted'; entryId: number };

export interface LedgerActivities {
  postJournalEntry(request: JournalEntryRequest): Promise<PostingResult>;
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
             (posting_key, payment_id, merchant_id, fact_type, idempotency_key, lines_hash, occurred_at)
           values ($1, $2, $3, $4, $5, $6, $7)
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
  };
}

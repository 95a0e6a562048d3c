import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import type { LedgerSummary } from '../ledger/checks';
import type { JournalLine } from '../ledger/posting-rules';
import { likePrefix } from './postgres';

// The ledger repository: every statement against ledger.* (migrations 001, 002). The database enforces
// the money invariants (balanced entries, one posting per key, append-only); this module adds only the
// hash that tells a replayed posting from a conflicting one.

export interface JournalEntryRequest {
  /** payment/<paymentId>/<fact key>: unique forever in ledger.journal_entries. */
  postingKey: string;
  paymentId: string;
  merchantId: string;
  factType: string;
  idempotencyKey: string;
  /** The fact's trace id (src/contracts/envelope.ts); none on manual entries and older facts. */
  traceId?: string;
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

/** The posting key is already taken by an entry with other lines: never a second posting. */
export class PostingConflictError extends Error {
  constructor(
    readonly postingKey: string,
    readonly entryId: number,
  ) {
    super(`posting key ${postingKey} already posted with different lines (entry ${entryId})`);
    this.name = 'PostingConflictError';
  }
}

/** Canonical hash of an entry's lines, independent of line order. */
function linesHash(lines: JournalLine[]): string {
  const canonical = lines
    .map((l) => `${l.account}|${l.side}|${l.amountMinor}|${l.currency}`)
    .sort()
    .join('\n');
  return createHash('sha256').update(canonical).digest('hex');
}

/**
 * Posts one journal entry exactly once per posting key: a replay with the same lines answers
 * 'already-posted', one with other lines throws PostingConflictError.
 */
export async function postJournalEntry(pool: Pool, request: JournalEntryRequest): Promise<PostingResult> {
  const hash = linesHash(request.lines);
  const client = await pool.connect();
  try {
    await client.query('begin');
    const inserted = await client.query<{ entry_id: number }>(
      `insert into ledger.journal_entries
         (posting_key, payment_id, merchant_id, fact_type, idempotency_key, lines_hash, occurred_at, actor, memo, trace_id)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
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
        request.traceId ?? null,
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
      if (row.lines_hash !== hash) throw new PostingConflictError(request.postingKey, row.entry_id);
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
}

/** How the reversal of an entry is recorded: its own key, fact type, actor and why. */
export interface ReversalRequest {
  /** The entry to reverse. */
  postingKey: string;
  /** The reversal's posting and idempotency key (posting it twice is a no-op). */
  reversalKey: string;
  factType: string;
  occurredAt: string;
  actor: string;
  memo: string;
}

/**
 * Posts the exact reverse of an entry (every line on the other side), for the same payment and merchant,
 * carrying its trace id. Undefined when the entry is not in the ledger. Used to close suspense entries.
 */
export async function reverseEntry(pool: Pool, request: ReversalRequest): Promise<PostingResult | undefined> {
  const original = await pool.query<{ payment_id: string; merchant_id: string; trace_id: string | null }>(
    'select payment_id, merchant_id, trace_id from ledger.journal_entries where posting_key = $1',
    [request.postingKey],
  );
  const entry = original.rows[0];
  if (!entry) return undefined;
  const lines = await pool.query<{
    account_code: JournalLine['account'];
    side: 'debit' | 'credit';
    amount_minor: string;
    currency: string;
  }>(
    `select l.account_code, l.side, l.amount_minor::text, l.currency from ledger.journal_lines l
       join ledger.journal_entries e on e.entry_id = l.entry_id where e.posting_key = $1 order by l.line_id`,
    [request.postingKey],
  );
  return postJournalEntry(pool, {
    postingKey: request.reversalKey,
    paymentId: entry.payment_id,
    merchantId: entry.merchant_id,
    factType: request.factType,
    idempotencyKey: request.reversalKey,
    ...(entry.trace_id !== null && { traceId: entry.trace_id }),
    occurredAt: request.occurredAt,
    lines: lines.rows.map((l) => ({
      account: l.account_code,
      side: l.side === 'debit' ? 'credit' : 'debit',
      amountMinor: Number(l.amount_minor),
      currency: l.currency,
    })),
    actor: request.actor,
    memo: request.memo,
  });
}

export async function recordPaymentFlag(pool: Pool, flag: PaymentFlag): Promise<void> {
  await pool.query(
    `insert into ledger.payment_flags (payment_id, flag_key, kind, stage, reason, actor)
     values ($1, $2, $3, $4, $5, $6) on conflict (payment_id, flag_key) do nothing`,
    [flag.paymentId, flag.flagKey, flag.kind, flag.stage ?? null, flag.reason, flag.actor ?? null],
  );
}

/** The posting keys already in the ledger for one payment. */
export async function postedKeys(pool: Pool, paymentId: string): Promise<string[]> {
  const rows = await pool.query<{ posting_key: string }>(
    'select posting_key from ledger.journal_entries where payment_id = $1',
    [paymentId],
  );
  return rows.rows.map((r) => r.posting_key);
}

/** The flag keys recorded for each of these payments (a payment without flags has an empty list). */
export async function flagKeys(pool: Pool, paymentIds: string[]): Promise<Map<string, string[]>> {
  const out = new Map(paymentIds.map((id) => [id, [] as string[]]));
  const rows = await pool.query<{ payment_id: string; flag_key: string }>(
    'select payment_id, flag_key from ledger.payment_flags where payment_id = any($1)',
    [paymentIds],
  );
  for (const r of rows.rows) out.get(r.payment_id)?.push(r.flag_key);
  return out;
}

/** Anomalies flagged on payments whose id starts with the prefix. */
export async function countAnomalies(pool: Pool, paymentIdPrefix: string): Promise<number> {
  const r = await pool.query<{ n: number }>(
    `select count(*)::int8 as n from ledger.payment_flags where kind = 'anomaly' and payment_id like $1`,
    [likePrefix(paymentIdPrefix)],
  );
  return r.rows[0]?.n ?? 0;
}

/** Entries, unbalanced entries, double postings and per-account totals of the payments with this id prefix. */
export async function summarizeLedger(pool: Pool, paymentIdPrefix: string): Promise<LedgerSummary> {
  const like = likePrefix(paymentIdPrefix);
  // Independent of the posting key: one upstream fact (idempotency key) behind two entries is a double posting.
  const counts = await pool.query<{ entries: number; distinct_facts: number }>(
    `select count(*)::int8 as entries, count(distinct (payment_id, idempotency_key))::int8 as distinct_facts
       from ledger.journal_entries where payment_id like $1 and fact_type <> 'manual_adjustment'`,
    [like],
  );
  const unbalanced = await pool.query<{ n: number }>(
    `select count(*)::int8 as n from (
       select e.entry_id
         from ledger.journal_entries e left join ledger.journal_lines l on l.entry_id = e.entry_id
        where e.payment_id like $1
        group by e.entry_id, l.currency
       having count(l.line_id) = 0
           or sum(case when l.side = 'debit' then l.amount_minor else -l.amount_minor end) <> 0) u`,
    [like],
  );
  const totals = await pool.query<{ account_code: string; currency: string; debit: number; credit: number }>(
    `select l.account_code, l.currency,
            coalesce(sum(l.amount_minor) filter (where l.side = 'debit'), 0)::int8 as debit,
            coalesce(sum(l.amount_minor) filter (where l.side = 'credit'), 0)::int8 as credit
       from ledger.journal_lines l join ledger.journal_entries e on e.entry_id = l.entry_id
      where e.payment_id like $1
      group by l.account_code, l.currency`,
    [like],
  );
  const row = counts.rows[0] ?? { entries: 0, distinct_facts: 0 };
  return {
    entries: row.entries,
    unbalanced: unbalanced.rows[0]?.n ?? 0,
    duplicatePostings: row.entries - row.distinct_facts,
    totals: Object.fromEntries(
      totals.rows.map((r) => [`${r.account_code}|${r.currency}`, { debitMinor: r.debit, creditMinor: r.credit }]),
    ),
  };
}

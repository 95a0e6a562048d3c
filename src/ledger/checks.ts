import type { Pool } from 'pg';
import type { GroundTruth } from '../simulator/payments';
import type { AccountCode } from './posting-rules';

// Independent checks of the ledger's money invariants, scoped to a set of payments (by id prefix).

export interface LedgerSummary {
  entries: number;
  unbalanced: number;
  duplicatePostings: number;
  totals: Record<string, { debitMinor: number; creditMinor: number }>; // key: account|currency
}

export interface TruthComparison {
  matches: boolean;
  mismatches: string[];
}

export async function summarizeLedger(pool: Pool, paymentIdPrefix: string): Promise<LedgerSummary> {
  const like = `${paymentIdPrefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
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

/** What the ledger must show for what the simulator says happened. */
export function expectedTotals(truth: GroundTruth): LedgerSummary['totals'] {
  const out: LedgerSummary['totals'] = {};
  const add = (account: AccountCode, currency: string, debitMinor: number, creditMinor: number): void => {
    if (debitMinor === 0 && creditMinor === 0) return;
    const t = (out[`${account}|${currency}`] ??= { debitMinor: 0, creditMinor: 0 });
    t.debitMinor += debitMinor;
    t.creditMinor += creditMinor;
  };
  for (const [currency, c] of Object.entries(truth.byCurrency)) {
    // What each economic event means for the chart of accounts (docs/ledger.md), restated from the simulator's side.
    add(
      'gateway_clearing',
      currency,
      c.capturedMinor + c.chargebacksWonMinor,
      c.settledGrossMinor + c.chargebacksOpenedMinor,
    );
    add('merchant_payable', currency, c.refundedMinor + c.chargebacksLostMinor, c.capturedMinor - c.platformFeesMinor);
    add('platform_fee_revenue', currency, 0, c.platformFeesMinor);
    add('settlement_cash', currency, c.settledGrossMinor - c.gatewayFeesMinor, 0);
    add('gateway_fee_expense', currency, c.gatewayFeesMinor, 0);
    add('refunds_payable', currency, 0, c.refundedMinor);
    add('chargebacks_disputed', currency, c.chargebacksOpenedMinor, c.chargebacksWonMinor + c.chargebacksLostMinor);
  }
  return out;
}

export function compareWithTruth(summary: LedgerSummary, truth: GroundTruth): TruthComparison {
  const mismatches: string[] = [];
  if (summary.entries !== truth.moneyMovingFacts) {
    mismatches.push(`entries: ledger ${summary.entries}, simulator ${truth.moneyMovingFacts}`);
  }
  const expected = expectedTotals(truth);
  for (const key of new Set([...Object.keys(expected), ...Object.keys(summary.totals)])) {
    const e = expected[key] ?? { debitMinor: 0, creditMinor: 0 };
    const a = summary.totals[key] ?? { debitMinor: 0, creditMinor: 0 };
    if (e.debitMinor !== a.debitMinor || e.creditMinor !== a.creditMinor) {
      mismatches.push(
        `${key}: ledger Dr ${a.debitMinor} Cr ${a.creditMinor}, simulator Dr ${e.debitMinor} Cr ${e.creditMinor}`,
      );
    }
  }
  return { matches: mismatches.length === 0, mismatches };
}

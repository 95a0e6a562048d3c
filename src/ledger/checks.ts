// Independent checks of the ledger's money invariants: what the ledger store summarizes for a set of
// payments (src/stores/ledger.ts), compared with what the caller expected it to show.

/** Debit and credit totals per `account|currency`. */
export type LedgerTotals = Record<string, { debitMinor: number; creditMinor: number }>;

export interface LedgerSummary {
  entries: number;
  unbalanced: number;
  duplicatePostings: number;
  totals: LedgerTotals;
}

/** What the ledger must show: its automatic entries and their totals. */
export interface ExpectedLedger {
  entries: number;
  totals: LedgerTotals;
}

export interface LedgerComparison {
  matches: boolean;
  mismatches: string[];
}

export function compareLedger(summary: LedgerSummary, expected: ExpectedLedger): LedgerComparison {
  const mismatches: string[] = [];
  if (summary.entries !== expected.entries) {
    mismatches.push(`entries: ledger ${summary.entries}, expected ${expected.entries}`);
  }
  for (const key of new Set([...Object.keys(expected.totals), ...Object.keys(summary.totals)])) {
    const e = expected.totals[key] ?? { debitMinor: 0, creditMinor: 0 };
    const a = summary.totals[key] ?? { debitMinor: 0, creditMinor: 0 };
    if (e.debitMinor !== a.debitMinor || e.creditMinor !== a.creditMinor) {
      mismatches.push(
        `${key}: ledger Dr ${a.debitMinor} Cr ${a.creditMinor}, expected Dr ${e.debitMinor} Cr ${e.creditMinor}`,
      );
    }
  }
  return { matches: mismatches.length === 0, mismatches };
}

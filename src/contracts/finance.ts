// Shared by the finance workflow, its activities and the starter (pure: workflows import it).

/** A watermark window [lo, hi) of ledger transaction ids (xid8 as decimal strings). */
export interface FinanceWindow {
  lo: string;
  hi: string;
}

/** Error types of the finance load that a retry cannot fix: the workflow lists them as non-retryable. */
export const FINANCE_NON_RETRYABLE_ERRORS = [
  'FinanceVerificationError',
  'SealMismatchError',
  'WindowNotContiguousError',
  'FinanceQualityGateError',
] as const;

export const financeLoadId = (w: FinanceWindow): string => `load/${w.lo}-${w.hi}`;

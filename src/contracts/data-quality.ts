// Shared by the DataQuality workflow, its activities, the CLI and the finance gate (pure: workflows import it).
// The catalogue and its thresholds are documented in docs/data-quality.md.

/** A DQ window: a UTC day `2026-11-30` or hour `2026-11-30T01`. */
export interface DqWindow {
  id: string;
  start: string;
  end: string;
}

export class DqWindowError extends Error {
  constructor(readonly input: string) {
    super(`window "${input}" is neither a UTC day (2026-11-30) nor an hour (2026-11-30T01)`);
    this.name = 'DqWindowError';
  }
}

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;
const HOUR = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})$/;

export function parseDqWindow(id: string): DqWindow {
  const day = DAY.exec(id);
  const hour = HOUR.exec(id);
  const m = day ?? hour;
  if (!m) throw new DqWindowError(id);
  const start = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), hour ? Number(m[4]) : 0);
  const startIso = new Date(start).toISOString();
  // Reject 2026-02-31 and hour 25: the parsed date must print back as the input.
  if (!startIso.startsWith(day ? id : `${id.slice(0, 10)}T${id.slice(11)}`)) throw new DqWindowError(id);
  const end = start + (hour ? 3_600_000 : 86_400_000);
  return { id, start: startIso, end: new Date(end).toISOString() };
}

export const dayWindowOf = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
export const hourWindowOf = (ms: number): string => new Date(ms).toISOString().slice(0, 13);

/** The day and hour windows that overlap [fromMs, toMs]: what a finance window's entries fall into. */
export function dqWindowsOverlapping(fromMs: number, toMs: number): string[] {
  const out = new Set<string>();
  for (let t = Math.floor(fromMs / 3_600_000) * 3_600_000; t <= toMs; t += 3_600_000) {
    out.add(dayWindowOf(t));
    out.add(hourWindowOf(t));
  }
  return [...out];
}

export const DQ_CHECKS = [
  'duplicates.repeat_rate',
  'duplicates.conflicting',
  'ledger.missing_postings',
  'ledger.oltp_counterpart',
  'ledger.snowflake_completeness',
  'ordering.before_precondition',
  'ordering.lateness',
  'schema.drift',
  'tokenization.pii',
] as const;
export type DqCheckName = (typeof DQ_CHECKS)[number];

export type DqSeverity = 'critical' | 'warning';

export interface DqCheckSpec {
  severity: DqSeverity;
  /** A failing money check blocks publishing the finance windows whose entries fall in its window. */
  money: boolean;
  /** The check fails when `measured` exceeds this (rates as fractions, the rest as counts). */
  threshold: number;
  /** Whether a payment-id prefix scopes the check; unscoped ones measure the whole pipeline. */
  scoped: boolean;
}

export const DQ_CATALOGUE: Record<DqCheckName, DqCheckSpec> = {
  'duplicates.repeat_rate': { severity: 'warning', money: false, threshold: 0.5, scoped: true },
  'duplicates.conflicting': { severity: 'critical', money: true, threshold: 0, scoped: true },
  'ledger.missing_postings': { severity: 'critical', money: true, threshold: 0, scoped: true },
  // Money, but not a gate: the legacy rows are the payments API's, and their mapping is by convention.
  'ledger.oltp_counterpart': { severity: 'critical', money: false, threshold: 0, scoped: true },
  'ledger.snowflake_completeness': { severity: 'critical', money: true, threshold: 0, scoped: true },
  'ordering.before_precondition': { severity: 'warning', money: false, threshold: 0.25, scoped: true },
  'ordering.lateness': { severity: 'warning', money: false, threshold: 0, scoped: true },
  'schema.drift': { severity: 'warning', money: false, threshold: 0, scoped: false },
  'tokenization.pii': { severity: 'critical', money: false, threshold: 0, scoped: true },
};

/** What a check measured: one number against its threshold, a one-line summary and the evidence. */
export interface DqMeasurement {
  check: DqCheckName;
  measured: number;
  summary: string;
  details: Record<string, unknown>;
  /** Per-source rates: the check fails when any of them exceeds the threshold (measured is their max). */
  perSource?: Record<string, number>;
}

export interface DqResult extends DqMeasurement {
  runId: string;
  window: DqWindow;
  scope: string;
  severity: DqSeverity;
  money: boolean;
  threshold: number;
  passed: boolean;
  ranAt: string;
}

/** The threshold rule: a check passes while its measure (the worst source's, if per source) is at most its threshold. */
export function judge(m: DqMeasurement, spec: DqCheckSpec = DQ_CATALOGUE[m.check]): boolean {
  if (!Number.isFinite(m.measured)) return false;
  const worst = m.perSource ? Math.max(m.measured, ...Object.values(m.perSource)) : m.measured;
  return worst <= spec.threshold;
}

/** The money checks among these results that fail: why a finance window may not be published. */
export function blockingFailures(results: readonly DqResult[]): DqResult[] {
  return results.filter((r) => r.money && !r.passed);
}

export const dataQualityWorkflowId = (window: string, scope = ''): string =>
  scope ? `data-quality/${window}/${scope}` : `data-quality/${window}`;

/** A measurement judged against the catalogue: the row a run records. */
export function evaluate(
  m: DqMeasurement,
  run: { runId: string; window: DqWindow; scope: string; ranAt: string },
): DqResult {
  const spec = DQ_CATALOGUE[m.check];
  return {
    ...m,
    ...run,
    severity: spec.severity,
    money: spec.money,
    threshold: spec.threshold,
    passed: judge(m, spec),
  };
}

export interface DqRunSummary {
  window: string;
  scope: string;
  runId: string;
  checks: number;
  failed: DqCheckName[];
  /** Money checks that fail: they block publishing the finance windows in this window. */
  blocking: DqCheckName[];
  byCheck: Partial<Record<DqCheckName, { passed: boolean; severity: DqSeverity; measured: number; summary: string }>>;
}

export function summarize(
  results: readonly DqResult[],
  run: { window: string; scope: string; runId: string },
): DqRunSummary {
  return {
    ...run,
    checks: results.length,
    failed: results.filter((r) => !r.passed).map((r) => r.check),
    blocking: blockingFailures(results).map((r) => r.check),
    byCheck: Object.fromEntries(
      results.map((r) => [
        r.check,
        { passed: r.passed, severity: r.severity, measured: r.measured, summary: r.summary },
      ]),
    ),
  };
}

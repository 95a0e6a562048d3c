import type { PaymentEvent } from '../contracts/payment-event';
import { type JournalLine, factKey, linesFor } from '../ledger/posting-rules';

// The payment state machine as pure functions over the set of facts seen. The workflow is a thin
// shell around it; property tests drive it directly with every permutation they can think of.

export type LifecycleStatus =
  'OPEN' | 'CREATED' | 'AUTHORIZED' | 'CAPTURED' | 'SETTLED' | 'REFUNDED' | 'DISPUTED' | 'VOIDED' | 'FAILED';

export interface Anomaly {
  /** Unique per payment: also the audit flag key. */
  key: string;
  factKey?: string;
  kind: 'impossible' | 'precondition-timeout' | 'conflicting-report' | 'posting-conflict';
  reason: string;
  resolved: boolean;
}

/** Serializable (continue-as-new carries it). */
export interface PaymentCore {
  paymentId: string;
  /** First report of each business fact, by fact key. */
  facts: Record<string, PaymentEvent>;
  seenIdempotencyKeys: string[];
  /** Fact keys applied to the state (and posted, if they move money). */
  applied: string[];
  /** Fact keys waiting for a precondition. */
  waiting: string[];
  /** Fact keys refused for good (their anomaly says why). */
  refused: string[];
  anomalies: Anomaly[];
  duplicatesIgnored: number;
}

export interface Posting {
  factKey: string;
  fact: PaymentEvent;
  lines: JournalLine[];
}

export function emptyCore(paymentId: string): PaymentCore {
  return {
    paymentId,
    facts: {},
    seenIdempotencyKeys: [],
    applied: [],
    waiting: [],
    refused: [],
    anomalies: [],
    duplicatesIgnored: 0,
  };
}

/** Money-relevant content of a fact, to tell a re-report from a conflicting one. */
function content(fact: PaymentEvent): string {
  const { idempotencyKey: _k, traceId: _t, source: _s, sourceSequence: _q, occurredAt: _o, ...rest } = fact;
  return JSON.stringify(rest, Object.keys(rest).sort());
}

export type Receipt = 'new' | 'duplicate' | 'conflict';

/** Records a delivered fact: deduplicated by idempotency key, then by business fact key. */
export function receive(core: PaymentCore, fact: PaymentEvent): Receipt {
  if (core.seenIdempotencyKeys.includes(fact.idempotencyKey)) {
    core.duplicatesIgnored += 1;
    return 'duplicate';
  }
  core.seenIdempotencyKeys.push(fact.idempotencyKey);
  const key = factKey(fact);
  const known = core.facts[key];
  if (known) {
    if (content(known) === content(fact)) {
      core.duplicatesIgnored += 1; // the same fact from another source
      return 'duplicate';
    }
    addAnomaly(core, {
      key: `conflict:${key}:${fact.idempotencyKey}`,
      factKey: key,
      kind: 'conflicting-report',
      reason: `${fact.idempotencyKey} reports ${key} differently from ${known.idempotencyKey}`,
    });
    return 'conflict';
  }
  core.facts[key] = fact;
  core.waiting.push(key);
  return 'new';
}

/**
 * Whether the workflow needs this fact. Not when it would ignore it (a fact it has, or the same fact with
 * the same content from another source), nor a `created`: no rule reads it and it posts nothing, so the
 * workflow never waits for it; the SLA sweep judges the CREATED stage from the inbox. A `created` that
 * contradicts a known one does reach the workflow, as a conflicting report.
 * The router records inert facts without a signal (an action each, and a new run if the payment closed).
 */
export function isInert(core: PaymentCore, fact: PaymentEvent): boolean {
  if (core.seenIdempotencyKeys.includes(fact.idempotencyKey)) return true;
  const known = core.facts[factKey(fact)];
  if (known) return content(known) === content(fact);
  return fact.type === 'created';
}

/**
 * The router's decision for one fact, given the model of what it handled for the payment: the facts to
 * signal, in order (none: absorb it). A `created` that contradicts an absorbed one goes with it, so the
 * workflow sees the conflict. The fact joins the model either way.
 */
export function signalsFor(model: PaymentCore, fact: PaymentEvent): PaymentEvent[] {
  const known = model.facts[factKey(fact)];
  const signals = isInert(model, fact) ? [] : known?.type === 'created' ? [known, fact] : [fact];
  receive(model, fact);
  evaluate(model);
  return signals;
}

function addAnomaly(core: PaymentCore, a: Omit<Anomaly, 'resolved'>): Anomaly | undefined {
  if (core.anomalies.some((x) => x.key === a.key)) return undefined;
  const anomaly = { ...a, resolved: false };
  core.anomalies.push(anomaly);
  return anomaly;
}

interface Totals {
  authorizedMinor: number | undefined;
  captures: Map<string, number>;
  capturedMinor: number;
  refundedMinor: number;
  settledCaptures: Set<string>;
  openedChargebacks: Map<string, number>;
  resolvedChargebacks: Set<string>;
  voided: boolean;
  failed: boolean;
  created: boolean;
}

function totals(core: PaymentCore): Totals {
  const t: Totals = {
    authorizedMinor: undefined,
    captures: new Map(),
    capturedMinor: 0,
    refundedMinor: 0,
    settledCaptures: new Set(),
    openedChargebacks: new Map(),
    resolvedChargebacks: new Set(),
    voided: false,
    failed: false,
    created: false,
  };
  for (const key of core.applied) {
    const f = core.facts[key]!;
    switch (f.type) {
      case 'created':
        t.created = true;
        break;
      case 'authorized':
        t.authorizedMinor = f.amountMinor;
        break;
      case 'captured':
        t.captures.set(f.captureId, f.amountMinor);
        t.capturedMinor += f.amountMinor;
        break;
      case 'refunded':
        t.refundedMinor += f.amountMinor;
        break;
      case 'settled':
        t.settledCaptures.add(f.captureId);
        break;
      case 'chargeback_opened':
        t.openedChargebacks.set(f.chargebackId, f.amountMinor);
        break;
      case 'chargeback_won':
      case 'chargeback_lost':
        t.resolvedChargebacks.add(f.chargebackId);
        break;
      case 'voided':
        t.voided = true;
        break;
      case 'failed':
        t.failed = true;
        break;
    }
  }
  return t;
}

type Verdict = { apply: true } | { wait: string } | { impossible: string };

/** Whether a fact can apply on top of what is applied; a missing precondition waits, a contradiction is refused. */
function check(fact: PaymentEvent, t: Totals): Verdict {
  switch (fact.type) {
    case 'created':
      return { apply: true };
    case 'authorized':
      if (t.capturedMinor > fact.amountMinor) {
        return {
          impossible: `authorization of ${fact.amountMinor} below the captured ${t.capturedMinor} ${fact.currency}`,
        };
      }
      return { apply: true };
    case 'captured':
      if (t.voided || t.failed)
        return { impossible: `capture ${fact.captureId} after the payment was ${t.voided ? 'voided' : 'failed'}` };
      // No authorization fact is a sale (authorize + capture in one step); a known one caps the captures.
      if (t.authorizedMinor !== undefined && t.capturedMinor + fact.amountMinor > t.authorizedMinor) {
        return {
          impossible: `captures ${t.capturedMinor + fact.amountMinor} exceed the authorized ${t.authorizedMinor} ${fact.currency}`,
        };
      }
      return { apply: true };
    case 'voided':
      if (t.captures.size > 0) return { impossible: 'void after capture' };
      if (t.authorizedMinor === undefined) return { wait: 'the authorization' };
      return { apply: true };
    case 'failed':
      if (t.captures.size > 0) return { impossible: 'failure reported after capture' };
      return { apply: true };
    case 'refunded':
      if (t.authorizedMinor !== undefined && t.refundedMinor + fact.amountMinor > t.authorizedMinor) {
        return {
          impossible: `refunds ${t.refundedMinor + fact.amountMinor} exceed the authorized ${t.authorizedMinor} ${fact.currency}`,
        };
      }
      if (t.refundedMinor + fact.amountMinor > t.capturedMinor)
        return { wait: `captures covering refund ${fact.refundId}` };
      return { apply: true };
    case 'settled': {
      const captured = t.captures.get(fact.captureId);
      if (captured === undefined) return { wait: `capture ${fact.captureId}` };
      if (t.settledCaptures.has(fact.captureId)) return { impossible: `capture ${fact.captureId} is already settled` };
      if (captured !== fact.amountMinor)
        return { impossible: `settlement of ${fact.amountMinor} for a capture of ${captured}` };
      return { apply: true };
    }
    case 'chargeback_opened':
      if (fact.amountMinor > t.capturedMinor) return { wait: `captures covering chargeback ${fact.chargebackId}` };
      return { apply: true };
    case 'chargeback_won':
    case 'chargeback_lost':
      if (!t.openedChargebacks.has(fact.chargebackId)) return { wait: `chargeback ${fact.chargebackId} to be opened` };
      if (t.resolvedChargebacks.has(fact.chargebackId))
        return { impossible: `chargeback ${fact.chargebackId} is already resolved` };
      return { apply: true };
  }
}

const RANK: Record<PaymentEvent['type'], number> = {
  created: 0,
  authorized: 1,
  captured: 2,
  voided: 3,
  failed: 3,
  settled: 4,
  refunded: 5,
  chargeback_opened: 6,
  chargeback_won: 7,
  chargeback_lost: 7,
};

/** Canonical order among waiting facts, so the decision depends on the set, not on arrival. */
function canonical(core: PaymentCore): string[] {
  return [...core.waiting].sort((a, b) => {
    const fa = core.facts[a]!;
    const fb = core.facts[b]!;
    return RANK[fa.type] - RANK[fb.type] || fa.sourceSequence - fb.sourceSequence || (a < b ? -1 : a > b ? 1 : 0);
  });
}

export interface Evaluation {
  postings: Posting[];
  newAnomalies: Anomaly[];
}

/** Applies every waiting fact whose preconditions hold, until nothing changes. */
export function evaluate(core: PaymentCore): Evaluation {
  const out: Evaluation = { postings: [], newAnomalies: [] };
  for (let changed = true; changed;) {
    changed = false;
    for (const key of canonical(core)) {
      const fact = core.facts[key]!;
      const t = totals(core);
      const verdict = check(fact, t);
      if ('wait' in verdict) continue;
      core.waiting = core.waiting.filter((k) => k !== key);
      changed = true;
      if ('impossible' in verdict) {
        core.refused.push(key);
        const a = addAnomaly(core, {
          key: `impossible:${key}`,
          factKey: key,
          kind: 'impossible',
          reason: verdict.impossible,
        });
        if (a) out.newAnomalies.push(a);
        continue;
      }
      core.applied.push(key);
      const disputed = 'chargebackId' in fact ? (t.openedChargebacks.get(fact.chargebackId) ?? 0) : 0;
      const lines = linesFor(fact, disputed);
      if (lines.length > 0) out.postings.push({ factKey: key, fact, lines });
    }
  }
  return out;
}

/** A waiting fact whose precondition never came: refused, with an anomaly naming what it waited for. */
export function expire(core: PaymentCore, key: string): Anomaly | undefined {
  if (!core.waiting.includes(key)) return undefined;
  const verdict = check(core.facts[key]!, totals(core));
  core.waiting = core.waiting.filter((k) => k !== key);
  core.refused.push(key);
  const waitedFor = 'wait' in verdict ? verdict.wait : 'its precondition';
  return addAnomaly(core, {
    key: `timeout:${key}`,
    factKey: key,
    kind: 'precondition-timeout',
    reason: `${key} waited for ${waitedFor}, which never arrived`,
  });
}

/** The ledger already holds this posting key with other lines: never a second posting, an alert instead. */
export function postingConflict(core: PaymentCore, key: string, reason: string): Anomaly | undefined {
  return addAnomaly(core, { key: `posting-conflict:${key}`, factKey: key, kind: 'posting-conflict', reason });
}

/** A reopened payment: the facts earlier runs saw, minus the waits they already timed out (flagged). */
export function restore(core: PaymentCore, facts: readonly PaymentEvent[], flagKeys: ReadonlySet<string>): void {
  for (const fact of facts) receive(core, fact);
  for (const key of [...core.waiting]) if (flagKeys.has(`timeout:${key}`)) expire(core, key);
}

export function waitingReason(core: PaymentCore, key: string): string | undefined {
  const verdict = check(core.facts[key]!, totals(core));
  return 'wait' in verdict ? verdict.wait : undefined;
}

export function lifecycleStatus(core: PaymentCore): LifecycleStatus {
  const t = totals(core);
  if (t.failed) return 'FAILED';
  if (t.voided) return 'VOIDED';
  if ([...t.openedChargebacks.keys()].some((id) => !t.resolvedChargebacks.has(id))) return 'DISPUTED';
  if (t.captures.size > 0) {
    if ([...t.captures.keys()].some((id) => !t.settledCaptures.has(id))) return 'CAPTURED';
    return t.refundedMinor >= t.capturedMinor ? 'REFUNDED' : 'SETTLED';
  }
  if (t.authorizedMinor !== undefined) return 'AUTHORIZED';
  if (t.created) return 'CREATED';
  return 'OPEN';
}

/** The status a payment's facts and flags give it, rebuilt as a reopened run would: the SLA sweep's question. */
export function statusOf(
  paymentId: string,
  facts: readonly PaymentEvent[],
  flagKeys: ReadonlySet<string>,
): LifecycleStatus {
  const core = emptyCore(paymentId);
  restore(core, facts, flagKeys);
  evaluate(core);
  return lifecycleStatus(core);
}

/** The facts still waiting for a precondition once every fact is applied: the sweep's expiry question. */
export function waitingFacts(
  paymentId: string,
  facts: readonly PaymentEvent[],
  flagKeys: ReadonlySet<string>,
): string[] {
  const core = emptyCore(paymentId);
  restore(core, facts, flagKeys);
  evaluate(core);
  return [...core.waiting];
}

const FINAL: ReadonlySet<LifecycleStatus> = new Set(['SETTLED', 'REFUNDED', 'VOIDED', 'FAILED']);

/** Closed when final, nothing waits, and no anomaly is left for ops. Later facts reopen it. */
export function isQuiescent(core: PaymentCore): boolean {
  return FINAL.has(lifecycleStatus(core)) && core.waiting.length === 0 && core.anomalies.every((a) => a.resolved);
}

import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  patched,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { LedgerActivities } from '../activities/ledger';
import type { PaymentEvent } from '../contracts/payment-event';
import { type AccountCode, ACCOUNTS, adjustmentLines, postingKey } from '../ledger/posting-rules';
import type { PaymentFlag } from '../stores/ledger';
import {
  type Anomaly,
  type LifecycleStatus,
  type PaymentCore,
  emptyCore,
  evaluate,
  expire,
  isQuiescent,
  lifecycleStatus,
  postingConflict,
  receive,
  restore,
  waitingReason,
} from './payment-state';
import { PaymentStatusAttr } from './search-attributes';

// One workflow per payment (id payment/<paymentId>): the single writer of that payment's ledger
// postings, so postings are linearizable per payment (CP path, docs/architecture.md).
// Billable actions are kept low on purpose (docs/cost.md): postings are local activities, duplicates
// are filtered before Temporal, and the search attribute changes only when ops must look.

export const PAYMENT_TASK_QUEUE = 'payments';

/** PaymentStatus search attribute: what ops filter on in the Web UI. */
export type PaymentAttention = 'OPEN' | 'STUCK' | 'ANOMALY';

export interface PaymentWorkflowInput {
  paymentId: string;
  merchantId: string;
  region: string;
  /** Facts of this payment reached an earlier run: load them (and what was posted) first. */
  hasHistory: boolean;
  /** How long a fact may wait for its precondition before it becomes an anomaly. */
  preconditionTimeoutMs: number;
  /** Also mirror the lifecycle status into PaymentStatus (one extra action per change). */
  lifecycleSearchAttribute: boolean;
  /** Continue-as-new past this many history events (default 2,000; far below Temporal's 51,200 limit). */
  historyEventsBeforeContinue?: number;
  /** Continue-as-new carries the state. */
  carried?: { core: PaymentCore; stuck?: StuckMark; attribute: string };
}

export interface StuckMark {
  stage: LifecycleStatus;
  reason: string;
}

export interface SlaBreach {
  stage: LifecycleStatus;
  /** ISO time the payment entered the stage, as the sweep saw it. */
  since: string;
  slaMs: number;
}

export interface PreconditionsExpired {
  /** Fact keys the sweep saw waiting; a key no longer waiting here is ignored. */
  factKeys: string[];
  /** ISO time of the payment's latest fact, as the sweep saw it. */
  idleSince: string;
}

export interface ResolveRequest {
  actor: string;
  reason: string;
  /** Close the payment now (e.g. a capture that will never settle was written off). */
  close: boolean;
}

export interface AdjustmentRequest {
  /** Caller-chosen id: retrying the same adjustment posts it once. */
  adjustmentId: string;
  actor: string;
  reason: string;
  account: AccountCode;
  side: 'debit' | 'credit';
  amountMinor: number;
  currency: string;
}

export interface PaymentState {
  paymentId: string;
  status: LifecycleStatus;
  attention: PaymentAttention;
  stuck?: StuckMark;
  facts: {
    factKey: string;
    type: string;
    idempotencyKey: string;
    state: 'applied' | 'waiting' | 'refused';
    waitingFor?: string;
  }[];
  anomalies: Anomaly[];
  postedKeys: string[];
  duplicatesIgnored: number;
  closedBy?: string;
}

export const paymentFactSignal = defineSignal<[PaymentEvent]>('paymentFact');
export const slaBreachedSignal = defineSignal<[SlaBreach]>('slaBreached');
/** The SLA sweep found these facts still waiting after the payment was idle past the precondition timeout. */
export const preconditionsExpiredSignal = defineSignal<[PreconditionsExpired]>('preconditionsExpired');
export const resolvePaymentUpdate = defineUpdate<PaymentState, [ResolveRequest]>('resolve');
export const adjustPaymentUpdate = defineUpdate<PaymentState, [AdjustmentRequest]>('adjust');
export const paymentStateQuery = defineQuery<PaymentState>('paymentState');

export function paymentWorkflowId(paymentId: string): string {
  return `payment/${paymentId}`;
}

const ledger = proxyLocalActivities<LedgerActivities>({
  startToCloseTimeout: '30 seconds',
  // Consistency over availability: keep retrying while Postgres is unreachable; never re-post differently.
  retry: {
    initialInterval: '1 second',
    // Capped low so postings resume within seconds of Postgres returning (issue 10's drills).
    maximumInterval: '5 seconds',
    backoffCoefficient: 2,
    nonRetryableErrorTypes: ['PostingConflict'],
  },
});

const HISTORY_EVENTS_BEFORE_CONTINUE = 2_000;

/**
 * Runs that record this patch never start a timer per waiting fact: the SLA sweep expires waits
 * (preconditionsExpiredSignal), so out-of-order facts cost no action. Runs started before it keep
 * their timers on replay (docs/ledger.md, "Preconditions").
 */
export const WAITS_EXPIRE_BY_SWEEP = 'waits-expire-by-sweep';

/**
 * Runs that record this patch take one more pass before closing or continuing as new when a fact,
 * an expiry or a breach arrived during the last pass (while its postings ran). Before it, such a fact
 * was lost: its run closed without posting it, and the router had already marked it signalled. The
 * marker is written only when that happens, so an ordinary run's history does not change.
 */
export const DRAIN_BEFORE_CLOSE = 'drain-before-close';

export async function paymentWorkflow(input: PaymentWorkflowInput): Promise<PaymentState> {
  const core = input.carried?.core ?? emptyCore(input.paymentId);
  const inbox: PaymentEvent[] = [];
  const expired: string[] = [];
  const posted = new Set<string>();
  const flagged = new Set<string>();
  let stuck = input.carried?.stuck;
  let attribute = input.carried?.attribute ?? 'OPEN';
  let closedBy: string | undefined;
  let opsChanged = false;

  const state = (): PaymentState => ({
    paymentId: input.paymentId,
    status: lifecycleStatus(core),
    attention: attention(),
    stuck,
    facts: Object.entries(core.facts).map(([key, f]) => ({
      factKey: key,
      type: f.type,
      idempotencyKey: f.idempotencyKey,
      state: core.applied.includes(key) ? 'applied' : core.waiting.includes(key) ? 'waiting' : 'refused',
      waitingFor: core.waiting.includes(key) ? waitingReason(core, key) : undefined,
    })),
    anomalies: core.anomalies,
    postedKeys: [...posted],
    duplicatesIgnored: core.duplicatesIgnored,
    closedBy,
  });
  const attention = (): PaymentAttention =>
    core.anomalies.some((a) => !a.resolved) ? 'ANOMALY' : stuck ? 'STUCK' : 'OPEN';
  /** Something arrived that the loop has not handled yet (a signal during the last pass's postings). */
  const received = (): boolean => inbox.length > 0 || expired.length > 0 || breaches.length > 0;

  const flag = async (f: Omit<PaymentFlag, 'paymentId'>): Promise<void> => {
    if (flagged.has(f.flagKey)) return;
    await ledger.recordPaymentFlag({ paymentId: input.paymentId, ...f });
    flagged.add(f.flagKey);
  };

  setHandler(paymentFactSignal, (fact) => {
    inbox.push(fact);
  });
  const breaches: SlaBreach[] = [];
  setHandler(slaBreachedSignal, (breach) => {
    breaches.push(breach); // judged in the main loop, after the facts delivered before it
  });
  setHandler(preconditionsExpiredSignal, (signal) => {
    for (const key of signal.factKeys) if (core.waiting.includes(key) && !expired.includes(key)) expired.push(key);
  });
  setHandler(paymentStateQuery, state);
  setHandler(
    resolvePaymentUpdate,
    async (request) => {
      const open = core.anomalies.filter((a) => !a.resolved);
      for (const a of open) {
        await flag({
          flagKey: `resolved:${a.key}`,
          kind: 'resolved',
          reason: request.reason,
          actor: request.actor,
          stage: a.kind,
        });
        a.resolved = true;
      }
      if (stuck) {
        await flag({
          flagKey: `resolved:stuck:${stuck.stage}`,
          kind: 'resolved',
          reason: request.reason,
          actor: request.actor,
          stage: stuck.stage,
        });
        stuck = undefined;
      }
      if (request.close) {
        await flag({
          flagKey: 'closed',
          kind: 'resolved',
          stage: lifecycleStatus(core),
          reason: `closed: ${request.reason}`,
          actor: request.actor,
        });
        closedBy = `${request.actor}: ${request.reason}`;
      }
      opsChanged = true;
      return state();
    },
    {
      validator: (request: ResolveRequest) => {
        if (!request.actor.trim() || !request.reason.trim()) throw new Error('resolve needs an actor and a reason');
        if (!stuck && core.anomalies.every((a) => a.resolved) && !request.close) {
          throw new Error(`payment ${input.paymentId} is neither stuck nor anomalous: nothing to resolve`);
        }
      },
    },
  );
  setHandler(
    adjustPaymentUpdate,
    async (request) => {
      const key = postingKey(input.paymentId, `manual:${request.adjustmentId}`);
      await ledger.postJournalEntry({
        postingKey: key,
        paymentId: input.paymentId,
        merchantId: input.merchantId,
        factType: 'manual_adjustment',
        idempotencyKey: `manual:${request.adjustmentId}`,
        // The update's own time (deterministic in the workflow sandbox), not the run's start.
        occurredAt: new Date().toISOString(),
        lines: adjustmentLines(request.account, request.side, request.amountMinor, request.currency),
        actor: request.actor,
        memo: request.reason,
      });
      posted.add(key);
      await flag({
        flagKey: `adjustment:${request.adjustmentId}`,
        kind: 'adjustment',
        reason: `${request.side} ${request.account} ${request.amountMinor} ${request.currency}: ${request.reason}`,
        actor: request.actor,
      });
      return state();
    },
    {
      validator: (request: AdjustmentRequest) => {
        if (!request.actor.trim() || !request.reason.trim())
          throw new Error('an adjustment needs an actor and a reason');
        if (!(ACCOUNTS as readonly string[]).includes(request.account) || request.account === 'suspense') {
          throw new Error(`unknown or invalid account "${request.account}"`);
        }
        if (!Number.isSafeInteger(request.amountMinor) || request.amountMinor <= 0) {
          throw new Error(`amountMinor must be a positive integer, got ${request.amountMinor}`);
        }
        if (!/^[A-Z]{3}$/.test(request.currency))
          throw new Error(`currency must be an ISO 4217 code, got "${request.currency}"`);
      },
    },
  );

  if (input.hasHistory && !input.carried) {
    // A reopened payment: rebuild from the facts earlier runs saw, and what they already posted.
    const history = await ledger.loadPaymentHistory(input.paymentId);
    history.postedKeys.forEach((k) => posted.add(k));
    history.flagKeys.forEach((k) => flagged.add(k));
    restore(core, history.facts, flagged);
  }
  if (input.carried) {
    for (const key of core.waiting) armPreconditionTimer(key);
  }

  function armPreconditionTimer(key: string): void {
    // Patch markers are not billable; the timer it replaces is (one action per out-of-order fact).
    if (patched(WAITS_EXPIRE_BY_SWEEP)) return;
    void sleep(input.preconditionTimeoutMs).then(() => {
      if (core.waiting.includes(key)) expired.push(key);
    });
  }

  for (;;) {
    // 1. New facts, expired waits.
    const before = new Set(core.waiting);
    for (const fact of inbox.splice(0)) {
      if (fact.paymentId !== input.paymentId) {
        throw ApplicationFailure.nonRetryable(
          `fact ${fact.idempotencyKey} is for payment ${fact.paymentId}, not ${input.paymentId}`,
        );
      }
      receive(core, fact);
    }
    const newAnomalies: Anomaly[] = [];
    const evaluation = evaluate(core);
    for (const breach of breaches.splice(0)) {
      // The sweep saw an older picture: only a payment still in that stage, not resolved for it, is stuck.
      if (stuck || lifecycleStatus(core) !== breach.stage || flagged.has(`resolved:stuck:${breach.stage}`)) continue;
      stuck = {
        stage: breach.stage,
        reason: `${breach.stage} since ${breach.since}, over its SLA of ${Math.round(breach.slaMs / 1000)} s`,
      };
    }
    for (const key of expired.splice(0)) {
      const a = expire(core, key);
      if (a) newAnomalies.push(a);
    }
    // 2. Post and flag in one workflow task (local activities: one action).
    const evaluation2 = evaluate(core); // expiries may unblock nothing, but keep the fixpoint honest
    evaluation.postings.push(...evaluation2.postings);
    newAnomalies.push(...evaluation.newAnomalies, ...evaluation2.newAnomalies);
    for (const a of newAnomalies) if (flagged.has(`resolved:${a.key}`)) a.resolved = true;
    const work: Promise<unknown>[] = [];
    const conflicts: Anomaly[] = [];
    for (const p of evaluation.postings) {
      const key = postingKey(input.paymentId, p.factKey);
      if (posted.has(key)) continue;
      work.push(
        ledger
          .postJournalEntry({
            postingKey: key,
            paymentId: input.paymentId,
            merchantId: p.fact.merchantId,
            factType: p.fact.type,
            idempotencyKey: p.fact.idempotencyKey,
            traceId: p.fact.traceId,
            occurredAt: p.fact.occurredAt,
            lines: p.lines,
          })
          .then(
            () => posted.add(key),
            (err: unknown) => {
              const cause = err instanceof ActivityFailure ? err.cause : err; // local activities may surface it bare
              if (!(cause instanceof ApplicationFailure && cause.type === 'PostingConflict')) throw err;
              const a = postingConflict(core, p.factKey, cause.message);
              if (a) conflicts.push(a);
            },
          ),
      );
    }
    for (const a of newAnomalies.filter((x) => !x.resolved)) {
      work.push(flag({ flagKey: a.key, kind: 'anomaly', stage: a.kind, reason: a.reason }));
    }
    if (stuck)
      work.push(flag({ flagKey: `stuck:${stuck.stage}`, kind: 'stuck', stage: stuck.stage, reason: stuck.reason }));
    await Promise.all(work);
    // A posting conflict surfaces as an anomaly (PaymentStatus=ANOMALY), recorded for audit.
    await Promise.all(
      conflicts.splice(0).map((a) => flag({ flagKey: a.key, kind: 'anomaly', stage: a.kind, reason: a.reason })),
    );
    for (const key of core.waiting) if (!before.has(key)) armPreconditionTimer(key);

    // 3. The search attribute changes only when ops must look (or on request, each lifecycle step).
    const wanted = attention() !== 'OPEN' || !input.lifecycleSearchAttribute ? attention() : lifecycleStatus(core);
    if (wanted !== attribute) {
      upsertSearchAttributes([{ key: PaymentStatusAttr, value: wanted }]);
      attribute = wanted;
    }
    opsChanged = false;

    // 4. Close when final and quiet (later facts reopen it), or when ops closed it.
    if (closedBy !== undefined || (isQuiescent(core) && !stuck)) {
      await condition(allHandlersFinished); // an ops update in flight gets its answer first
      // A fact signalled while this pass posted is in the inbox, unseen: the router marked it signalled,
      // so closing now would lose its posting for good. Take another pass (the patch keeps old histories).
      if (received() && patched(DRAIN_BEFORE_CLOSE)) continue;
      return state();
    }
    const info = workflowInfo();
    if (
      info.continueAsNewSuggested ||
      info.historyLength > (input.historyEventsBeforeContinue ?? HISTORY_EVENTS_BEFORE_CONTINUE)
    ) {
      // The carried core has not seen the inbox: handle it in this run first (waiting for an empty inbox
      // without a pass, as runs before the patch do, waits for ever once a fact arrived with a posting).
      if (received() && patched(DRAIN_BEFORE_CLOSE)) continue;
      await condition(() => inbox.length === 0); // nothing received may be left behind
      return continueAsNew<typeof paymentWorkflow>({ ...input, carried: { core, stuck, attribute } });
    }
    await condition(() => inbox.length > 0 || expired.length > 0 || breaches.length > 0 || opsChanged);
  }
}

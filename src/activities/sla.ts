import { Context } from '@temporalio/activity';
import type { Pool } from 'pg';
import { flagKeys } from '../stores/ledger';
import { idlePayments, paymentFacts } from '../stores/payment-inbox';
import { type RoutingPolicy, startPaymentRun } from '../streams/payment-router';
import type { SlaBreach } from '../workflows/payment';
import { type LifecycleStatus, statusOf, waitingFacts } from '../workflows/payment-state';

// The SLA sweep's query: payments in a stage longer than its SLA (idle since their latest handled fact)
// and not flagged for that stage yet. The payment workflow has the final word on whether it is stuck.
// The stage is the one the workflow sees (the facts Temporal has); a payment with none there (only a
// `created`, never signalled) is judged from the inbox, and the sweep starts its run to mark it stuck.

export interface OverduePayment {
  paymentId: string;
  stage: LifecycleStatus;
  since: string;
  /** False: Temporal holds no fact of it (all absorbed); startOverduePayment starts its run. */
  signalled: boolean;
}

/** A payment idle past the precondition timeout with facts still waiting: the sweep expires them. */
export interface ExpiredWaits {
  paymentId: string;
  factKeys: string[];
  since: string;
}

export interface SlaActivities {
  findOverduePayments(
    slas: Partial<Record<LifecycleStatus, number>>,
    limit: number,
    paymentIdPrefix?: string,
  ): Promise<OverduePayment[]>;
  findExpiredWaits(preconditionTimeoutMs: number, limit: number, paymentIdPrefix?: string): Promise<ExpiredWaits[]>;
  /** Starts the run of a payment Temporal has no fact of, with the breach: it loads its facts and marks itself stuck. */
  startOverduePayment(paymentId: string, breach: SlaBreach): Promise<void>;
}

const BATCH = 500;

/** routing: how the runs the sweep starts are configured (the router's policy). */
export function createSlaActivities(pool: Pool, routing: RoutingPolicy): SlaActivities {
  return {
    async findOverduePayments(slas, limit, paymentIdPrefix) {
      const slaMs = Object.values(slas);
      if (slaMs.length === 0 || limit <= 0) return [];
      // The state machine's rule on each idle payment's facts: storing the workflow's stage costs an action per change.
      const idle = await idlePayments(pool, Math.min(...slaMs), paymentIdPrefix);
      const overdue: OverduePayment[] = [];
      for (let i = 0; i < idle.length && overdue.length < limit; i += BATCH) {
        const batch = idle.slice(i, i + BATCH);
        const ids = batch.map((p) => p.paymentId);
        const unsignalled = batch.filter((p) => !p.signalled).map((p) => p.paymentId);
        const [signalledFacts, absorbedFacts, flags] = await Promise.all([
          paymentFacts(pool, ids, 'signalled'),
          paymentFacts(pool, unsignalled, 'handled'),
          flagKeys(pool, ids),
        ]);
        for (const p of batch) {
          const flagged = new Set(flags.get(p.paymentId));
          const facts = (p.signalled ? signalledFacts : absorbedFacts).get(p.paymentId) ?? [];
          const stage = statusOf(p.paymentId, facts, flagged);
          const sla = slas[stage];
          if (sla === undefined || p.idleMs <= sla) continue;
          if (flagged.has(`stuck:${stage}`) || flagged.has(`resolved:stuck:${stage}`)) continue;
          overdue.push({ paymentId: p.paymentId, stage, since: p.since, signalled: p.signalled });
          if (overdue.length === limit) break;
        }
      }
      return overdue;
    },

    // A wait expires once its payment has had no new fact for the timeout: while facts still arrive,
    // the precondition may be among them. No timer per waiting fact (each would be a billable action).
    async findExpiredWaits(preconditionTimeoutMs, limit, paymentIdPrefix) {
      if (limit <= 0) return [];
      const idle = await idlePayments(pool, preconditionTimeoutMs, paymentIdPrefix);
      const expired: ExpiredWaits[] = [];
      for (let i = 0; i < idle.length && expired.length < limit; i += BATCH) {
        const batch = idle.slice(i, i + BATCH);
        const ids = batch.map((p) => p.paymentId);
        const [facts, flags] = await Promise.all([paymentFacts(pool, ids, 'signalled'), flagKeys(pool, ids)]);
        for (const p of batch) {
          const factKeys = waitingFacts(p.paymentId, facts.get(p.paymentId) ?? [], new Set(flags.get(p.paymentId)));
          if (factKeys.length === 0) continue;
          expired.push({ paymentId: p.paymentId, factKeys, since: p.since });
          if (expired.length === limit) break;
        }
      }
      return expired;
    },

    async startOverduePayment(paymentId, breach) {
      const [first] = (await paymentFacts(pool, [paymentId], 'handled')).get(paymentId) ?? [];
      if (!first) throw new Error(`payment ${paymentId} has no handled fact in the inbox: nothing to start`);
      // hasHistory: the run loads every accepted fact (the absorbed `created` among them) before the breach.
      await startPaymentRun(Context.current().client, first, true, routing, { breach });
    },
  };
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "CAPTURED=3d,AUTHORIZED=7d" into milliseconds per stage; names the bad part on error. */
export function parseSlas(spec: string): Partial<Record<LifecycleStatus, number>> {
  const out: Partial<Record<LifecycleStatus, number>> = {};
  for (const part of spec
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^(CREATED|AUTHORIZED|CAPTURED|DISPUTED)=(\d+)([smhd])$/.exec(part);
    if (!m)
      throw new Error(
        `invalid SLA "${part}" in PAYMENT_SLAS: expected STAGE=<number><s|m|h|d>, stages CREATED, AUTHORIZED, CAPTURED, DISPUTED`,
      );
    out[m[1] as LifecycleStatus] = Number(m[2]) * UNIT_MS[m[3]!]!;
  }
  return out;
}

import { getExternalWorkflowHandle, isCancellation, proxyActivities } from '@temporalio/workflow';
import type { SlaActivities } from '../activities/sla';
import type { LifecycleStatus } from './payment-state';
import { paymentWorkflowId, preconditionsExpiredSignal, slaBreachedSignal } from './payment';

// One sweep for all payments instead of one SLA timer per payment: a timer is a billable action,
// so per-payment timers would cost every payment; the sweep costs only the overdue ones.

// A payment Temporal holds no fact of (only a `created`, which the router never signals) has no run to
// signal: an activity starts it with the breach (an action only for the stuck ones).

// The same sweep expires precondition waits: a payment idle past the timeout with a fact still
// waiting gets one signal, instead of every waiting fact costing a durable timer.

export interface SlaSweepInput {
  slas: Partial<Record<LifecycleStatus, number>>;
  limit: number;
  /** Expire waits of payments idle this long (PAYMENT_PRECONDITION_TIMEOUT_MS); absent = SLAs only. */
  preconditionTimeoutMs?: number;
  /** Only payments whose id starts with this (a test's or a drill's run); absent = all. */
  paymentIdPrefix?: string;
}

export interface SlaSweepResult {
  signalled: string[];
  alreadyClosed: string[];
  /** Payments told that their waiting facts expired. */
  expiredWaits?: string[];
  /** Overdue payments with no run (Temporal had none of their facts), started stuck. */
  started?: string[];
}

const { findOverduePayments, findExpiredWaits, startOverduePayment } = proxyActivities<SlaActivities>({
  startToCloseTimeout: '2 minutes',
});

export async function slaSweepWorkflow(input: SlaSweepInput): Promise<SlaSweepResult> {
  const overdue = await findOverduePayments(input.slas, input.limit, input.paymentIdPrefix);
  const result: SlaSweepResult = { signalled: [], alreadyClosed: [] };
  if (input.preconditionTimeoutMs !== undefined) {
    // Waits first: an expired wait is an anomaly, which the workflow weighs before an SLA breach.
    result.expiredWaits = [];
    for (const p of await findExpiredWaits(input.preconditionTimeoutMs, input.limit, input.paymentIdPrefix)) {
      try {
        await getExternalWorkflowHandle(paymentWorkflowId(p.paymentId)).signal(preconditionsExpiredSignal, {
          factKeys: p.factKeys,
          idleSince: p.since,
        });
        result.expiredWaits.push(p.paymentId);
      } catch (err) {
        if (isCancellation(err)) throw err;
        result.alreadyClosed.push(p.paymentId);
      }
    }
  }
  for (const p of overdue) {
    const breach = { stage: p.stage, since: p.since, slaMs: input.slas[p.stage] ?? 0 };
    if (p.signalled === false) {
      await startOverduePayment(p.paymentId, breach);
      (result.started ??= []).push(p.paymentId);
      continue;
    }
    try {
      await getExternalWorkflowHandle(paymentWorkflowId(p.paymentId)).signal(slaBreachedSignal, breach);
      result.signalled.push(p.paymentId);
    } catch (err) {
      if (isCancellation(err)) throw err;
      result.alreadyClosed.push(p.paymentId); // a closed payment is not stuck
    }
  }
  return result;
}

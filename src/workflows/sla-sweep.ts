import { getExternalWorkflowHandle, isCancellation, proxyActivities } from '@temporalio/workflow';
import type { SlaActivities } from '../activities/sla';
import type { LifecycleStatus } from './payment-state';
import { paymentWorkflowId, slaBreachedSignal } from './payment';

// One sweep for all payments instead of one SLA timer per payment: a timer is a billable action,
// so per-payment timers would cost every payment; the sweep costs only the overdue ones.

export interface SlaSweepInput {
  slas: Partial<Record<LifecycleStatus, number>>;
  limit: number;
}

export interface SlaSweepResult {
  signalled: string[];
  alreadyClosed: string[];
}

const { findOverduePayments } = proxyActivities<SlaActivities>({ startToCloseTimeout: '2 minutes' });

export async function slaSweepWorkflow(input: SlaSweepInput): Promise<SlaSweepResult> {
  const overdue = await findOverduePayments(input.slas, input.limit);
  const result: SlaSweepResult = { signalled: [], alreadyClosed: [] };
  for (const p of overdue) {
    try {
      await getExternalWorkflowHandle(paymentWorkflowId(p.paymentId)).signal(slaBreachedSignal, {
        stage: p.stage,
        since: p.since,
        slaMs: input.slas[p.stage] ?? 0,
      });
      result.signalled.push(p.paymentId);
    } catch (err) {
      if (isCancellation(err)) throw err;
      result.alreadyClosed.push(p.paymentId); // a closed payment is not stuck
    }
  }
  return result;
}

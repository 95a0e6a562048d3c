import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import type { Pool } from 'pg';
import { paymentFacts } from '../stores/payment-inbox';
import { type RoutingPolicy, startPaymentRun } from '../streams/payment-router';
import { type PaymentState, paymentStateQuery, paymentWorkflowId } from '../workflows/payment';

// `npm run payment -- reopen <id>`: the repair for a payment whose run closed with a fact the inbox
// marks signalled but the ledger lacks (`ledger.missing_postings`; runs before the drain-before-close
// patch could close with a fact still in their inbox, docs/ledger.md). Nothing is re-signalled to
// the router: a new run of the payment loads every accepted fact and the posting keys already in the
// ledger, posts exactly what is missing (posting keys make the rest already-posted) and closes.

export interface ReopenResult {
  paymentId: string;
  /** False when the run still waits for something after 30 s (it stays open for ops, as any payment). */
  closed: boolean;
  status: string;
  postedKeys: string[];
}

export async function reopenPayment(
  deps: { client: Client; pool: Pool; policy: RoutingPolicy },
  paymentId: string,
): Promise<ReopenResult> {
  const handle = deps.client.workflow.getHandle(paymentWorkflowId(paymentId));
  let open = false;
  try {
    open = (await handle.describe()).status.name === 'RUNNING';
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
  if (open) {
    throw new Error(`payment ${paymentId} has a run open, which posts by itself: npm run payment -- show ${paymentId}`);
  }
  const facts = (await paymentFacts(deps.pool, [paymentId], 'signalled')).get(paymentId) ?? [];
  const latest = facts[facts.length - 1];
  if (!latest) throw new Error(`payment ${paymentId}: no fact of it reached Temporal, so there is no run to reopen`);
  // Its latest fact as the wake-up signal: the new run already has it from the history, so it is a duplicate.
  await startPaymentRun(deps.client, latest, true, deps.policy, { fact: latest });
  const final = await Promise.race([
    handle.result().then((r) => r as PaymentState),
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 30_000).unref()),
  ]);
  const state = final ?? (await handle.query(paymentStateQuery));
  return { paymentId, closed: final !== undefined, status: state.status, postedKeys: [...state.postedKeys].sort() };
}

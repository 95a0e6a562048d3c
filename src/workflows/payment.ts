import {
  ApplicationFailure,
  condition,
  defineQuery,
  defineSignal,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { LedgerActivities } from '../activities/ledger';
import type { PaymentEvent, PaymentFactType } from '../contracts/payment-event';
import { factKey, linesFor } from '../ledger/posting-rules';
import { PaymentStatusAttr } from './search-attributes';

// One workflow per payment (id payment/<paymentId>): the single writer of that payment's ledger
// postings, so postings are linearizable per payment (CP path, docs/architecture.md).

export const PAYMENT_TASK_QUEUE = 'payments';

export type PaymentStatus = 'RECEIVED' | 'CREATED' | 'AUTHORIZED' | 'CAPTURED' | 'SETTLED';

export interface PaymentWorkflowInput {
  paymentId: string;
  merchantId: string;
  region: string;
  /** How long a payment stays open after its final state, to absorb late duplicates. */
  closeAfterFinalMs: number;
}

export interface PaymentState {
  paymentId: string;
  status: PaymentStatus;
  factsSeen: number;
  duplicatesIgnored: number;
  postedKeys: string[];
}

export const paymentFactSignal = defineSignal<[PaymentEvent]>('paymentFact');
export const paymentStateQuery = defineQuery<PaymentState>('paymentState');

const STATUS_BY_FACT: Record<PaymentFactType, PaymentStatus> = {
  created: 'CREATED',
  authorized: 'AUTHORIZED',
  captured: 'CAPTURED',
  settled: 'SETTLED',
};
const RANK: Record<PaymentStatus, number> = { RECEIVED: 0, CREATED: 1, AUTHORIZED: 2, CAPTURED: 3, SETTLED: 4 };

export function paymentWorkflowId(paymentId: string): string {
  return `payment/${paymentId}`;
}

const { postJournalEntry } = proxyActivities<LedgerActivities>({
  startToCloseTimeout: '30 seconds',
  retry: {
    initialInterval: '1 second',
    maximumInterval: '1 minute',
    backoffCoefficient: 2,
    // Consistency over availability: keep retrying while Postgres is unreachable; never re-post differently.
    nonRetryableErrorTypes: ['PostingConflict'],
  },
});

export async function paymentWorkflow(input: PaymentWorkflowInput): Promise<PaymentState> {
  const seen = new Map<string, PaymentEvent>();
  const pending: PaymentEvent[] = [];
  const posted: string[] = [];
  let duplicatesIgnored = 0;
  let status: PaymentStatus = 'RECEIVED';

  setHandler(paymentFactSignal, (fact) => {
    if (fact.paymentId !== input.paymentId) {
      throw ApplicationFailure.nonRetryable(`fact ${fact.idempotencyKey} is for payment ${fact.paymentId}`);
    }
    const key = factKey(fact);
    if (seen.has(key)) {
      duplicatesIgnored += 1;
      return;
    }
    seen.set(key, fact);
    pending.push(fact);
  });
  setHandler(paymentStateQuery, () => ({
    paymentId: input.paymentId,
    status,
    factsSeen: seen.size,
    duplicatesIgnored,
    postedKeys: [...posted],
  }));

  const workflowId = workflowInfo().workflowId;
  for (;;) {
    if (status === 'SETTLED') {
      const woke = await condition(() => pending.length > 0, input.closeAfterFinalMs);
      if (!woke) break; // final and quiet for closeAfterFinalMs: close
    } else {
      await condition(() => pending.length > 0);
    }
    while (pending.length > 0) {
      const fact = pending.shift()!;
      const lines = linesFor(fact);
      if (lines.length > 0) {
        const postingKey = `${workflowId}/${factKey(fact)}`;
        await postJournalEntry({
          postingKey,
          paymentId: fact.paymentId,
          merchantId: fact.merchantId,
          factType: fact.type,
          idempotencyKey: fact.idempotencyKey,
          occurredAt: fact.occurredAt,
          lines,
        });
        posted.push(postingKey);
      }
    }
    // Status derives from the set of facts seen, not their arrival order.
    const derived = [...seen.values()]
      .map((f) => STATUS_BY_FACT[f.type])
      .reduce<PaymentStatus>((a, b) => (RANK[b] > RANK[a] ? b : a), 'RECEIVED');
    if (derived !== status) {
      status = derived;
      upsertSearchAttributes([{ key: PaymentStatusAttr, value: status }]);
    }
  }
  return { paymentId: input.paymentId, status, factsSeen: seen.size, duplicatesIgnored, postedKeys: posted };
}

import type { Client } from '@temporalio/client';
import type { Pool } from 'pg';
import { consumedQuarantineMessage } from '../contracts/envelope';
import { type PaymentEvent, parsePaymentEvent } from '../contracts/payment-event';
import { type Logger, createLogger } from '../logger';
import { retryTransient } from '../resilience';
import { admitFacts, markSignalled, paymentFacts } from '../stores/payment-inbox';
import {
  PAYMENT_TASK_QUEUE,
  type PaymentWorkflowInput,
  paymentFactSignal,
  paymentWorkflow,
  paymentWorkflowId,
} from '../workflows/payment';
import { type PaymentCore, emptyCore, evaluate, isInert, receive } from '../workflows/payment-state';
import { MerchantIdAttr, PaymentStatusAttr, RegionAttr } from '../workflows/search-attributes';
import { type BatchHandler, type Producer, type TopicRecord, type TopicSet, produce } from './kafka';

// payment-router: Kafka payment facts → inbox (Postgres) → signalWithStart(PaymentWorkflow).
// Offsets are committed only after Temporal accepted every signal of the batch, so a crash
// re-delivers; the inbox drops facts Temporal already has, so duplicates cost no Temporal action.
// Only facts that can change a payment reach Temporal: the payment state machine, run over what
// Temporal already has, says which cannot (isInert); those are recorded in the inbox, unsignalled.

export const PAYMENT_ROUTER_GROUP = 'payment-router';

export interface RoutingPolicy {
  preconditionTimeoutMs: number;
  lifecycleSearchAttribute: boolean;
  taskQueue?: string;
}

export interface PaymentRouterDeps {
  client: Client;
  /** Where refused facts go (quarantine). */
  producer: Producer;
  topics: Pick<TopicSet, 'quarantine'>;
  pool: Pool;
  log: Logger;
  policy: RoutingPolicy;
  /** Payments signalled concurrently within one batch (facts of one payment stay in order). */
  concurrency?: number;
}

export async function routeFact(
  client: Client,
  fact: PaymentEvent,
  hasHistory: boolean,
  policy: RoutingPolicy,
): Promise<void> {
  const input: PaymentWorkflowInput = {
    paymentId: fact.paymentId,
    merchantId: fact.merchantId,
    region: fact.region,
    hasHistory,
    preconditionTimeoutMs: policy.preconditionTimeoutMs,
    lifecycleSearchAttribute: policy.lifecycleSearchAttribute,
  };
  await client.workflow.signalWithStart(paymentWorkflow, {
    workflowId: paymentWorkflowId(fact.paymentId),
    taskQueue: policy.taskQueue ?? PAYMENT_TASK_QUEUE,
    args: [input],
    signal: paymentFactSignal,
    signalArgs: [fact],
    // Set with the start: free. Later changes are upserts, and cost an action each.
    typedSearchAttributes: [
      { key: PaymentStatusAttr, value: 'OPEN' },
      { key: MerchantIdAttr, value: fact.merchantId },
      { key: RegionAttr, value: fact.region },
    ],
  });
}

export interface RouteOptions {
  /** Payments signalled concurrently (facts of one payment stay in order). */
  concurrency?: number;
  /** False once the partition went elsewhere: stop signalling, and stop waiting out an outage. */
  shouldContinue?: () => boolean;
  log?: Logger;
}

const defaultLog = createLogger('payment-router');

/**
 * Admits facts to the inbox and signals the ones Temporal has not accepted yet. A Postgres or Temporal
 * outage is waited out here, in place (retryTransient), rather than by failing the batch: a failed batch
 * is redelivered whole, and every fact signalled before the failure but not yet marked would be
 * signalled again — an action each, for nothing.
 */
export async function routeFacts(
  client: Client,
  pool: Pool,
  facts: PaymentEvent[],
  policy: RoutingPolicy,
  options: RouteOptions = {},
): Promise<{ signalled: number; absorbed: number; skippedDuplicates: number; complete: boolean }> {
  const { concurrency = 32, shouldContinue = () => true } = options;
  const retry = { log: options.log ?? defaultLog, shouldContinue };
  const { admissions, paymentsWithHistory } = await retryTransient(
    'postgres',
    'admitting facts to the inbox',
    () => admitFacts(pool, facts),
    retry,
  );
  const byPayment = new Map<string, PaymentEvent[]>();
  for (const a of admissions) {
    if (!a.mustSignal) continue;
    const list = byPayment.get(a.fact.paymentId) ?? [];
    list.push(a.fact);
    byPayment.set(a.fact.paymentId, list);
  }
  const groups = [...byPayment.values()];
  // What Temporal already has of these payments: the state machine over it tells which new facts are inert.
  const withHistory = [...byPayment.keys()].filter((id) => paymentsWithHistory.has(id));
  const known =
    withHistory.length === 0
      ? new Map<string, PaymentEvent[]>()
      : await retryTransient(
          'postgres',
          'loading the facts Temporal has',
          () => paymentFacts(pool, withHistory, 'signalled'),
          retry,
        );
  let next = 0;
  let signalled = 0;
  let absorbed = 0;
  let failure: { error: unknown } | undefined;
  const workers = Array.from({ length: Math.min(concurrency, groups.length) }, async () => {
    while (next < groups.length && shouldContinue() && !failure) {
      const group = groups[next++]!;
      try {
        // After its first signal a payment has history: if its run closes mid-batch, the next run loads it.
        let hasHistory = paymentsWithHistory.has(group[0]!.paymentId);
        const core = modelOf(group[0]!.paymentId, known.get(group[0]!.paymentId) ?? []);
        for (const fact of group) {
          if (isInert(core, fact)) {
            absorbed += 1; // marked with the group: a redelivery skips it like a signalled one
            continue;
          }
          await retryTransient('temporal', 'signalWithStart', () => routeFact(client, fact, hasHistory, policy), retry);
          hasHistory = true;
          signalled += 1;
          receive(core, fact);
          evaluate(core);
        }
        await retryTransient(
          'postgres',
          'marking facts signalled',
          () =>
            markSignalled(
              pool,
              group.map((f) => f.idempotencyKey),
            ),
          retry,
        );
      } catch (error) {
        // The other workers stop at their next payment; none keeps signalling behind a failed batch.
        failure ??= { error };
      }
    }
  });
  await Promise.all(workers);
  if (failure) throw failure.error;
  return {
    signalled,
    absorbed,
    skippedDuplicates: admissions.length - signalled - absorbed,
    complete: next >= groups.length,
  };
}

/** The payment as its workflow sees it, from the facts Temporal has (in the order they were received). */
function modelOf(paymentId: string, facts: readonly PaymentEvent[]): PaymentCore {
  const core = emptyCore(paymentId);
  for (const fact of facts) receive(core, fact);
  evaluate(core);
  return core;
}

/**
 * The router's batch (run by runConsumer on the payment facts topic): unusable messages to quarantine,
 * facts to the inbox and Temporal. Committed only once every fact of the batch is accepted.
 */
export function paymentRouterBatches(deps: PaymentRouterDeps): BatchHandler {
  const { client, producer, pool, log, policy } = deps;
  return async (batch, control) => {
    const facts: PaymentEvent[] = [];
    const refused: TopicRecord[] = [];
    for (const message of batch.messages) {
      const parsed = parsePaymentEvent(message.value);
      if (parsed.ok) {
        facts.push(parsed.value);
        continue;
      }
      refused.push(consumedQuarantineMessage(deps.topics.quarantine, batch, message, parsed.reason));
      log.warn('quarantined payment event', {
        partition: batch.partition,
        offset: message.offset,
        reason: parsed.reason,
      });
    }
    await produce(producer, refused);
    // On SIGTERM the batch is finished, not abandoned; only a lost partition stops it early. The runner
    // heartbeats while this waits out an outage, so the group keeps this member and its partitions.
    const result = await routeFacts(client, pool, facts, policy, {
      concurrency: deps.concurrency,
      shouldContinue: control.owned,
      log,
    });
    return result.complete ? 'commit' : 'redeliver'; // not all signalled: leave offsets for redelivery
  };
}

import type { Client } from '@temporalio/client';
import type { Pool } from 'pg';
import type { Config } from '../config';
import { consumedQuarantineMessage, readFromOf } from '../contracts/envelope';
import { type PaymentEvent, parsePaymentEvent } from '../contracts/payment-event';
import { type Logger, createLogger } from '../logger';
import { retryTransient } from '../resilience';
import { type FactReadFrom, admitFacts, markSignalled, paymentFacts } from '../stores/payment-inbox';
import {
  PAYMENT_TASK_QUEUE,
  type PaymentWorkflowInput,
  type SlaBreach,
  paymentFactSignal,
  paymentWorkflow,
  paymentWorkflowId,
  slaBreachedSignal,
} from '../workflows/payment';
import { type PaymentCore, emptyCore, evaluate, receive, signalsFor } from '../workflows/payment-state';
import { MerchantIdAttr, PaymentStatusAttr, RegionAttr } from '../workflows/search-attributes';
import { type BatchHandler, type Producer, type TopicRecord, type TopicSet, produce } from './kafka';

// payment-router: Kafka payment facts → inbox (Postgres) → signalWithStart(PaymentWorkflow).
// Offsets are committed only after Temporal accepted every signal of the batch, so a crash
// re-delivers; the inbox drops facts Temporal already has, so duplicates cost no Temporal action.
// Only facts the workflow needs reach Temporal: the payment state machine, run over the facts handled
// so far, says which it does not (isInert: a `created`, a same-content re-report); those are recorded in
// the inbox as absorbed, unsignalled. A payment's workflow starts with its first fact that matters.

export const PAYMENT_ROUTER_GROUP = 'payment-router';

export interface RoutingPolicy {
  preconditionTimeoutMs: number;
  lifecycleSearchAttribute: boolean;
  taskQueue?: string;
}

/** The policy PAYMENT_PRECONDITION_TIMEOUT_MS and PAYMENT_LIFECYCLE_SEARCH_ATTRIBUTE configure. */
export function routingPolicy(config: Config): RoutingPolicy {
  return {
    preconditionTimeoutMs: config.PAYMENT_PRECONDITION_TIMEOUT_MS,
    lifecycleSearchAttribute: config.PAYMENT_LIFECYCLE_SEARCH_ATTRIBUTE,
  };
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
  await startPaymentRun(client, fact, hasHistory, policy, { fact });
}

/** What starts or wakes a payment's run: one of its facts, or (from the SLA sweep) a breach. */
export type PaymentWake = { fact: PaymentEvent } | { breach: SlaBreach };

/** signalWithStart of a payment's workflow (identified by one of its facts) with a fact or a breach. */
export async function startPaymentRun(
  client: Client,
  of: PaymentEvent,
  hasHistory: boolean,
  policy: RoutingPolicy,
  wake: PaymentWake,
): Promise<void> {
  const input: PaymentWorkflowInput = {
    paymentId: of.paymentId,
    merchantId: of.merchantId,
    region: of.region,
    hasHistory,
    preconditionTimeoutMs: policy.preconditionTimeoutMs,
    lifecycleSearchAttribute: policy.lifecycleSearchAttribute,
  };
  const options = {
    workflowId: paymentWorkflowId(of.paymentId),
    taskQueue: policy.taskQueue ?? PAYMENT_TASK_QUEUE,
    args: [input] as [PaymentWorkflowInput],
    // Set with the start: free. Later changes are upserts, and cost an action each.
    typedSearchAttributes: [
      { key: PaymentStatusAttr, value: 'OPEN' },
      { key: MerchantIdAttr, value: of.merchantId },
      { key: RegionAttr, value: of.region },
    ],
  };
  await ('fact' in wake
    ? client.workflow.signalWithStart(paymentWorkflow, {
        ...options,
        signal: paymentFactSignal,
        signalArgs: [wake.fact],
      })
    : client.workflow.signalWithStart(paymentWorkflow, {
        ...options,
        signal: slaBreachedSignal,
        signalArgs: [wake.breach],
      }));
}

export interface RouteOptions {
  /** Payments signalled concurrently (facts of one payment stay in order). */
  concurrency?: number;
  /** False once the partition went elsewhere: stop signalling, and stop waiting out an outage. */
  shouldContinue?: () => boolean;
  log?: Logger;
  /** Where each fact was read, parallel to the facts (the inbox keeps it for finance and trace). */
  readFrom?: readonly (FactReadFrom | undefined)[];
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
    () => admitFacts(pool, facts, options.readFrom),
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
  // What the router handled of these payments before: the state machine over it tells which new facts are inert.
  const known = await retryTransient(
    'postgres',
    'loading the facts handled before',
    () => paymentFacts(pool, [...byPayment.keys()], 'handled'),
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
        const absorbedKeys: string[] = [];
        const signal = async (fact: PaymentEvent): Promise<void> => {
          await retryTransient('temporal', 'signalWithStart', () => routeFact(client, fact, hasHistory, policy), retry);
          hasHistory = true;
          signalled += 1;
        };
        for (const fact of group) {
          const signals = signalsFor(core, fact);
          // Absorbed facts are marked with the group: a redelivery skips them too.
          if (signals.length === 0) absorbedKeys.push(fact.idempotencyKey);
          for (const s of signals) await signal(s);
        }
        absorbed += absorbedKeys.length;
        const absorbedSet = new Set(absorbedKeys);
        await retryTransient(
          'postgres',
          'marking facts handled',
          () =>
            markSignalled(
              pool,
              group.map((f) => f.idempotencyKey).filter((k) => !absorbedSet.has(k)),
              absorbedKeys,
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
    skippedDuplicates: admissions.filter((a) => !a.mustSignal).length,
    complete: next >= groups.length,
  };
}

/** The payment as the router has handled it so far (in the order the facts were received). */
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
    const readFrom: FactReadFrom[] = [];
    const refused: TopicRecord[] = [];
    for (const message of batch.messages) {
      const parsed = parsePaymentEvent(message.value);
      if (parsed.ok) {
        facts.push(parsed.value);
        const raw = readFromOf(message.headers);
        readFrom.push({ fact: { topic: batch.topic, partition: batch.partition, offset: message.offset }, raw });
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
      readFrom,
    });
    return result.complete ? 'commit' : 'redeliver'; // not all signalled: leave offsets for redelivery
  };
}

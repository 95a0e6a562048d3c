import type { Pool } from 'pg';
import { traceIdOf } from '../contracts/envelope';
import type { Logger } from '../logger';
import { postJournalEntry } from '../stores/ledger';
import { recordQuarantined } from '../stores/quarantine';
import type { BatchHandler } from '../streams/kafka';
import { CLAIM_CHECK_HEADER } from '../streams/publish';
import {
  type QuarantineItem,
  namedSuspenseId,
  quarantineItemOf,
  quarantineOpenKey,
  quarantineSuspenseLines,
} from './quarantine';

// The quarantine consumer: its own group on the quarantine topic. Each item is recorded in
// quality.quarantine and, when it carries money, held in a balanced suspense entry (posting key
// quarantine/<id>/open) so finance sees it. Both writes are idempotent, so the Kafka commit after them
// makes a redelivery harmless: the same message is the same item and the same posting key.

/** The raw record of a claim-checked event (its first record), read from the claim-check store. */
export type ReadClaimedRaw = (uri: string) => Promise<unknown>;

export interface QuarantineCounters {
  /** Items recorded for the first time. */
  recorded: number;
  /** Messages whose item was already recorded (redelivery, or the same event quarantined again). */
  alreadyRecorded: number;
  /** Suspense entries opened. */
  suspenseOpened: number;
}

/** Opens the item's suspense entry (if it holds money); answers its posting key, or null when none. */
export async function openQuarantineSuspense(pool: Pool, item: QuarantineItem): Promise<string | null> {
  const lines = quarantineSuspenseLines(item);
  if (lines.length === 0) return null;
  const key = quarantineOpenKey(item.quarantineId);
  const a = item.amount.status === 'parsed' ? item.amount : undefined;
  await postJournalEntry(pool, {
    postingKey: key,
    paymentId: item.paymentId ?? namedSuspenseId(item.quarantineId),
    merchantId: item.merchantId ?? 'unknown',
    factType: 'quarantine_suspense_open',
    // The posting key, as reconciliation's suspense does: the event's own key stays its fact's.
    idempotencyKey: key,
    traceId: item.traceId ?? traceIdOf(item.idempotencyKey),
    occurredAt:
      item.receivedAt !== null && !Number.isNaN(Date.parse(item.receivedAt))
        ? item.receivedAt
        : new Date().toISOString(),
    lines,
    actor: 'quarantine',
    memo: `quarantined ${item.source} ${item.eventType ?? 'event'} ${item.idempotencyKey}: ${a?.amountMinor} ${a?.currency} held (${item.reason.slice(0, 200)})`,
  });
  return key;
}

export interface QuarantineConsumerDeps {
  pool: Pool;
  readClaimedRaw: ReadClaimedRaw;
  log: Logger;
}

/** The batch handler (runConsumer on the quarantine topic) and its counters since start. */
export function quarantineBatches(deps: QuarantineConsumerDeps): {
  handle: BatchHandler;
  counters: QuarantineCounters;
} {
  const { pool, readClaimedRaw, log } = deps;
  const counters: QuarantineCounters = { recorded: 0, alreadyRecorded: 0, suspenseOpened: 0 };
  const handle: BatchHandler = async (batch) => {
    for (const message of batch.messages) {
      const uri = message.headers[CLAIM_CHECK_HEADER];
      // A claim-checked event's money is in S3: read it, or fail the batch (retried), never record it blind.
      const claimed = uri === undefined ? undefined : await readClaimedRaw(uri);
      const item = quarantineItemOf({ topic: batch.topic, partition: batch.partition }, message, claimed);
      const lines = quarantineSuspenseLines(item);
      const key = lines.length > 0 ? quarantineOpenKey(item.quarantineId) : null;
      // The suspense first, every time (idempotent): a recorded item that holds money always has its entry,
      // and a crash between the two is healed by the redelivery.
      if (key !== null) await openQuarantineSuspense(pool, item);
      const recorded = await recordQuarantined(pool, item, key);
      if (recorded) {
        counters.recorded += 1;
        if (key !== null) counters.suspenseOpened += 1;
        log.info('quarantined item recorded', {
          quarantineId: item.quarantineId,
          idempotencyKey: item.idempotencyKey,
          source: item.source,
          amount: item.amount.status,
          suspense: key ?? 'none',
        });
      } else counters.alreadyRecorded += 1;
    }
    return 'commit';
  };
  return { handle, counters };
}

import type { Pool } from 'pg';
import { traceIdOf } from '../contracts/envelope';
import { type Logger, errorMessage } from '../logger';
import { ClaimCheckUnreadable } from '../stores/claim-checks';
import { PostingConflictError, postJournalEntry } from '../stores/ledger';
import { recordQuarantined } from '../stores/quarantine';
import type { BatchHandler } from '../streams/kafka';
import { CLAIM_CHECK_HEADER } from '../streams/publish';
import {
  type QuarantineItem,
  keepable,
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
  /** Claim checks that can never be read (recorded, money unknown): each one an error in the log. */
  claimChecksUnreadable: number;
  /** Items Postgres refused as they were, recorded with their identity, reason, money and record only. */
  recordedBare: number;
}

/** A Postgres error about the data itself (SQLSTATE class 22, 23 or 54), not about reaching it. */
function refusedData(err: unknown): boolean {
  if (err instanceof PostingConflictError) return true;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^(22|23|54)/.test(code);
}

/** The item with only what the ledger and the quarantine table always accept beside its identity and money. */
function bareItem(item: QuarantineItem, refusal: string): QuarantineItem {
  return {
    ...item,
    idempotencyKey: /^[\x21-\x7e]{1,256}$/.test(item.idempotencyKey)
      ? item.idempotencyKey
      : `bare:${item.quarantineId}`,
    source: /^[a-z0-9-]{1,32}$/.test(item.source) ? item.source : 'unknown',
    schema: null,
    reason: keepable(`${item.reason.slice(0, 500)}; recorded bare: ${refusal}`, 1000),
    merchantId: null,
    eventType: item.eventType !== null && /^[A-Za-z_.]{1,64}$/.test(item.eventType) ? item.eventType : null,
    receivedAt: null,
    traceId: null,
    key: null,
    headers: {},
  };
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
    occurredAt: item.receivedAt ?? new Date().toISOString(), // quarantineItemOf keeps only times Postgres takes
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
  const counters: QuarantineCounters = {
    recorded: 0,
    alreadyRecorded: 0,
    suspenseOpened: 0,
    claimChecksUnreadable: 0,
    recordedBare: 0,
  };
  /** Opens the suspense (idempotent), then records the item; answers whether it was new. */
  const keep = async (item: QuarantineItem): Promise<boolean> => {
    const key = quarantineSuspenseLines(item).length > 0 ? quarantineOpenKey(item.quarantineId) : null;
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
    return recorded;
  };
  const handle: BatchHandler = async (batch) => {
    const read = { topic: batch.topic, partition: batch.partition };
    for (const message of batch.messages) {
      const uri = message.headers[CLAIM_CHECK_HEADER];
      // A claim-checked event's money is in S3: read it, or fail the batch (retried), never record it blind.
      // Only a claim check that can never be read (no such object, not one we wrote) is recorded without it.
      let claimed: unknown;
      let unreadable: string | undefined;
      if (uri !== undefined) {
        try {
          claimed = await readClaimedRaw(uri);
        } catch (err) {
          if (!(err instanceof ClaimCheckUnreadable)) throw err;
          unreadable = err.message;
          counters.claimChecksUnreadable += 1;
          log.error('claim check unreadable: item recorded, its money unknown', {
            ...read,
            offset: message.offset,
            error: err.message,
          });
        }
      }
      const item = quarantineItemOf(read, message, claimed, unreadable);
      try {
        await keep(item);
      } catch (err) {
        // Postgres refused this item's data (a value no check foresaw): retrying refuses it for ever, and
        // would stall the partition. Keep its identity, reason, money and record; drop what else it said.
        if (!refusedData(err)) throw err;
        counters.recordedBare += 1;
        log.error('quarantined item refused by Postgres: recorded bare', {
          ...read,
          offset: message.offset,
          quarantineId: item.quarantineId,
          error: errorMessage(err),
        });
        await keep(bareItem(item, errorMessage(err)));
      }
    }
    return 'commit';
  };
  return { handle, counters };
}

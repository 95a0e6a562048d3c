import type { Client } from '@temporalio/client';
import type { Pool } from 'pg';
import { HEADERS } from '../contracts/envelope';
import { PaymentEvent } from '../contracts/payment-event';
import { describeIssues } from '../contracts/issues';
import { factKey, postingKey } from '../ledger/posting-rules';
import type { Logger } from '../logger';
import { reverseEntry } from '../stores/ledger';
import { type QuarantinedRecord, readQuarantined, recordReleaseStep } from '../stores/quarantine';
import type { RestoredRecord } from '../streams/archiver/layout';
import { type RoutingPolicy, routeFacts } from '../streams/payment-router';
import { replayRecord } from '../streams/replay/replay-record';
import type { ReplaySource } from '../workflows/backfill';
import { scanValue } from './pii-scanner';
import { openQuarantineSuspense } from './quarantine-consumer';
import { QUARANTINE_ID_PATTERN, quarantineCloseKey } from './quarantine';

// `npm run quality -- release <id>`: a quarantined item, after its fix, through the normal path. The record
// (or an operator's correction of it) is mapped by the edge's own mapping, as backfill maps an archived
// record (replayRecord), and routed by the router's routeFacts: the inbox dedups by idempotency key, so a
// fact that already came through is not signalled again, and the workflow posts it under its usual key.
// The suspense entry is closed (its exact reverse, quarantine/<id>/close) only once that posting is in the
// ledger, so the money is never out of both. Every step is insert-only and idempotent: a repeated release
// answers what was done and changes nothing.

/** The input is not a releasable item (bad id, unknown id, a correction that is not usable). */
export class QuarantineReleaseError extends Error {
  override name = 'QuarantineReleaseError';
}

/** The record still fails the contract: nothing was routed or posted. */
export class QuarantineStillFailing extends Error {
  override name = 'QuarantineStillFailing';
  constructor(
    readonly quarantineId: string,
    readonly input: string,
    readonly reason: string,
  ) {
    super(`${quarantineId} (${input}) still fails: ${reason}; nothing was released`);
  }
}

export type ReleaseOutcome =
  /** Routed and its suspense (if any) closed now. */
  | 'released'
  /** Released before: nothing done. */
  | 'already-released'
  /** Routed; its posting is not in the ledger yet, so its suspense stays open (run release again). */
  | 'routed';

export interface ReleaseResult {
  quarantineId: string;
  outcome: ReleaseOutcome;
  factIdempotencyKey: string;
  factPostingKey: string | null;
  /** Whether routing signalled the workflow (false: the inbox had the fact already). */
  signalled: boolean;
  suspense: 'closed' | 'open' | 'none';
}

export interface ReleaseDeps {
  pool: Pool;
  client: Client;
  policy: RoutingPolicy;
  /** The facts topic: a fact a consumer refused there is a fact, not a raw record to map. */
  factsTopic: string;
  readClaimedRaw: (uri: string) => Promise<unknown>;
  log: Logger;
}

export interface ReleaseRequest {
  quarantineId: string;
  actor: string;
  /** The corrected record (JSON text, tokenized), kept with the release; default: the record as quarantined. */
  correction?: string;
  /** How long to wait for the fact's posting before leaving the suspense open (default 60 s). */
  waitMs?: number;
}

const REPLAY_SOURCE: Record<string, ReplaySource> = {
  webhook: 'webhooks',
  gateway: 'gateways',
  partner: 'partner',
  cdc: 'cdc',
};

/** Fact types that post money: the suspense waits for their entry. */
const POSTS_MONEY = new Set([
  'captured',
  'settled',
  'refunded',
  'chargeback_opened',
  'chargeback_won',
  'chargeback_lost',
]);

/** The item's record mapped by the live mapping now: its fact, or why not. */
export async function remapQuarantined(
  item: QuarantinedRecord,
  deps: Pick<ReleaseDeps, 'factsTopic' | 'readClaimedRaw'>,
  correction?: string,
): Promise<{ ok: true; fact: PaymentEvent } | { ok: false; reason: string }> {
  let value: string | null = correction ?? item.value;
  if (value === null && item.claimCheck !== null) value = JSON.stringify(await deps.readClaimedRaw(item.claimCheck));
  if (value === null) return { ok: false, reason: 'the quarantined record has no value' };
  if (item.headers[HEADERS.sourceTopic] === deps.factsTopic) {
    // Refused by a consumer after the edge: the value is a fact already.
    let json: unknown;
    try {
      json = JSON.parse(value);
    } catch (err) {
      return { ok: false, reason: `not JSON: ${(err as Error).message}` };
    }
    const fact = PaymentEvent.safeParse(json);
    return fact.success ? { ok: true, fact: fact.data } : { ok: false, reason: describeIssues(fact.error) };
  }
  const source = REPLAY_SOURCE[item.source];
  if (source === undefined) return { ok: false, reason: `source "${item.source}" has no edge mapping` };
  const record: RestoredRecord = {
    offset: item.read.offset,
    timestamp: String(Date.now()),
    key: item.key === null ? null : Buffer.from(item.key),
    value: Buffer.from(value),
    headers: Object.entries(item.headers).map(([n, v]) => [n, Buffer.from(v)]),
  };
  const replayed = replayRecord(source, record);
  if (replayed.kind === 'fact') return { ok: true, fact: replayed.fact };
  return { ok: false, reason: replayed.kind === 'skip' ? `maps to no fact: ${replayed.reason}` : replayed.reason };
}

async function postingExists(pool: Pool, key: string): Promise<boolean> {
  const r = await pool.query('select 1 from ledger.journal_entries where posting_key = $1', [key]);
  return (r.rowCount ?? 0) > 0;
}

/** Posts the exact reverse of the open entry under quarantine/<id>/close (idempotent). */
async function closeSuspense(pool: Pool, item: QuarantinedRecord, detail: string): Promise<void> {
  const openKey = item.suspensePostingKey!;
  const closed = await reverseEntry(pool, {
    postingKey: openKey,
    reversalKey: quarantineCloseKey(item.quarantineId),
    factType: 'quarantine_suspense_close',
    occurredAt: new Date().toISOString(),
    actor: 'quarantine',
    memo: `released ${item.quarantineId}: ${detail}`,
  });
  if (!closed) throw new Error(`${item.quarantineId}: suspense entry ${openKey} is not in the ledger`);
}

/** Releases one quarantined item (see the module comment); throws QuarantineReleaseError / QuarantineStillFailing. */
export async function releaseQuarantined(deps: ReleaseDeps, request: ReleaseRequest): Promise<ReleaseResult> {
  const { pool, log } = deps;
  const id = request.quarantineId;
  if (!QUARANTINE_ID_PATTERN.test(id)) {
    throw new QuarantineReleaseError(
      `"${id}" is not a quarantine id (q + 24 letters a–p, as \`quality -- quarantined\` lists them)`,
    );
  }
  const item = await readQuarantined(pool, id);
  if (!item) throw new QuarantineReleaseError(`no quarantined item ${id} (\`quality -- quarantined\` lists them)`);
  const input = request.correction !== undefined ? `correction of ${item.idempotencyKey}` : item.idempotencyKey;
  const routed = item.releases.find((r) => r.step === 'routed');
  if (item.state === 'released') {
    return {
      quarantineId: id,
      outcome: 'already-released',
      factIdempotencyKey: routed?.factIdempotencyKey ?? item.idempotencyKey,
      factPostingKey: routed?.factPostingKey ?? null,
      signalled: false,
      suspense: item.suspensePostingKey === null ? 'none' : 'closed',
    };
  }
  let fact: PaymentEvent;
  let signalled = false;
  if (routed === undefined) {
    if (request.correction !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(request.correction);
      } catch (err) {
        throw new QuarantineReleaseError(`the correction of ${id} is not JSON: ${(err as Error).message}`);
      }
      // Corrections are kept in the audit trail: only tokenized records, as everything past the edge.
      const pii = scanValue(parsed);
      if (pii.length > 0) {
        throw new QuarantineReleaseError(
          `the correction of ${id} holds raw ${[...new Set(pii.map((p) => p.kind))].join(', ')}: edit the quarantined (tokenized) record instead`,
        );
      }
    }
    const mapped = await remapQuarantined(item, deps, request.correction);
    if (!mapped.ok) throw new QuarantineStillFailing(id, input, mapped.reason);
    fact = mapped.fact;
    const result = await routeFacts(deps.client, pool, [fact], deps.policy, { log });
    signalled = result.signalled > 0;
    await recordReleaseStep(pool, id, {
      step: 'routed',
      actor: request.actor,
      factIdempotencyKey: fact.idempotencyKey,
      factPostingKey: POSTS_MONEY.has(fact.type) ? postingKey(fact.paymentId, factKey(fact)) : null,
      correction: request.correction ?? null,
      detail:
        result.skippedDuplicates > 0 ? 'the inbox had this fact already: not signalled again' : `${fact.type} routed`,
    });
    log.info('quarantined item routed', { quarantineId: id, idempotencyKey: fact.idempotencyKey, signalled });
  }
  const again = (await readQuarantined(pool, id))!;
  const step = again.releases.find((r) => r.step === 'routed')!;
  const base = {
    quarantineId: id,
    factIdempotencyKey: step.factIdempotencyKey,
    factPostingKey: step.factPostingKey,
    signalled,
  };
  if (again.suspensePostingKey === null) return { ...base, outcome: 'released', suspense: 'none' };
  // A crash between recording the item and opening its suspense: open it now, so the close has a match.
  await openQuarantineSuspense(pool, again);
  if (step.factPostingKey !== null) {
    const deadline = Date.now() + (request.waitMs ?? 60_000);
    while (!(await postingExists(pool, step.factPostingKey))) {
      if (Date.now() >= deadline) return { ...base, outcome: 'routed', suspense: 'open' };
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const detail = step.factPostingKey
    ? `posted as ${step.factPostingKey}`
    : `its fact ${step.factIdempotencyKey} posts no money`;
  await closeSuspense(pool, again, detail);
  await recordReleaseStep(pool, id, {
    step: 'suspense_closed',
    actor: request.actor,
    factIdempotencyKey: step.factIdempotencyKey,
    factPostingKey: step.factPostingKey,
    correction: null,
    detail,
  });
  log.info('quarantine suspense closed', { quarantineId: id, detail });
  return { ...base, outcome: 'released', suspense: 'closed' };
}

import { setTimeout as sleep } from 'node:timers/promises';
import { ApplicationFailure } from '@temporalio/common';
import { edgeEnvelope, partnerIdempotencyKey } from '../../contracts/envelope';
import { type PartnerApiConfig, PartnerSettlementPage, partnerSettlementToFact } from '../../contracts/partner-api';
import type { Tokenizer, VaultEntry } from '../tokenize';
import { type Logger, errorMessage } from '../../logger';
import { CURRENT_SCHEMAS } from '../../quality/schema-registry';
import type { Vault } from '../../stores/vault';
import { type TopicSet, edgeTopicsOf } from '../../streams/kafka';
import type { Publisher, SourceEvent } from '../../streams/publish';
import { describeIssues } from '../../contracts/issues';

// One page of a partner's settlement API per activity: fetch → validate → tokenize → vault →
// Kafka (acks=all) → report the next cursor. The workflow moves its cursor only from this result,
// so a page whose result was lost (worker killed) is fetched and produced again with the same keys.

export interface PartnerPageRequest {
  partnerId: string;
  /** Opaque; '' = the start of the feed. */
  cursor: string;
  limit: number;
}

export interface PartnerPageResult {
  nextCursor: string;
  received: number;
  quarantined: number;
  hasMore: boolean;
}

export interface PartnerPollActivities {
  pollPartnerPage(request: PartnerPageRequest): Promise<PartnerPageResult>;
}

export interface PartnerPollDeps {
  partners: PartnerApiConfig[];
  /** The edge's publish step: one transaction per page, poison records quarantined with a claim check. */
  publisher: Pick<Publisher, 'publish'>;
  topics: TopicSet;
  tokenizer: Tokenizer;
  vault: Vault;
  log: Logger;
  /** Crash tests only (0 = off): hold each page after it was produced, before reporting it. */
  faultPageDelayMs?: number;
}

/** A page's transaction may take this long before the attempt fails (a commit in flight is waited out). */
const PUBLISH_TIMEOUT_MS = 30_000;

/** One HTTP request may take this long before it counts as a failure (retried). */
const REQUEST_TIMEOUT_MS = 20_000;

/** Retry-After in seconds or as an HTTP date; at least 1 s, as partners expect. */
export function retryAfterMs(header: string | null, now = Date.now()): number {
  if (header === null || header.trim() === '') return 1000;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(1000, Math.ceil(seconds * 1000));
  const at = Date.parse(header);
  return Number.isNaN(at) ? 1000 : Math.max(1000, at - now);
}

export function createPartnerPollActivities(deps: PartnerPollDeps): PartnerPollActivities {
  const partners = new Map(deps.partners.map((p) => [p.id, p]));
  const envelope = edgeEnvelope('partner', edgeTopicsOf(deps.topics, 'rawPartnerApi'), {
    raw: CURRENT_SCHEMAS['partner-settlement'],
    fact: CURRENT_SCHEMAS['payment-fact'],
  });

  const fetchPage = async (
    partner: PartnerApiConfig,
    cursor: string,
    limit: number,
  ): Promise<PartnerSettlementPage> => {
    const url = new URL('/v1/settlements', partner.url);
    url.searchParams.set('cursor', cursor);
    url.searchParams.set('limit', String(limit));
    const at = `partner ${partner.id} GET ${url.pathname} (cursor "${cursor}")`;
    let res: Response;
    try {
      res = await fetch(url, {
        headers: { authorization: `Bearer ${partner.token}`, accept: 'application/json' },
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      throw ApplicationFailure.retryable(`${at}: ${errorMessage(err)}`, 'PartnerUnavailable');
    }
    const text = await res.text();
    if (res.status === 429) {
      const delayMs = retryAfterMs(res.headers.get('retry-after'));
      // Retry exactly when the partner allows, not on the retry policy's backoff.
      throw ApplicationFailure.create({
        type: 'PartnerRateLimited',
        message: `${at}: 429, Retry-After ${res.headers.get('retry-after') ?? '(none)'}`,
        nextRetryDelay: delayMs,
      });
    }
    if (res.status >= 500)
      throw ApplicationFailure.retryable(`${at}: ${res.status} ${text.slice(0, 200)}`, 'PartnerUnavailable');
    // 4xx other than 429 (bad token, bad cursor) retries on backoff too: ops fix the config, nothing is skipped.
    if (res.status !== 200)
      throw ApplicationFailure.retryable(`${at}: ${res.status} ${text.slice(0, 200)}`, 'PartnerRejected');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw ApplicationFailure.retryable(`${at}: malformed JSON page: ${errorMessage(err)}`, 'PartnerPageInvalid');
    }
    const page = PartnerSettlementPage.safeParse(json);
    if (!page.success) {
      const why = describeIssues(page.error, { root: '(page)' });
      throw ApplicationFailure.retryable(`${at}: invalid page: ${why}`, 'PartnerPageInvalid');
    }
    return page.data;
  };

  return {
    async pollPartnerPage({ partnerId, cursor, limit }) {
      const partner = partners.get(partnerId);
      if (!partner) {
        throw ApplicationFailure.retryable(
          `partner "${partnerId}" is not in this worker's PARTNER_APIS`,
          'PartnerUnknown',
        );
      }
      const page = await fetchPage(partner, cursor, limit);
      const receivedAt = new Date().toISOString();
      const events: SourceEvent[] = [];
      const mappedOk: boolean[] = [];
      const vaultEntries: VaultEntry[] = [];
      // The partner's cursor is opaque to us: tokenize it like any other text before it joins a key.
      const tokenizedId = (id: string, into: VaultEntry[]): string => {
        const t = deps.tokenizer.tokenize(id);
        into.push(...t.vault);
        return t.payload as string;
      };
      for (const [i, record] of page.data.entries()) {
        // Tokenize before anything leaves: the fact is mapped from the tokenized record.
        const tokenized = deps.tokenizer.tokenize(record);
        vaultEntries.push(...tokenized.vault);
        const mapped = partnerSettlementToFact(partner.id, partner.region, tokenized.payload);
        // Keys and headers come from the tokenized record only: a raw id could carry a card number.
        const r = (tokenized.payload ?? {}) as { id?: unknown; payment_reference?: unknown; region?: unknown };
        // A record without a usable id is still keyed deterministically: the same page re-run gives the same key.
        const recordId =
          typeof r.id === 'string' && r.id !== '' ? r.id : tokenizedId(`${cursor || 'start'}#${i}`, vaultEntries);
        mappedOk.push(mapped.ok);
        const unmapped = {
          region: typeof r.region === 'string' ? r.region : partner.region,
          key: typeof r.payment_reference === 'string' ? r.payment_reference : null,
          idempotencyKey: partnerIdempotencyKey(partner.id, recordId),
        };
        events.push({ records: envelope(receivedAt, tokenized.payload, mapped, unmapped) });
      }
      // Originals first, so every token on Kafka resolves in the vault.
      await deps.vault.store(vaultEntries);
      // A record too large to produce is quarantined with a claim check instead of failing the page forever;
      // one whose claim check could not be stored fails this attempt (retried; the page is produced again).
      const outcomes = await deps.publisher.publish(events, { timeoutMs: PUBLISH_TIMEOUT_MS });
      const deferred = outcomes.find((o) => o.kind === 'deferred');
      if (deferred) {
        throw ApplicationFailure.retryable(
          `${partner.id}: a record could be neither produced nor claim-checked: ${deferred.error}`,
          'PartnerPageDeferred',
        );
      }
      const facts = outcomes.filter((o, i) => o.kind === 'published' && mappedOk[i]).length;
      const quarantined = page.data.length - facts;
      deps.log.info('partner page produced', {
        partner: partner.id,
        records: page.data.length,
        quarantined,
        hasMore: page.has_more,
      });
      if ((deps.faultPageDelayMs ?? 0) > 0) await sleep(deps.faultPageDelayMs); // produced, not yet reported: where a kill -9 repeats a page
      return { nextCursor: page.next_cursor, received: page.data.length, quarantined, hasMore: page.has_more };
    },
  };
}

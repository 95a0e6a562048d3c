import { z } from 'zod';
import { edgeEnvelope, unmappedGatewayIdempotencyKey } from '../../contracts/envelope';
import {
  GatewayFeedPage,
  type GatewayIdentity,
  PaymentReference,
  gatewayEventToFact,
} from '../../contracts/gateway-event';
import { type Logger, errorMessage } from '../../logger';
import { CURRENT_SCHEMAS } from '../../quality/schema-registry';
import type { Vault, VaultEntry } from '../../stores/vault';
import { type TopicSet, edgeTopicsOf, topicsFor } from '../../streams/kafka';
import type { Publisher, SourceEvent } from '../../streams/publish';
import { type Tokenizer, tokenizerFromConfig } from '../tokenize';
import { readGatewayCursor, writeGatewayCursor } from './gateway-cursor';
import { describeIssues } from '../../contracts/issues';
import { type Config, parseJsonSetting } from '../../config';

// Regional gateway connector: one independent loop per region pulls its gateway's sequenced feed,
// tokenizes, produces raw event + fact (acks=all), and only then moves its cursor. A region that is
// down or cut off only stalls its own loop (availability for ingest, per region); its events arrive
// late, and a re-send after a crash carries the same idempotency keys, which downstream dedups.

export const GatewayFeedConfig = z.object({
  region: z.string().min(1).max(40),
  gateway: z.string().regex(/^[a-z0-9-]{1,60}$/, 'gateway: lower-case id such as gw-eu-west'),
  url: z.url(),
});
export type GatewayFeedConfig = z.infer<typeof GatewayFeedConfig>;

export function parseGatewayFeeds(json: string): GatewayFeedConfig[] {
  const feeds = parseJsonSetting('GATEWAY_FEEDS', json, z.array(GatewayFeedConfig).min(1));
  const gateways = feeds.map((f) => f.gateway);
  const twice = gateways.find((g, i) => gateways.indexOf(g) !== i);
  if (twice) throw new Error(`GATEWAY_FEEDS: gateway ${twice} is listed twice (one cursor per gateway)`);
  return feeds;
}

/** A page's transaction may take this long before the page is retried (a commit in flight is waited out). */
const PUBLISH_TIMEOUT_MS = 30_000;

export interface GatewayConnectorDeps {
  feeds: GatewayFeedConfig[];
  /** The edge's publish step: one transaction per page, poison events quarantined with a claim check. */
  publisher: Pick<Publisher, 'publish'>;
  topics: TopicSet;
  tokenizer: Tokenizer;
  vault: Pick<Vault, 'store'>;
  log: Logger;
  /** Directory of the cursor files, one per gateway. */
  stateDir: string;
  pollIntervalMs: number;
  requestTimeoutMs: number;
  maxBackoffMs: number;
  pageLimit: number;
}

/** ok = the last poll succeeded; unreachable = the feed did not answer; failing = vault/Kafka/cursor write failed. */
export type RegionState = 'starting' | 'ok' | 'unreachable' | 'failing';

export interface RegionStatus {
  region: string;
  gateway: string;
  state: RegionState;
  /** Feed seq up to which everything is acknowledged by Kafka and the cursor file says so. */
  cursor: number | null;
  lastSuccessAt: string | null;
  consecutiveFailures: number;
  lastError: string | null;
  /** Since start: polls finished (answered or failed), events read, facts produced, events quarantined. */
  polls: number;
  events: number;
  facts: number;
  quarantined: number;
}

export interface GatewayConnector {
  /** Starts every region's loop; returns at once (a region being down does not delay the others). */
  start(): void;
  /** Stops polling and waits for in-flight pages to finish (or fail). */
  stop(): Promise<void>;
  status(): RegionStatus[];
}

/**
 * The connector as its process builds it: topics, tokenizer and polling from `config`; the clients and the
 * cursor directory from the caller (tests pass a config with shorter polling).
 */
export function gatewayConnectorFromConfig(
  config: Config,
  deps: Pick<GatewayConnectorDeps, 'feeds' | 'publisher' | 'vault' | 'log' | 'stateDir'>,
): GatewayConnector {
  return createGatewayConnector({
    ...deps,
    topics: topicsFor(config),
    tokenizer: tokenizerFromConfig(config),
    pollIntervalMs: config.GATEWAY_POLL_INTERVAL_MS,
    requestTimeoutMs: config.GATEWAY_REQUEST_TIMEOUT_MS,
    maxBackoffMs: config.GATEWAY_MAX_BACKOFF_MS,
    pageLimit: config.GATEWAY_PAGE_LIMIT,
  });
}

class FeedError extends Error {
  override name = 'FeedError';
}

export function createGatewayConnector(deps: GatewayConnectorDeps): GatewayConnector {
  const envelope = edgeEnvelope('gateway', edgeTopicsOf(deps.topics, 'rawGateways'), {
    raw: CURRENT_SCHEMAS['gateway-event'],
    fact: CURRENT_SCHEMAS['payment-fact'],
  });
  const abort = new AbortController();
  const statuses = new Map<string, RegionStatus>(
    deps.feeds.map((f) => [
      f.gateway,
      {
        region: f.region,
        gateway: f.gateway,
        state: 'starting',
        cursor: null,
        lastSuccessAt: null,
        consecutiveFailures: 0,
        lastError: null,
        polls: 0,
        events: 0,
        facts: 0,
        quarantined: 0,
      },
    ]),
  );
  let loops: Promise<void>[] = [];

  const setState = (st: RegionStatus, state: RegionState, error?: string): void => {
    const changed = st.state !== state;
    st.state = state;
    if (state === 'ok') {
      if (changed) deps.log.info('gateway region status', { ...st, recoveredAfterFailures: st.consecutiveFailures });
      st.consecutiveFailures = 0;
      st.lastError = null;
      st.lastSuccessAt = new Date().toISOString();
      return;
    }
    st.consecutiveFailures += 1;
    st.lastError = error ?? null;
    if (changed) deps.log.warn('gateway region status', { ...st });
    else deps.log.debug('gateway region still failing', { gateway: st.gateway, failures: st.consecutiveFailures });
  };

  const fetchPage = async (feed: GatewayFeedConfig, after: number): Promise<GatewayFeedPage> => {
    const url = new URL('/v1/events', feed.url);
    url.searchParams.set('after', String(after));
    url.searchParams.set('limit', String(deps.pageLimit));
    // Own controller and timer, plus a race as a backstop: Node's AbortSignal.timeout holds its signal
    // weakly and undici's request signal can lose its parent after GC (nodejs/node#55428), which left a
    // black-holed request hanging forever instead of failing.
    const controller = new AbortController();
    const onStop = (): void => controller.abort();
    abort.signal.addEventListener('abort', onStop);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new Error(`no answer within ${deps.requestTimeoutMs} ms (request timeout)`));
      }, deps.requestTimeoutMs);
    });
    let res: Response;
    let text: string;
    try {
      [res, text] = await Promise.race([
        fetch(url, { signal: controller.signal }).then(async (r) => [r, await r.text()] as const),
        deadline,
      ]);
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause;
      throw new FeedError(
        `${feed.gateway} ${url.href}: ${errorMessage(err)}${cause ? ` (${errorMessage(cause)})` : ''}`,
      );
    } finally {
      clearTimeout(timer);
      abort.signal.removeEventListener('abort', onStop);
    }
    if (res.status !== 200)
      throw new FeedError(`${feed.gateway} ${url.href}: HTTP ${res.status} ${text.slice(0, 200)}`);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new FeedError(`${feed.gateway} ${url.href}: page is not JSON: ${errorMessage(err)}`);
    }
    const page = GatewayFeedPage.safeParse(json);
    if (!page.success) {
      const why = describeIssues(page.error);
      throw new FeedError(`${feed.gateway} ${url.href}: malformed page: ${why}`);
    }
    if (page.data.nextAfter < after) {
      throw new FeedError(`${feed.gateway}: feed went back from ${after} to ${page.data.nextAfter}; cursor kept`);
    }
    return page.data;
  };

  /**
   * Tokenize → vault → one Kafka transaction for the page. An event that cannot be produced (too large
   * once tokenized, refused by the broker) is quarantined with a claim check instead of stalling the page;
   * one whose claim check could not be stored fails the page, which is read again (cursor kept).
   */
  const deliver = async (
    feed: GatewayFeedConfig,
    after: number,
    events: unknown[],
  ): Promise<{ facts: number; quarantined: number }> => {
    const gw: GatewayIdentity = { gateway: feed.gateway, region: feed.region };
    const receivedAt = new Date().toISOString();
    const sourceEvents: SourceEvent[] = [];
    const mapped: boolean[] = [];
    const vaultEntries = new Map<string, VaultEntry>();
    events.forEach((event, i) => {
      // Tokenized before anything else: the fact is mapped from what may travel, never from the original.
      const tokenized = deps.tokenizer.tokenize(event);
      for (const e of tokenized.vault) vaultEntries.set(e.token, e);
      const fact = gatewayEventToFact(gw, tokenized.payload);
      mapped.push(fact.ok);
      const eventId = (tokenized.payload as { eventId?: unknown } | null)?.eventId;
      const unmapped = {
        region: feed.region,
        key: paymentReferenceOf(tokenized.payload),
        idempotencyKey: unmappedGatewayIdempotencyKey(feed.gateway, eventId, after + i + 1),
      };
      sourceEvents.push({ records: envelope(receivedAt, tokenized.payload, fact, unmapped) });
    });
    // Vault first: a token on Kafka must always be resolvable (the vault sorts, so regions lock rows in one order).
    await deps.vault.store([...vaultEntries.values()]);
    const outcomes = await deps.publisher.publish(sourceEvents, { timeoutMs: PUBLISH_TIMEOUT_MS });
    const deferred = outcomes.filter((o) => o.kind === 'deferred');
    if (deferred.length > 0) {
      const first = deferred[0] as { error: string };
      throw new Error(
        `${deferred.length} event(s) after ${after} could be neither produced nor claim-checked: ${first.error}`,
      );
    }
    outcomes.forEach((o) => {
      if (o.kind === 'quarantined')
        deps.log.warn('gateway event quarantined with a claim check', {
          gateway: feed.gateway,
          after,
          reason: o.reason,
          claimCheck: o.claimCheck,
        });
    });
    const facts = outcomes.filter((o, i) => o.kind === 'published' && mapped[i]).length;
    return { facts, quarantined: events.length - facts };
  };

  const pollOnce = async (feed: GatewayFeedConfig, st: RegionStatus): Promise<boolean> => {
    const after = st.cursor ?? (st.cursor = await readGatewayCursor(deps.stateDir, feed.gateway));
    const page = await fetchPage(feed, after);
    if (page.events.length > 0 || page.nextAfter !== after) {
      const done = await deliver(feed, after, page.events);
      // Only after Kafka acknowledged: a crash before this line re-sends the same idempotency keys.
      await writeGatewayCursor(deps.stateDir, {
        gateway: feed.gateway,
        region: feed.region,
        after: page.nextAfter,
        updatedAt: new Date().toISOString(),
      });
      st.events += page.events.length;
      st.facts += done.facts;
      st.quarantined += done.quarantined;
      if (done.quarantined > 0) {
        deps.log.warn('gateway events quarantined', { gateway: feed.gateway, count: done.quarantined, after });
      }
    }
    st.cursor = page.nextAfter;
    return page.hasMore;
  };

  const runRegion = async (feed: GatewayFeedConfig): Promise<void> => {
    const st = statuses.get(feed.gateway)!;
    while (!abort.signal.aborted) {
      let more = false;
      try {
        more = await pollOnce(feed, st);
        st.polls += 1;
        setState(st, 'ok');
      } catch (err) {
        if (abort.signal.aborted) break;
        st.polls += 1;
        setState(st, err instanceof FeedError ? 'unreachable' : 'failing', errorMessage(err));
      }
      if (more) continue;
      const wait =
        st.consecutiveFailures === 0
          ? deps.pollIntervalMs
          : Math.min(deps.maxBackoffMs, deps.pollIntervalMs * 2 ** Math.min(st.consecutiveFailures - 1, 20));
      await sleep(wait, abort.signal);
    }
  };

  return {
    start() {
      if (loops.length > 0) return;
      // Each loop catches its own errors: one region can never reject (and so stop) another.
      loops = deps.feeds.map((feed) => runRegion(feed));
    },
    async stop() {
      abort.abort();
      await Promise.all(loops);
    },
    status: () => [...statuses.values()].map((s) => ({ ...s })),
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

/** The payment id of an event that failed its contract, when it has a usable one (keeps it findable). */
function paymentReferenceOf(event: unknown): string | null {
  const ref = PaymentReference.safeParse((event as { paymentReference?: unknown } | null)?.paymentReference);
  return ref.success ? ref.data : null;
}

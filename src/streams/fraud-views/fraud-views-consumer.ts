import type { Pool } from 'pg';
import { HEADERS, isUnmappedGatewayKey } from '../../contracts/envelope';
import { type Logger, errorMessage } from '../../logger';
import {
  type PartitionProgress,
  type RiskRules,
  flushToRiskStore,
  markAlertsPublished,
  readPartitionStates,
  unpublishedAlerts,
} from '../../stores/risk';
import type { BatchHandler, ConsumedMessage, Producer, TopicSet } from '../kafka';
import { type Observation, Watermarks, freshnessBucket, isLate } from './windows';

// The fraud-views consumer: its own group on the raw gateway topic (authorization attempts, tokenized)
// and the payment facts (captures, refunds, chargebacks for the month-to-date ratios). Batches only
// parse and queue; about once per FRAUD_VIEWS_FLUSH_MS the queue is aggregated and written to the risk
// store in one transaction with the partitions' next offsets, and only then are the Kafka offsets
// committed. While the store is cut off the queue grows (up to FRAUD_VIEWS_MAX_PENDING, then reading
// waits); nothing is lost and nothing counts twice when it heals.

export interface FraudViewsSettings {
  flushMs: number;
  graceMs: number;
  maxPending: number;
  rules: RiskRules;
}

export interface FraudViewsDeps {
  pool: Pool;
  topics: TopicSet;
  group: string;
  log: Logger;
  settings: FraudViewsSettings;
  /** Commits a partition's offset in Kafka after its flush (the group's commitOffset). */
  commitOffset(topic: string, partition: number, nextOffset: string): Promise<void>;
  /** Publishes alerts to the alerts topic; undefined = alerts stay in the store only (tests of the store). */
  producer?: Producer;
  /** Called after each flush that reached the store, with the partitions it covered (the benchmark's clock). */
  onFlushed?: (partitions: readonly PartitionProgress[]) => void;
}

export interface FraudViewsCounters {
  read: number;
  /** Messages that are not attempts or ratio facts (creations, settlements …) or do not parse. */
  ignored: number;
  unusable: number;
  counted: number;
  alreadyCounted: number;
  duplicates: number;
  late: number;
  alertsRaised: number;
  flushes: number;
  failedFlushes: number;
}

export interface FraudViews {
  /** The batch handler for runConsumer: queues the batch and reads on ('hold'); commits follow its flush. */
  handle: BatchHandler;
  /** Loads the watermarks the store kept, then flushes every FRAUD_VIEWS_FLUSH_MS until stop(). */
  start(): Promise<void>;
  /** Flushes what is queued (retrying a cut store until `deadlineMs`), then stops the loop. */
  stop(deadlineMs?: number): Promise<void>;
  counters: FraudViewsCounters;
  /** Queued events not yet in the store. */
  pending(): number;
}

/** When PayLink received the message: the edge's `received-at`, else the Kafka timestamp. */
function receivedAtOf(message: ConsumedMessage): number {
  const received = message.headers[HEADERS.receivedAt];
  const at = received === undefined ? NaN : Date.parse(received);
  return Number.isNaN(at) ? Number(message.timestamp) : at;
}

const CURRENCY = /^[A-Z]{3}$/;
const text = (v: unknown, max = 200): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;

type Where = 'topic' | 'partition' | 'offset' | 'late' | 'receivedAt';
/** An observation before the consumer adds where and when it was read (Omit distributed over the kinds). */
type Unplaced = Observation extends infer O ? (O extends unknown ? Omit<O, Where> : never) : never;
type Parsed = Unplaced | 'ignored' | 'unusable';

/**
 * A raw gateway event (already tokenized by the edge) as an attempt or other activity. Checked by hand
 * for the fields the views read, as the gateway contract does (zod per event would halve throughput);
 * an event the edge quarantined (a fractional amount …) fails here too and is not counted.
 */
export function parseGatewayMessage(message: Pick<ConsumedMessage, 'headers' | 'value'>): Parsed {
  const key = message.headers[HEADERS.idempotencyKey];
  if (!key || isUnmappedGatewayKey(key) || message.value === null) return 'unusable';
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(message.value.toString('utf8')) as Record<string, unknown>;
  } catch {
    return 'unusable';
  }
  if (typeof v !== 'object' || v === null) return 'unusable';
  const region = message.headers[HEADERS.region];
  const gateway = key.slice(0, key.indexOf(':'));
  const eventTime = typeof v.occurredAt === 'string' ? Date.parse(v.occurredAt) : NaN;
  const amount = v.amount as { value?: unknown; currency?: unknown } | undefined;
  if (
    !text(region, 40) ||
    !gateway ||
    !text(v.merchantId, 120) ||
    Number.isNaN(eventTime) ||
    typeof amount !== 'object' ||
    amount === null ||
    !Number.isSafeInteger(amount.value) ||
    (amount.value as number) < 0 ||
    typeof amount.currency !== 'string' ||
    !CURRENCY.test(amount.currency)
  ) {
    return 'unusable';
  }
  const id = `g:${key}`;
  switch (v.eventType) {
    case 'AUTHORISATION':
    case 'REFUSAL': {
      const card = v.card as Record<string, unknown> | undefined;
      if (typeof card !== 'object' || card === null || !text(card.number, 200)) return 'unusable';
      if (v.eventType === 'REFUSAL' && !text(v.refusalReason, 500)) return 'unusable';
      return {
        kind: 'attempt',
        id,
        eventTime,
        merchantId: v.merchantId,
        cardToken: card.number,
        // The tokenizer keeps a PAN's BIN and last four next to its token (src/ingest/tokenize.ts).
        bin: text(card.numberBin, 8) ? card.numberBin : 'unknown',
        lastFour: text(card.numberLast4, 4) ? card.numberLast4 : '????',
        region,
        gateway,
        amountMinor: amount.value as number,
        currency: amount.currency,
        outcome: v.eventType === 'AUTHORISATION' ? 'authorized' : 'declined',
        declineCode: v.eventType === 'REFUSAL' ? (v.refusalReason as string) : null,
      };
    }
    case 'CAPTURE':
    case 'CANCELLATION':
      return { kind: 'gateway-event', id, eventTime, region, gateway };
    default:
      return 'unusable';
  }
}

/** A payment fact (validated by the edge) that feeds the ratios; every other type is ignored. */
export function parseFactMessage(message: Pick<ConsumedMessage, 'headers' | 'value'>): Parsed {
  if (message.value === null) return 'unusable';
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(message.value.toString('utf8')) as Record<string, unknown>;
  } catch {
    return 'unusable';
  }
  if (v.type !== 'captured' && v.type !== 'refunded' && v.type !== 'chargeback_opened') return 'ignored';
  const key = message.headers[HEADERS.idempotencyKey] ?? v.idempotencyKey;
  const eventTime = typeof v.occurredAt === 'string' ? Date.parse(v.occurredAt) : NaN;
  if (!text(key, 300) || !text(v.merchantId, 120) || Number.isNaN(eventTime)) return 'unusable';
  return { kind: 'fact', id: `f:${key}`, eventTime, merchantId: v.merchantId, type: v.type };
}

const partitionId = (topic: string, partition: number): string => `${topic}[${partition}]`;

/**
 * A store that cannot be reached or is restarting (a connection error without SQLSTATE, or classes 08
 * connection, 53 resources, 57 operator intervention, 40 rollback): wait it out. Anything else is the data.
 */
function isUnreachable(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true;
  return ['08', '53', '57', '40'].includes(code.slice(0, 2));
}

export function createFraudViews(deps: FraudViewsDeps): FraudViews {
  const { pool, topics, group, log, settings } = deps;
  const counters: FraudViewsCounters = {
    read: 0,
    ignored: 0,
    unusable: 0,
    counted: 0,
    alreadyCounted: 0,
    duplicates: 0,
    late: 0,
    alertsRaised: 0,
    flushes: 0,
    failedFlushes: 0,
  };
  const watermarks = new Watermarks();
  let queue: Observation[] = [];
  let progress = new Map<string, PartitionProgress>();
  /** Freshness of flushed events (bucket → count), written with the next flush. */
  let freshness = new Map<number, number>();
  let running = false;
  let loop: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  let flushed: (() => void)[] = [];
  let degradedSince: number | undefined;
  let publishing = false;
  let publishFailing = false;
  /** A flush refused by the store for its content, not its reachability: retrying cannot help. */
  let fatal: Error | undefined;

  const streamTopics = (topic: string): ReadonlySet<string> => new Set([topic]);

  const handle: BatchHandler = async (batch, control) => {
    if (fatal) throw fatal;
    const parse = batch.topic === topics.rawGateways ? parseGatewayMessage : parseFactMessage;
    const streamWatermark = watermarks.min(streamTopics(batch.topic));
    let newest: number | undefined;
    for (const message of batch.messages) {
      counters.read += 1;
      const parsed = parse(message);
      if (parsed === 'ignored') counters.ignored += 1;
      else if (parsed === 'unusable') counters.unusable += 1;
      else {
        queue.push({
          ...parsed,
          topic: batch.topic,
          partition: batch.partition,
          offset: message.offset,
          receivedAt: receivedAtOf(message),
          late: isLate(parsed.eventTime, streamWatermark, settings.graceMs),
        });
        if (newest === undefined || parsed.eventTime > newest) newest = parsed.eventTime;
      }
    }
    if (newest !== undefined) watermarks.observe(batch.topic, batch.partition, newest);
    const id = partitionId(batch.topic, batch.partition);
    const before = progress.get(id);
    progress.set(id, {
      topic: batch.topic,
      partition: batch.partition,
      nextOffset: before && BigInt(before.nextOffset) > BigInt(batch.nextOffset) ? before.nextOffset : batch.nextOffset,
      watermark: watermarks.of(batch.topic, batch.partition),
    });
    // Back-pressure while the store is cut off: stop reading (the runner keeps the membership alive).
    while (queue.length >= settings.maxPending && running && control.owned()) {
      await new Promise<void>((resolve) => flushed.push(resolve));
    }
    return 'hold';
  };

  const flushOnce = async (): Promise<boolean> => {
    if (queue.length === 0 && progress.size === 0 && freshness.size === 0) return true;
    const observations = queue;
    const partitions = progress;
    const samples = freshness;
    queue = [];
    progress = new Map();
    freshness = new Map();
    try {
      const result = await flushToRiskStore(pool, {
        group,
        observations,
        partitions: [...partitions.values()],
        freshness: samples,
        rules: settings.rules,
      });
      const visibleAt = Date.now();
      for (const o of result.counted) {
        const bucket = freshnessBucket(visibleAt - o.receivedAt);
        freshness.set(bucket, (freshness.get(bucket) ?? 0) + 1);
      }
      counters.flushes += 1;
      counters.counted += result.counted.length;
      counters.alreadyCounted += result.alreadyCounted;
      counters.duplicates += result.duplicates;
      counters.late += result.late;
      counters.alertsRaised += result.raised.length;
      for (const a of result.raised)
        log.info('alert', { rule: a.rule, key: a.key, windowStart: a.windowStart, message: a.message });
      if (degradedSince !== undefined) {
        log.info('risk store reachable again; queued events flushed', {
          afterMs: visibleAt - degradedSince,
          counted: result.counted.length,
        });
        degradedSince = undefined;
      }
      deps.onFlushed?.([...partitions.values()]);
      // Kafka offsets follow the store's; a member that lost the partition leaves it to the new owner.
      await Promise.all(
        [...partitions.values()].map((p) =>
          deps
            .commitOffset(p.topic, p.partition, p.nextOffset)
            .catch((err: unknown) =>
              log.debug('offset commit skipped; the store has the offsets', { ...p, error: errorMessage(err) }),
            ),
        ),
      );
      return true;
    } catch (err) {
      counters.failedFlushes += 1;
      // Put it all back, ahead of what was read meanwhile: the next flush retries it whole.
      queue = [...observations, ...queue];
      for (const [id, p] of partitions) {
        const now = progress.get(id);
        if (!now) progress.set(id, p);
      }
      for (const [b, n] of samples) freshness.set(b, (freshness.get(b) ?? 0) + n);
      if (!isUnreachable(err)) {
        // Fail loudly (the runner ends the process non-zero, naming the batch): a poison flush would otherwise
        // be retried for ever while the views look merely stale.
        fatal ??= new Error(`the risk store refused a flush: ${errorMessage(err)}`);
        log.error('flush refused by the risk store; stopping', { error: errorMessage(err), queued: queue.length });
      } else if (degradedSince === undefined) {
        degradedSince = Date.now();
        log.warn('degraded: risk store unreachable; aggregating in memory and retrying', {
          dependency: 'postgres',
          error: errorMessage(err),
          queued: queue.length,
        });
      }
      return false;
    } finally {
      const waiting = flushed;
      flushed = [];
      waiting.forEach((resolve) => resolve());
    }
  };

  const publishAlerts = async (): Promise<void> => {
    const producer = deps.producer;
    if (!producer || publishing) return;
    publishing = true;
    try {
      const alerts = await unpublishedAlerts(pool);
      if (alerts.length === 0) return;
      await producer.send({
        topic: topics.fraudAlerts,
        acks: -1,
        messages: alerts.map((a) => ({ key: a.id, value: JSON.stringify(a), headers: { 'alert-rule': a.rule } })),
      });
      await markAlertsPublished(
        pool,
        alerts.map((a) => a.id),
      );
      if (publishFailing) log.info('alerts published again', { alerts: alerts.length });
      publishFailing = false;
    } catch (err) {
      // Once per outage: the flush loop retries every tick. A send that did reach Kafka before the mark
      // failed is sent again: the topic is at least once, keyed by the deterministic alert id.
      if (!publishFailing) log.warn('alerts not published yet; retrying', { error: errorMessage(err) });
      publishFailing = true;
    } finally {
      publishing = false;
    }
  };

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  return {
    handle,
    counters,
    pending: () => queue.length,
    async start() {
      for (const p of await readPartitionStates(pool, group)) {
        if (p.watermark !== null) watermarks.observe(p.topic, p.partition, p.watermark);
      }
      running = true;
      loop = (async () => {
        while (running) {
          const started = Date.now();
          await flushOnce();
          // Publishing waits on Kafka, which may be cut off: never in the flush's way.
          void publishAlerts();
          await sleep(Math.max(0, settings.flushMs - (Date.now() - started)));
        }
      })();
    },
    async stop(deadlineMs = 20_000) {
      running = false;
      wake?.();
      await loop;
      const deadline = Date.now() + deadlineMs;
      while (!(await flushOnce()) && Date.now() < deadline) await sleep(Math.min(1_000, settings.flushMs * 4));
      await flushOnce(); // the freshness of the last flush
      await publishAlerts();
      if (fatal) throw fatal;
      const waiting = flushed;
      flushed = [];
      waiting.forEach((resolve) => resolve());
    },
  };
}

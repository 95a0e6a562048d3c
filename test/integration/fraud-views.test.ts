import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Pool } from 'pg';
import { Pool as PgPool } from 'pg';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import type { PipelineProcess } from '../../src/starters/processes';
import { takeDown, bringBack } from '../../src/stack/faults';
import { createPool } from '../../src/stores/postgres';
import { readAlerts } from '../../src/stores/risk';
import { createFraudViewsServer } from '../../src/streams/fraud-views/server';
import type { ViewsSnapshot } from '../../src/streams/fraud-views/snapshot';
import { type RiskViewsSource, riskViewsSource } from '../../src/streams/fraud-views/views-source';
import {
  type KafkaAdmin,
  type KafkaClient,
  type Producer,
  createKafka,
  createProducer,
  ensureTopics,
  topicsFor,
} from '../../src/streams/kafka';
import {
  caughtUp,
  differencesFromTruth,
  edgeRecords,
  emptyRiskStore,
  fraudRun,
  produceInBatches,
  startFraudViews,
} from '../support/fraud-views';
import { launchChromium } from '../support/chromium';
import { startNetcut, type Netcut } from '../support/netcut';
import { waitFor } from '../support/pipeline';
import { config as baseConfig, requireServices, uniqueId } from '../support/stack';
import { migrateAsOwner } from '../../src/stores/migrate';

// The fraud views against real Kafka and Postgres: a seeded day of payments with an injected card-testing
// burst and decline spike, produced as the edges would, counted by the real consumer process. The views
// must equal the simulator's truth exactly — through a kill -9 and redelivery, a cut from the risk store
// and a Kafka outage — and each injected alert is raised once.

/** What the page's cards offer the test (tsconfig has no DOM lib: this is Node code). */
interface PageCard {
  getAttribute(name: string): string | null;
  querySelector(selector: string): PageCard | null;
}

const runId = uniqueId('fv');
const config = { ...baseConfig, KAFKA_TOPIC_NAMESPACE: runId, FRAUD_VIEWS_GROUP: `fraud-views-${runId}` };
const topics = topicsFor(config);
const pgUrl = new URL(baseConfig.DATABASE_URL);

describe('fraud views', { timeout: 600_000 }, () => {
  let owner: Pool;
  let pool: Pool;
  let kafka: KafkaClient;
  let admin: KafkaAdmin;
  let producer: Producer;
  let netcut: Netcut;
  let storeUrl: string;
  let consumer: PipelineProcess | undefined;
  let source: RiskViewsSource;
  let sourcePool: Pool;
  const counted: PaymentEvent[] = [];

  const env = (): NodeJS.ProcessEnv => ({
    KAFKA_TOPIC_NAMESPACE: runId,
    FRAUD_VIEWS_GROUP: config.FRAUD_VIEWS_GROUP,
    // Through the cuttable link: the consumer's only way to its store.
    RISK_DATABASE_URL: storeUrl,
    KAFKA_SESSION_TIMEOUT_MS: '6000',
  });
  const allCounted = async (what: string, timeoutMs = 180_000): Promise<void> =>
    waitFor(what, Date.now() + timeoutMs, () => caughtUp(pool, admin, config.FRAUD_VIEWS_GROUP, topics));
  const exact = async (): Promise<void> => assert.deepEqual(await differencesFromTruth(pool, counted), []);

  before(async () => {
    await requireServices('postgres', 'kafka');
    await migrateAsOwner(baseConfig); // a stack provisioned by older code lacks the newer risk migrations
    owner = createPool(baseConfig, 1, 'MIGRATION_DATABASE_URL');
    await emptyRiskStore(owner);
    pool = createPool(baseConfig, 2);
    kafka = createKafka(config, 'fraud-views-test');
    admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, config);
    producer = createProducer(kafka);
    await producer.connect();
    netcut = await startNetcut({ target: { host: pgUrl.hostname, port: Number(pgUrl.port) } });
    const url = new URL(baseConfig.DATABASE_URL);
    url.host = netcut.address;
    storeUrl = url.toString();
    sourcePool = new PgPool({ connectionString: storeUrl, max: 2, connectionTimeoutMillis: 2_000 });
    sourcePool.on('error', () => undefined); // a cut link: the next query reconnects
    source = riskViewsSource({
      pool: sourcePool,
      topics,
      group: config.FRAUD_VIEWS_GROUP,
      graceMs: config.FRAUD_VIEWS_GRACE_MS,
      topRows: 20,
      smallAmountMinor: config.FRAUD_SMALL_AMOUNT_MINOR,
      outlierSigmas: config.FRAUD_OUTLIER_SIGMAS,
      declineBaselineMinAttempts: config.FRAUD_DECLINE_BASELINE_MIN_ATTEMPTS,
      declineBaselineDefault: config.FRAUD_DECLINE_BASELINE_DEFAULT,
      kafka,
      kafkaTimeoutMs: 1_000,
    });
  });

  after(async () => {
    await consumer?.stop();
    await source?.close();
    await sourcePool?.end();
    await netcut?.close();
    await producer?.disconnect();
    await admin?.disconnect();
    await pool?.end();
    await owner?.end();
  });

  it('equal the truth after a seeded run with a kill -9 mid-stream, and raise each injected alert once', async () => {
    const run = fraudRun(`${runId}-a`, 1301, 400, true);
    const records = edgeRecords(config, topics, run.deliveries);
    const half = Math.floor(records.length / 2);
    consumer = startFraudViews(env());
    await consumer.ready;
    await produceInBatches(producer, records.slice(0, half));
    // Some of the first half counted, then kill -9: queued events and uncommitted offsets are redelivered.
    await waitFor('a first flush', Date.now() + 60_000, async () => {
      const states = await source.snapshot();
      return states.views.some((v) => v.rows.length > 0) || 'no rows yet';
    });
    await consumer.kill9();
    // Rewind the group to the start: every record read so far comes again, and the store must skip it.
    // (Allowed once the killed member's session expired and the group is empty.)
    await waitFor('the group to rewind', Date.now() + 30_000, async () => {
      try {
        for (const topic of [topics.rawGateways, topics.paymentEvents]) {
          const partitions = (await admin.fetchTopicOffsets(topic)).map((p) => ({
            partition: p.partition,
            offset: p.low,
          }));
          await admin.setOffsets({ groupId: config.FRAUD_VIEWS_GROUP, topic, partitions });
        }
        return true;
      } catch (err) {
        return `not yet: ${(err as Error).message}`;
      }
    });
    await produceInBatches(producer, records.slice(half));
    consumer = startFraudViews(env());
    await consumer.ready;
    counted.push(...run.events);
    await allCounted('every record counted after the restart');
    await exact();

    const alerts = await readAlerts(pool, 1000);
    const ct = run.injected!.cardTesting;
    const ds = run.injected!.declineSpike;
    const byRule = (rule: string) => alerts.filter((a) => a.rule === rule);
    assert.deepEqual(
      byRule('card-testing')
        .map((a) => JSON.stringify([a.key, a.windowStart]))
        .sort(),
      [
        JSON.stringify([{ bin: ct.bin }, ct.windowStart]),
        JSON.stringify([{ merchantId: ct.merchantId }, ct.windowStart]),
      ],
      'card testing raised once for the merchant and once for the BIN, in the burst minute',
    );
    assert.deepEqual(
      byRule('decline-spike').map((a) => JSON.stringify([a.key, a.windowStart])),
      [JSON.stringify([{ gateway: ds.gateway, region: ds.region }, ds.windowStart])],
      'the decline spike raised once for the failing gateway',
    );
    assert.equal(alerts.length, 3, `no other rule fired on ordinary traffic: ${alerts.map((a) => a.id).join(', ')}`);

    const snapshot = await source.snapshot();
    assert.equal(snapshot.store.reachable, true);
    for (const view of snapshot.views) {
      assert.ok(view.rows.length > 0, `${view.name} has rows`);
      assert.ok(view.age.asOf !== null, `${view.name} has an as-of`);
      assert.equal(view.age.consumerLag, 0, `${view.name} is caught up`);
    }
  });

  it('keep answering with an older as-of while the store is cut off, and converge exactly after', async () => {
    const before = await source.snapshot();
    const run = fraudRun(`${runId}-b`, 1302, 300, false);
    const records = edgeRecords(config, topics, run.deliveries);
    await netcut.cut('refuse');
    const cutAt = Date.now();
    // Events keep flowing while the consumer cannot reach its store (and the source cannot either).
    await produceInBatches(producer, records);
    counted.push(...run.events);
    const during: ViewsSnapshot = await source.snapshot();
    assert.equal(during.store.reachable, false, 'the source says the store is unreachable');
    assert.equal(
      during.views.find((v) => v.name === 'velocity-merchant')!.age.asOf,
      before.views.find((v) => v.name === 'velocity-merchant')!.age.asOf,
      'the last as-of is served',
    );
    await waitFor('the cut to last a few seconds', cutAt + 6_000, async () => Date.now() - cutAt >= 5_000 || 'cut');
    assert.equal(consumer!.child.exitCode, null, 'the consumer is alive');
    await netcut.heal();
    await allCounted('every record counted after the heal');
    await exact();
    const healed = await source.snapshot();
    assert.equal(healed.store.reachable, true);
  });

  it('ride out a Kafka outage and converge exactly after', async () => {
    const run = fraudRun(`${runId}-c`, 1303, 300, false);
    const records = edgeRecords(config, topics, run.deliveries);
    const half = Math.floor(records.length / 2);
    await produceInBatches(producer, records.slice(0, half));
    await takeDown('kafka', 'kill9');
    const downAt = Date.now();
    const during = await source.snapshot();
    assert.equal(during.store.reachable, true, 'the store still answers');
    assert.ok(
      during.views.every((v) => v.age.consumerLag === null),
      'without Kafka the consumer lag is unknown, not made up',
    );
    await waitFor('Kafka down a few seconds', downAt + 10_000, async () => Date.now() - downAt >= 6_000 || 'down');
    assert.equal(consumer!.child.exitCode, null, 'the consumer is alive during the outage');
    await bringBack('kafka');
    await produceInBatches(producer, records.slice(half));
    counted.push(...run.events);
    await allCounted('every record counted after Kafka is back');
    await exact();
    assert.equal(consumer!.child.exitCode, null, 'the consumer rode the outage out');
  });
  it('show on the live page in Chromium, whose as-of advances within seconds of newer events', async () => {
    // The page's server over the real risk store's source; Debian's Chromium reads it as a user would.
    const page = await createFraudViewsServer({
      source,
      pollIntervalMs: 500,
      port: 0,
      host: '127.0.0.1',
      logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
      // Staleness by age is the browser's clock against simulated event time (2026-01-01): not this test's point.
      staleAfterMs: 10 * 365 * 86_400_000,
    });
    const browser = await launchChromium();
    try {
      const tab = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      const errors: string[] = [];
      tab.on('pageerror', (err) => errors.push(err.message));
      await tab.goto(`${page.url}/`, { timeout: 30_000 });
      const asOfShown = async (): Promise<Record<string, string | null>> =>
        Object.fromEntries(
          await tab
            .locator('[data-view]')
            .evaluateAll((cards: PageCard[]) =>
              cards.map((card) => [
                card.getAttribute('data-view') ?? '',
                card.querySelector('[data-testid=view-age]')?.getAttribute('data-as-of') ?? null,
              ]),
            ),
        );
      const snapshot = await source.snapshot();
      const names = snapshot.views.map((v) => v.name);
      await waitFor('every view on the page with its as-of', Date.now() + 30_000, async () => {
        const shown = await asOfShown();
        return names.every((n) => shown[n] !== undefined && shown[n] !== null) || JSON.stringify(shown);
      });
      const before = (await asOfShown())['velocity-merchant']!;
      // A newer day of events: every event time a day past the ones counted so far.
      const run = fraudRun(`${runId}-d`, 1304, 200, false);
      const later = (e: PaymentEvent): PaymentEvent => ({
        ...e,
        occurredAt: new Date(Date.parse(e.occurredAt) + 86_400_000).toISOString(),
      });
      await produceInBatches(producer, edgeRecords(config, topics, run.deliveries.map(later)));
      counted.push(...run.events.map(later));
      const producedAt = Date.now();
      await waitFor('the page to show a newer as-of', producedAt + 30_000, async () => {
        const now = (await asOfShown())['velocity-merchant'];
        return (now !== null && now !== undefined && Date.parse(now) > Date.parse(before)) || `still ${now}`;
      });
      assert.deepEqual(errors, [], 'no script error on the page');
      await allCounted('the newer day counted');
      await exact();
    } finally {
      await browser.close();
      await page.close();
    }
  });
});

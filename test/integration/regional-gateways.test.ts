import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Consumer } from 'kafkajs';
import { traceIdOf } from '../../src/contracts/envelope';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import {
  type GatewayConnector,
  type GatewayFeedConfig,
  createGatewayConnector,
} from '../../src/ingest/gateways/gateway-connector';
import { scanValue } from '../../src/quality/pii-scanner';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { createLogger } from '../../src/logger';
import { splitByChannel } from '../../src/simulator/channels';
import {
  type GatewayFeed,
  createGatewayFeed,
  encodeGatewayEvent,
  simulatedCardholder,
} from '../../src/simulator/gateway-feed';
import { REGIONS, simulatePayments } from '../../src/simulator/payments';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { type Vault, openVault } from '../../src/stores/vault';
import { type KafkaAdmin, createKafka, ensureTopics } from '../../src/streams/kafka';
import { testPublisher } from '../support/edge';
import { type Netcut, startNetcut } from '../support/netcut';
import { waitFor } from '../support/pipeline';
import { testKafka, topicEnds } from '../support/kafka';
import { config, requireServices, uniqueId, topics as TOPICS } from '../support/stack';

// A regional outage: eu-west's link is cut (black-holed) and us-east's gateway goes down while
// ap-south keeps flowing; after heal every gateway fact of the run is on Kafka exactly once.

interface Seen {
  key: string;
  value: string;
  headers: Record<string, string>;
}

/** Collects the run's messages (key = paymentId with the run's prefix) from where the topics end now. */
async function startCollector(admin: KafkaAdmin, runId: string, topics: string[]) {
  const groupId = uniqueId('gateway-test');
  // A fresh group starting at today's ends: nothing of this run is older, and older runs are not re-read.
  for (const topic of topics) {
    await admin.setOffsets({ groupId, topic, partitions: await topicEnds(admin, topic) });
  }
  const consumer: Consumer = testKafka(groupId).consumer({ groupId });
  const seen = new Map<string, Seen[]>(topics.map((t) => [t, []]));
  await consumer.connect();
  await consumer.subscribe({ topics });
  const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      const key = message.key?.toString() ?? '';
      if (!key.startsWith(`${runId}-`)) return;
      const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]));
      seen.get(topic)!.push({ key, value: String(message.value), headers });
    },
  });
  await joined;
  return { seen: (topic: string) => seen.get(topic)!, stop: () => consumer.disconnect() };
}

describe('regional gateways: per-region ingest through outages', () => {
  const runId = uniqueId('gwr');
  const sim = simulatePayments({ payments: 600, seed: 20261, duplicateRate: 0, runId });
  const gatewayFacts = splitByChannel(sim.deliveries).gateway;
  const truth = new Map(gatewayFacts.map((f) => [f.idempotencyKey, f]));
  const byRegion = new Map(REGIONS.map((r) => [r, gatewayFacts.filter((f) => f.region === r)]));
  /** The n-th of `parts` slices of a region's facts, in delivery order. */
  const batch = (region: string, n: number, parts: number): PaymentEvent[] => {
    const all = byRegion.get(region as (typeof REGIONS)[number])!;
    const size = Math.ceil(all.length / parts);
    return all.slice(n * size, (n + 1) * size);
  };
  const log = createLogger('gateway-test');
  const tokenizer = tokenizerFromConfig(config);
  const kafka = createKafka(config, 'gateway-test');
  const publisher = testPublisher('gateway-test', log);
  const admin = kafka.admin();
  const stateDir = mkdtempSync(join(tmpdir(), 'paylink-gw-state-'));
  const feeds = new Map<string, GatewayFeed>();
  const links = new Map<string, Netcut>();
  let feedConfigs: GatewayFeedConfig[];
  let vault: Vault;
  let collector: Awaited<ReturnType<typeof startCollector>>;
  let connector: GatewayConnector | undefined;
  const children: PipelineProcess[] = [];

  const facts = () => collector.seen(TOPICS.paymentEvents);
  const arrivedKeys = () => new Set(facts().map((m) => m.headers['idempotency-key']));
  const missing = (expected: PaymentEvent[]): PaymentEvent[] => {
    const got = arrivedKeys();
    return expected.filter((f) => !got.has(f.idempotencyKey));
  };
  const allArrived = (expected: PaymentEvent[]) => async () => {
    const left = missing(expected);
    return left.length === 0 || `${left.length}/${expected.length} missing, e.g. ${left[0]!.idempotencyKey}`;
  };

  before(async () => {
    await requireServices('kafka', 'postgres');
    assert.ok(
      REGIONS.every((r) => byRegion.get(r)!.length >= 60),
      'every region has enough gateway facts',
    );
    await admin.connect();
    await ensureTopics(admin, config);
    vault = await openVault(config);
    for (const region of REGIONS) {
      const feed = createGatewayFeed({ region });
      await feed.start();
      feeds.set(region, feed);
      links.set(region, await startNetcut({ target: { host: '127.0.0.1', port: feed.port } }));
    }
    feedConfigs = REGIONS.map((region) => ({
      region,
      gateway: `gw-${region}`,
      url: `http://${links.get(region)!.address}`,
    }));
    collector = await startCollector(admin, runId, [TOPICS.paymentEvents, TOPICS.rawGateways, TOPICS.quarantine]);
  });

  after(async () => {
    await connector?.stop();
    for (const child of children) await child.stop();
    await collector?.stop();
    for (const link of links.values()) await link.close();
    for (const feed of feeds.values()) await feed.stop();
    await vault?.close();
    await publisher.close();
    await admin.disconnect();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('keeps ap-south flowing while eu-west is cut off and us-east is down; the outage arrives late, exactly once', async () => {
    connector = createGatewayConnector({
      feeds: feedConfigs,
      publisher,
      topics: TOPICS,
      tokenizer,
      vault,
      log,
      stateDir,
      pollIntervalMs: 100,
      // Longer than any wait here: a black-holed eu-west request stays stuck until heal drops it.
      requestTimeoutMs: 120_000,
      maxBackoffMs: 500,
      pageLimit: 50,
    });
    connector.start();
    const status = (region: string) => connector!.status().find((s) => s.region === region)!;

    const first = REGIONS.flatMap((r) => batch(r, 0, 3));
    for (const r of REGIONS) feeds.get(r)!.publish(batch(r, 0, 3));
    await waitFor('the first batch of every region', Date.now() + 30_000, allArrived(first));

    // The outage: eu-west's link silently drops packets; us-east's gateway stops answering.
    await links.get('eu-west')!.cut('blackhole');
    await feeds.get('us-east')!.stop();
    const pollsBefore = { eu: status('eu-west').polls, us: status('us-east').polls, ap: status('ap-south').polls };
    for (const r of REGIONS) feeds.get(r)!.publish(batch(r, 1, 3));
    // An authentic gateway event that breaks the contract: quarantined with its reason, never dropped.
    const broken = { ...encodeGatewayEvent(batch('ap-south', 0, 3)[0]!, 'gw-ap-south') };
    feeds.get('ap-south')!.appendRaw({
      ...broken,
      eventId: `${broken.eventId}-drifted`,
      paymentReference: `${runId}-broken`,
      amount: { value: 12.5, currency: 'EUR' },
    });

    await waitFor('ap-south during the outage', Date.now() + 30_000, allArrived(batch('ap-south', 1, 3)));
    await waitFor('us-east failing and ap-south polling on, while eu-west hangs', Date.now() + 30_000, async () => {
      const us = status('us-east');
      const ap = status('ap-south');
      return (
        (us.state === 'unreachable' && us.polls >= pollsBefore.us + 3 && ap.polls >= pollsBefore.ap + 10) ||
        `us-east ${us.state} after ${us.polls - pollsBefore.us} polls, ap-south ${ap.polls - pollsBefore.ap} polls`
      );
    });
    // eu-west's request is stuck in the black hole (at most the poll the cut broke finished): it blocks nobody.
    assert.ok(
      status('eu-west').polls <= pollsBefore.eu + 2,
      `eu-west polls ${status('eu-west').polls - pollsBefore.eu}`,
    );
    assert.match(status('us-east').lastError ?? '', /ECONNREFUSED|fetch failed/);
    assert.equal(status('ap-south').state, 'ok');
    const outage = [...batch('eu-west', 1, 3), ...batch('us-east', 1, 3)];
    assert.equal(missing(outage).length, outage.length, 'nothing of a cut-off region reached Kafka');

    await links.get('eu-west')!.heal();
    await feeds.get('us-east')!.start();
    const second = REGIONS.flatMap((r) => batch(r, 1, 3));
    await waitFor('the outage events after heal', Date.now() + 30_000, allArrived([...first, ...second]));
    await waitFor('the quarantined event', Date.now() + 10_000, async () =>
      collector.seen(TOPICS.quarantine).length > 0 ? true : 'not yet',
    );
    await connector.stop();
    connector = undefined;

    // Exactly once, each with its region, equal to the truth (the connector ran without crashes).
    const counts = new Map<string, number>();
    for (const m of facts()) {
      const key = m.headers['idempotency-key']!;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      const expected = truth.get(key);
      assert.ok(expected, `unexpected fact ${key}`);
      // The truth, plus the trace id the edge derived from its idempotency key.
      assert.deepEqual(JSON.parse(m.value), { ...expected, traceId: traceIdOf(key) });
      assert.equal(m.headers.region, expected.region);
      assert.equal(m.headers.source, 'gateway');
    }
    assert.equal(counts.size, first.length + second.length);
    assert.deepEqual(
      [...counts].filter(([, n]) => n !== 1),
      [],
      'every idempotency key exactly once',
    );

    const [quarantined] = collector.seen(TOPICS.quarantine);
    assert.equal(quarantined!.key, `${runId}-broken`);
    assert.match(quarantined!.headers['quarantine-reason']!, /amount\.value: amount must be integer minor units/);

    // Raw events: every event as received (tokenized), with its schema; no PAN/PII on Kafka.
    const raws = collector.seen(TOPICS.rawGateways);
    assert.equal(raws.length, first.length + second.length + 1);
    assert.ok(raws.every((m) => m.headers.schema === 'gateway-event@1' && m.headers.source === 'gateway'));
    assert.deepEqual(
      raws.flatMap((m) => scanValue(JSON.parse(m.value))),
      [],
      'no raw PAN/PII on Kafka',
    );
    const sample = JSON.parse(raws[0]!.value) as { paymentReference: string; card: { number: string } };
    assert.match(sample.card.number, /^tok_pan_/);
    assert.equal(
      await vault.detokenize(sample.card.number, { actor: 'gateway-test', purpose: 'verify vault entry' }),
      simulatedCardholder(sample.paymentReference).card.number,
    );
  });

  it('a black-holed link fails by request timeout, backs off, and recovers after heal', async () => {
    // Its own empty gateway and link: the run's feeds and cursors stay untouched.
    const feed = createGatewayFeed({ region: 'eu-west', gateway: 'gw-probe' });
    await feed.start();
    const link = await startNetcut({ target: { host: '127.0.0.1', port: feed.port } });
    const dir = mkdtempSync(join(tmpdir(), 'paylink-gw-timeout-'));
    const probe = createGatewayConnector({
      feeds: [{ region: 'eu-west', gateway: 'gw-probe', url: `http://${link.address}` }],
      publisher,
      topics: TOPICS,
      tokenizer,
      vault,
      log,
      stateDir: dir,
      pollIntervalMs: 50,
      requestTimeoutMs: 200,
      maxBackoffMs: 200,
      pageLimit: 10,
    });
    await link.cut('blackhole');
    probe.start();
    try {
      await waitFor('request timeouts on the black-holed link', Date.now() + 20_000, async () => {
        const st = probe.status()[0]!;
        return (st.state === 'unreachable' && st.consecutiveFailures >= 3) || `${st.state}/${st.consecutiveFailures}`;
      });
      assert.match(probe.status()[0]!.lastError ?? '', /request timeout/);
      await link.heal();
      await waitFor('the probe to recover', Date.now() + 20_000, async () =>
        probe.status()[0]!.state === 'ok' ? true : probe.status()[0]!.state,
      );
    } finally {
      await probe.stop();
      await link.close();
      await feed.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a connector process killed with -9 mid-run resumes from its cursors without gaps', async () => {
    const env = {
      GATEWAY_FEEDS: JSON.stringify(feedConfigs),
      GATEWAY_STATE_DIR: stateDir, // the cursors the in-process connector left
      GATEWAY_POLL_INTERVAL_MS: '100',
      GATEWAY_REQUEST_TIMEOUT_MS: '1000',
      GATEWAY_MAX_BACKOFF_MS: '500',
      GATEWAY_PAGE_LIMIT: '10',
    };
    const before = facts().length;
    const doomed = startPipelineProcess(
      'gateway-connector-kill9',
      'src/ingest/gateways/gateway-connector-main.ts',
      env,
    );
    children.push(doomed);
    await doomed.ready;
    const third = REGIONS.flatMap((r) => batch(r, 2, 3));
    /** A region's third batch in two halves: the first is read before the kill, the second after. */
    const halves = (r: string): [PaymentEvent[], PaymentEvent[]] => {
      const all = batch(r, 2, 3);
      const mid = Math.ceil(all.length / 2);
      return [all.slice(0, mid), all.slice(mid)];
    };
    const thirdA = REGIONS.flatMap((r) => halves(r)[0]);
    for (const r of REGIONS) feeds.get(r)!.publish(halves(r)[0]);
    await waitFor(
      'the first facts after restart',
      Date.now() + 30_000,
      async () => (facts().length > before ? true : 'none yet'),
      { intervalMs: 20 },
    );
    await doomed.kill9();
    const atKill = thirdA.length - missing(thirdA).length;
    for (const r of REGIONS) feeds.get(r)!.publish(halves(r)[1]);

    const restarted = startPipelineProcess(
      'gateway-connector-restart',
      'src/ingest/gateways/gateway-connector-main.ts',
      env,
    );
    children.push(restarted);
    await restarted.ready;
    await waitFor('every gateway fact of the run', Date.now() + 45_000, allArrived(gatewayFacts), {
      guard: () =>
        assert.equal(restarted.child.exitCode, null, `restarted connector exited (see ${restarted.logFile})`),
    });
    await restarted.stop();

    const keys = facts().map((m) => m.headers['idempotency-key']!);
    const distinct = new Set(keys);
    assert.deepEqual([...distinct].sort(), [...truth.keys()].sort(), 'distinct keys == truth');
    // The first process resumed from the in-process cursors: nothing acknowledged before this test was re-sent.
    const earlier = new Set(keys.slice(0, before));
    assert.equal(
      keys.slice(before).filter((k) => earlier.has(k)).length,
      0,
      'no re-send of already acknowledged pages',
    );
    log.info('kill -9 resume', {
      thirdBatch: third.length,
      arrivedBeforeKill: atKill,
      resentAfterKill: keys.length - before - third.length,
    });
  });
});

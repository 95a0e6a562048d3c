import type { Pool } from 'pg';
import type { Config } from '../config';
import type { PaymentEvent } from '../contracts/payment-event';
import { COUNTED_VIEWS, compareWithTruth, fraudTruth } from '../simulator/fraud-truth';
import { createRiskOwnerPool, migrateRisk } from '../stores/migrate';
import { RULES, readFreshness, readPartitionStates, readWindowCounts } from '../stores/risk';
import { type KafkaAdmin, type TopicSet, ensureTopics, topicEnds } from '../streams/kafka';
import { percentileOf } from '../streams/fraud-views/windows';

// The demo's side of the fraud views: start them afresh for the run (so its views compare with this run's
// truth only), wait until they counted everything, and summarize them against the simulator's truth.

/** The risk store emptied (as its owner) and the group moved to the topics' ends: the views count this run only. */
export async function startFraudViewsAfresh(config: Config, admin: KafkaAdmin, topics: TopicSet): Promise<void> {
  await migrateRisk(config);
  await untilGroupIdle(admin, config.FRAUD_VIEWS_GROUP);
  const owner = createRiskOwnerPool(config);
  try {
    await owner.query(
      `truncate risk.window_counts, risk.window_member_sets, risk.merchant_cards, risk.amount_stats, risk.seen_events,
                risk.alerts, risk.consumed_offsets, risk.freshness`,
    );
  } finally {
    await owner.end();
  }
  await ensureTopics(admin, config);
  for (const topic of [topics.rawGateways, topics.paymentEvents]) {
    await admin.setOffsets({ groupId: config.FRAUD_VIEWS_GROUP, topic, partitions: await topicEnds(admin, topic) });
  }
}

/**
 * Waits for a group to have no member: a demo stopped a moment ago (a test's timeout) may still be shutting
 * its fraud-views consumer down, which would count into the store being emptied and refuses the offset reset.
 */
async function untilGroupIdle(admin: KafkaAdmin, group: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [g] = (await admin.describeGroups([group])).groups;
    if (!g || g.members.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(
        `consumer group ${group} still has ${g.members.length} member(s) (${g.members.map((m) => m.clientHost).join(', ')}) after ${timeoutMs / 1000} s: stop the other fraud-views consumer first`,
      );
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Records the fraud-views group has not counted into the store yet (0 = caught up). */
export async function fraudViewsBehind(
  pool: Pool,
  admin: KafkaAdmin,
  group: string,
  topics: TopicSet,
): Promise<number> {
  const states = new Map(
    (await readPartitionStates(pool, group)).map((s) => [`${s.topic}[${s.partition}]`, s.nextOffset]),
  );
  const committed = new Map<string, bigint>();
  for (const t of await admin.fetchOffsets({ groupId: group, topics: [topics.rawGateways, topics.paymentEvents] })) {
    for (const p of t.partitions) committed.set(`${t.topic}[${p.partition}]`, BigInt(p.offset));
  }
  let behind = 0n;
  for (const topic of [topics.rawGateways, topics.paymentEvents]) {
    for (const end of await topicEnds(admin, topic)) {
      const id = `${topic}[${end.partition}]`;
      // A partition the store never saw starts where the group was set at the run's start.
      const at = states.get(id) ?? committed.get(id) ?? 0n;
      if (BigInt(end.offset) > at) behind += BigInt(end.offset) - at;
    }
  }
  return Number(behind);
}

export interface FraudSummary {
  /** Store-visible time (after the flush's commit) minus the edge's received-at, per counted event. */
  freshnessP50Ms: number | null;
  freshnessP99Ms: number | null;
  lateEvents: number;
  alerts: Record<string, number>;
  viewsMatchTruth: boolean;
  mismatches: string[];
}

export async function fraudSummary(pool: Pool, config: Config, events: readonly PaymentEvent[]): Promise<FraudSummary> {
  const group = config.FRAUD_VIEWS_GROUP;
  const freshness = await readFreshness(pool, group);
  const states = await readPartitionStates(pool, group);
  const { rows } = await pool.query<{ rule: string; n: number }>(
    'select rule, count(*)::int as n from risk.alerts group by rule',
  );
  const alerts = Object.fromEntries(RULES.map((r) => [r, 0])) as Record<string, number>;
  for (const r of rows) alerts[r.rule] = r.n;
  const mismatches = compareWithTruth(
    fraudTruth(events, config.FRAUD_SMALL_AMOUNT_MINOR),
    await readWindowCounts(pool, COUNTED_VIEWS),
    5,
  );
  return {
    freshnessP50Ms: percentileOf(freshness, 50),
    freshnessP99Ms: percentileOf(freshness, 99),
    lateEvents: states.reduce((n, s) => n + s.lateEvents, 0),
    alerts,
    viewsMatchTruth: mismatches.length === 0,
    mismatches,
  };
}

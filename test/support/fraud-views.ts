import type { Pool } from 'pg';
import { type Config, loadConfig } from '../../src/config';
import { HEADERS, factMessage } from '../../src/contracts/envelope';
import type { PaymentEvent } from '../../src/contracts/payment-event';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { CURRENT_SCHEMAS } from '../../src/quality/schema-registry';
import { channelOf } from '../../src/simulator/channels';
import { type InjectedFraud, injectFraud } from '../../src/simulator/fraud-injection';
import { COUNTED_VIEWS, compareWithTruth, fraudTruth } from '../../src/simulator/fraud-truth';
import { encodeGatewayEvent } from '../../src/simulator/gateway-feed';
import { simulatePayments } from '../../src/simulator/payments';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { readPartitionStates, readWindowCounts } from '../../src/stores/risk';
import {
  type KafkaAdmin,
  type Producer,
  type TopicRecord,
  type TopicSet,
  produce,
  topicEnds,
} from '../../src/streams/kafka';

// The fraud-views tests' edge: a seeded simulation (with its injected fraud) as the edge would have put it
// on Kafka — raw gateway events tokenized with their envelope headers, and every fact on the facts topic —
// and the truth the views must equal.

export interface FraudRun {
  events: PaymentEvent[];
  deliveries: PaymentEvent[];
  injected?: InjectedFraud;
}

export function fraudRun(runId: string, seed: number, payments: number, inject: boolean): FraudRun {
  const sim = simulatePayments({ payments, seed, duplicateRate: 0.1, runId, shuffle: true });
  if (!inject) return { events: sim.events, deliveries: sim.deliveries };
  const withFraud = injectFraud(sim, { seed, runId });
  return { events: withFraud.events, deliveries: withFraud.deliveries, injected: withFraud.injected };
}

/** What the edges would have produced for these deliveries (duplicates included). */
export function edgeRecords(config: Config, topics: TopicSet, deliveries: readonly PaymentEvent[]): TopicRecord[] {
  const tokenizer = tokenizerFromConfig(config);
  const out: TopicRecord[] = [];
  for (const e of deliveries) {
    const receivedAt = new Date().toISOString();
    const fact = factMessage(e, { receivedAt }, topics.paymentEvents, CURRENT_SCHEMAS['payment-fact']);
    if (channelOf(e) === 'gateway') {
      const gateway = `gw-${e.region}`;
      const raw = tokenizer.tokenize({ seq: out.length + 1, ...encodeGatewayEvent(e, gateway) }).payload;
      out.push({
        topic: topics.rawGateways,
        key: e.paymentId,
        value: JSON.stringify(raw),
        headers: { ...fact.headers, [HEADERS.schema]: `gateway-event@${CURRENT_SCHEMAS['gateway-event'].version}` },
      });
    }
    out.push({ topic: fact.topic, key: fact.key, value: fact.value, headers: fact.headers });
  }
  return out;
}

export async function produceInBatches(producer: Producer, records: readonly TopicRecord[], size = 500): Promise<void> {
  for (let i = 0; i < records.length; i += size) await produce(producer, records.slice(i, i + size));
}

/** Whether the store has counted every partition of the consumer's topics up to its end. */
export async function caughtUp(pool: Pool, admin: KafkaAdmin, group: string, topics: TopicSet): Promise<true | string> {
  const states = new Map(
    (await readPartitionStates(pool, group)).map((s) => [`${s.topic}[${s.partition}]`, s.nextOffset]),
  );
  let behind = 0n;
  for (const topic of [topics.rawGateways, topics.paymentEvents]) {
    for (const end of await topicEnds(admin, topic)) {
      const at = states.get(`${topic}[${end.partition}]`) ?? 0n;
      if (BigInt(end.offset) > at) behind += BigInt(end.offset) - at;
    }
  }
  return behind === 0n || `${behind} records not yet counted`;
}

/** Differences between the store and the truth of `events` (empty = exact). */
export async function differencesFromTruth(pool: Pool, events: readonly PaymentEvent[]): Promise<string[]> {
  const truth = fraudTruth(events, loadConfig().FRAUD_SMALL_AMOUNT_MINOR);
  return compareWithTruth(truth, await readWindowCounts(pool, COUNTED_VIEWS));
}

/** Empties the risk store (as its owner): each test compares against its own runs only. */
export async function emptyRiskStore(owner: Pool): Promise<void> {
  await owner.query(
    `truncate risk.window_counts, risk.window_member_sets, risk.merchant_cards, risk.amount_stats, risk.seen_events,
              risk.alerts, risk.consumed_offsets, risk.freshness`,
  );
}

export function startFraudViews(env: NodeJS.ProcessEnv): PipelineProcess {
  return startPipelineProcess(
    `fraud-views-${env.FRAUD_VIEWS_GROUP}`,
    'src/streams/fraud-views/fraud-views-main.ts',
    env,
  );
}

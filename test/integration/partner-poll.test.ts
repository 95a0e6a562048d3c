import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { Consumer } from 'kafkajs';
import { partnerIdempotencyKey } from '../../src/contracts/envelope';
import type { FactOf } from '../../src/contracts/payment-event';
import { tokenizerFromConfig } from '../../src/ingest/tokenize';
import { scanValue } from '../../src/quality/pii-scanner';
import { countBillableActions } from '../../src/ops/billable-actions';
import { splitByChannel } from '../../src/simulator/channels';
import {
  type PartnerApiSimulator,
  createPartnerApiSimulator,
  partnerRecordId,
  toPartnerSettlement,
} from '../../src/simulator/partner-api';
import { simulatePayments } from '../../src/simulator/payments';
import {
  ensurePartnerPoll,
  pausePartnerPoll,
  pollPartnerNow,
  resetPartnerPollCursor,
} from '../../src/starters/partner-poll';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { createKafka, ensureTopics } from '../../src/streams/kafka';
import { type PartnerPollState, partnerPollStateQuery, partnerPollWorkflowId } from '../../src/workflows/partner-poll';
import { waitFor, within } from '../support/pipeline';
import { testKafka, topicEnds } from '../support/kafka';
import { config, requireServices, uniqueId, topics as TOPICS } from '../support/stack';

// PartnerPoll against the simulated partner API with the ingest worker as a real child process:
// kill -9 it while a page is produced but not yet reported, publish more, restart it, and check that
// every partner record reached Kafka (no gap), repeats stay within the re-run page, the cursor only
// moved forward, a 429 was honoured, and the workflow continued-as-new.

const WORKER = 'src/workers/ingest-worker-main.ts';
const PAGE_LIMIT = 5;
const PAGES_BEFORE_CONTINUE = 4;
const RUN_TIMEOUT_MS = 75_000;
const EventType = temporal.api.enums.v1.EventType;

interface Seen {
  key: string;
  value: string;
  headers: Record<string, string>;
}

describe('PartnerPoll: a durable partner cursor across a worker kill -9', () => {
  const kafka = createKafka(config, 'partner-poll-test');
  const admin = kafka.admin();
  let consumer: Consumer | undefined;
  let connection: Connection | undefined;
  let client: Client;
  let sim: PartnerApiSimulator | undefined;
  let handle: WorkflowHandle | undefined;
  const processes: PipelineProcess[] = [];
  const stopWorkers = async (): Promise<void> => {
    await Promise.allSettled(processes.splice(0).map((p) => within(p.stop(), 30_000, p.name).catch(() => p.kill9())));
  };

  before(async () => {
    await requireServices('kafka', 'temporal', 'postgres');
    await admin.connect();
    await ensureTopics(admin, config);
    connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
    client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  });

  after(async () => {
    await handle?.terminate('partner-poll test done').catch(() => undefined); // it would poll forever
    await stopWorkers();
    await consumer?.disconnect();
    await admin.disconnect();
    await sim?.close();
    await connection?.close();
  });

  /** Everything the run's partner puts on the three topics, read live from the offsets before the run. */
  async function capture(partnerId: string): Promise<Record<string, Seen[]>> {
    const topics = [TOPICS.paymentEvents, TOPICS.rawPartnerApi, TOPICS.quarantine];
    const seen: Record<string, Seen[]> = Object.fromEntries(topics.map((t) => [t, []]));
    const starts = await Promise.all(topics.map(async (topic) => ({ topic, offsets: await topicEnds(admin, topic) })));
    consumer = testKafka('partner-poll-test').consumer({ groupId: uniqueId('partner-poll-test') });
    await consumer.connect();
    await consumer.subscribe({ topics, fromBeginning: false });
    const prefix = `partner:${partnerId}:`;
    await consumer.run({
      eachMessage: async ({ topic, message }) => {
        const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]));
        const key = headers['idempotency-key'] ?? '';
        if (key.startsWith(prefix)) seen[topic]!.push({ key, value: String(message.value), headers });
      },
    });
    for (const { topic, offsets } of starts)
      for (const o of offsets) consumer.seek({ topic, partition: o.partition, offset: o.offset });
    return seen;
  }

  it('polls every record exactly-by-key through a kill -9, honours 429 and continues-as-new', async (t) => {
    const began = Date.now();
    const deadline = began + RUN_TIMEOUT_MS;
    const partnerId = uniqueId('pp');
    const token = `ptk_${partnerId}`;
    sim = createPartnerApiSimulator({ tokens: [token], rateLimit: { burst: 3, perSecond: 1 }, seed: 4 });
    const url = await sim.listen(0);

    // Truth: the simulator's settled facts (redeliveries included), in two batches, plus one broken record.
    const facts = splitByChannel(
      simulatePayments({ payments: 45, seed: 17, duplicateRate: 0.25, runId: partnerId }).deliveries,
    )['partner-api'] as FactOf<'settled'>[];
    const firstBatch = facts.slice(0, Math.ceil(facts.length * 0.6));
    const secondBatch = facts.slice(firstBatch.length);
    const broken = { ...toPartnerSettlement(facts[0]!), id: 'stl_broken_1', gross: { value: 12.5, currency: 'EUR' } };
    // The key is made from the record id as the edge publishes it: about one 24-hex id in 650 holds a Luhn-valid
    // 12–19 digit run, which the edge tokenizes like any card number (deterministically, so the key stays unique).
    const tokenizer = tokenizerFromConfig(config);
    const edgeId = (id: string): string => tokenizer.tokenize(id).payload as string;
    const deliveries = new Map<string, number>();
    for (const f of facts) {
      const key = partnerIdempotencyKey(partnerId, edgeId(partnerRecordId(f)));
      deliveries.set(key, (deliveries.get(key) ?? 0) + 1);
    }
    assert.ok(deliveries.size < facts.length, 'the seed gave no redelivered settlement');
    sim.publish(firstBatch.slice(0, 7));
    sim.publishRecords([broken]);
    sim.publish(firstBatch.slice(7));

    const seen = await capture(partnerId);
    const partners = JSON.stringify([{ id: partnerId, url, token, region: 'eu-west' }]);
    const start = async (name: string, env: NodeJS.ProcessEnv): Promise<PipelineProcess> => {
      const p = startPipelineProcess(name, WORKER, { PARTNER_APIS: partners, ...env });
      processes.push(p);
      await within(p.ready, 60_000, `${name} to be ready (log: ${p.logFile})`);
      return p;
    };
    // Each page is held 1.5 s after it was produced, so the kill lands on a produced-but-unreported page.
    const doomed = await start('partner-poll-worker-doomed', { PARTNER_POLL_FAULT_PAGE_DELAY_MS: '1500' });
    const { workflowId, started } = await ensurePartnerPoll(client, partnerId, {
      pageLimit: PAGE_LIMIT,
      idleMs: 300,
      pagesBeforeContinue: PAGES_BEFORE_CONTINUE,
      historyEventsBeforeContinue: 8_000,
      pageTimeoutMs: 5_000,
    });
    assert.ok(started);
    handle = client.workflow.getHandle(workflowId);

    // The query state, sampled all along: its cursor must only move forward (across runs too).
    const samples: { offset: number; pages: number; runs: number }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const state = await Promise.race([
          handle.query(partnerPollStateQuery).catch(() => undefined),
          new Promise<undefined>((r) => setTimeout(() => r(undefined), 2_000)),
        ]);
        if (state) samples.push({ offset: sim.cursorOffset(state.cursor), pages: state.pages, runs: state.runs });
        await new Promise((r) => setTimeout(r, 200));
      }
    })();

    const stopSampling = async (): Promise<void> => {
      sampling = false;
      await sampler;
    };
    t.after(stopSampling); // a failed wait must not leave the sampler running
    const raw = seen[TOPICS.rawPartnerApi]!;
    await waitFor(
      'two pages produced before the kill',
      deadline,
      async () => raw.length >= 2 * PAGE_LIMIT || `raw records on Kafka ${raw.length}`,
      { intervalMs: 25 },
    );
    const atKill = raw.length;
    await doomed.kill9();
    assert.equal(doomed.child.signalCode, 'SIGKILL');
    assert.ok(atKill < firstBatch.length + 1, 'the kill came too late: the first batch was already through');

    sim.publish(secondBatch);
    sim.failNext(2); // the partner is down for two requests too: exponential backoff
    await start('partner-poll-worker-fresh', {});

    const events = seen[TOPICS.paymentEvents]!;
    let state: PartnerPollState | undefined;
    await waitFor(
      'every partner record on the payment events topic and the poll caught up',
      deadline,
      async () => {
        state = await handle!.query(partnerPollStateQuery);
        const distinct = new Set(events.map((e) => e.key)).size;
        const atEnd = sim!.cursorOffset(state.cursor) === sim!.size() && state.caughtUp;
        return (
          (distinct >= deliveries.size && atEnd) ||
          `distinct facts ${distinct}/${deliveries.size}, cursor at ${sim!.cursorOffset(state.cursor)}/${sim!.size()}`
        );
      },
      { intervalMs: 250 },
    );
    await stopSampling();

    // No gap, nothing foreign: the distinct keys are exactly the truth's.
    assert.deepEqual(new Set(events.map((e) => e.key)), new Set(deliveries.keys()));
    // Repeats only from the page in flight at the kill: at most one page's records, each at most once more.
    const published = new Map<string, number>();
    for (const e of events) published.set(e.key, (published.get(e.key) ?? 0) + 1);
    for (const [key, n] of published) assert.ok(n <= 2 * deliveries.get(key)!, `${key} published ${n} times`);
    const repeats = events.length - facts.length;
    assert.ok(repeats >= 0 && repeats <= PAGE_LIMIT, `${repeats} repeated facts: more than one page re-ran`);
    assert.ok(repeats > 0, 'no page was produced twice: the kill missed the produced-but-unreported window');
    for (const e of events) assert.equal(e.headers.source, 'partner');

    // Raw records: every record, tokenized, with the schema header; the broken one is quarantined with its reason.
    assert.equal(new Set(raw.map((r) => r.key)).size, deliveries.size + 1);
    assert.deepEqual(scanValue(raw.map((r) => JSON.parse(r.value) as unknown)), [], 'raw PII on Kafka');
    assert.ok(raw.every((r) => r.headers.schema === 'partner-settlement@1' && r.headers.source === 'partner'));
    assert.match(raw[0]!.value, /"holder_name":"tok_name_1_/);
    const quarantined = seen[TOPICS.quarantine]!;
    assert.ok(quarantined.length >= 1);
    assert.ok(quarantined.every((q) => q.key === partnerIdempotencyKey(partnerId, 'stl_broken_1')));
    assert.match(quarantined[0]!.headers['quarantine-reason']!, /^gross\.value: amount must be integer minor units/);

    // The cursor in the query state only moved forward, across the kill and every continue-as-new.
    assert.ok(samples.length >= 5, `only ${samples.length} state samples`);
    for (let i = 1; i < samples.length; i++) {
      assert.ok(
        samples[i]!.offset >= samples[i - 1]!.offset,
        `cursor moved back: ${JSON.stringify(samples.slice(i - 1, i + 1))}`,
      );
      assert.ok(samples[i]!.pages >= samples[i - 1]!.pages);
    }
    assert.equal(state!.records, sim.size());
    assert.equal(state!.quarantined, 1);

    // 429s were honoured: the simulator saw no request before its Retry-After, and the history shows the retry.
    assert.ok(sim.counters.throttled > 0, 'the partner never throttled: the test did not exercise 429');
    assert.equal(sim.counters.earlyRetries, 0, 'a request came before Retry-After had passed');
    assert.ok(sim.counters.honouredRetries > 0);
    assert.ok(state!.runs > 1, 'no continue-as-new happened');
    const runs: string[] = [];
    for await (const w of client.workflow.list({ query: `WorkflowId = "${partnerPollWorkflowId(partnerId)}"` }))
      runs.push(w.runId);
    const lastFailures: string[] = [];
    let actions = 0;
    for (const runId of runs) {
      const history = await client.workflow.getHandle(partnerPollWorkflowId(partnerId), runId).fetchHistory();
      actions += countBillableActions(history).total;
      for (const e of history.events ?? []) {
        if (e.eventType !== EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED) continue;
        const type = e.activityTaskStartedEventAttributes?.lastFailure?.applicationFailureInfo?.type;
        if (type) lastFailures.push(type);
      }
    }
    assert.ok(runs.length > 1, `one run only (${runs.length})`);
    assert.ok(lastFailures.includes('PartnerRateLimited'), `no page retried after a 429: ${lastFailures.join(', ')}`);
    assert.equal(sim.counters.failed, 2, 'the injected 500s were not all served');

    t.diagnostic(
      `${facts.length} records (${deliveries.size} distinct) + 1 broken; killed at ${atKill} raw records; ` +
        `${repeats} repeated facts; ${state!.pages} pages over ${runs.length} runs; ` +
        `${sim.counters.throttled} throttled, ${sim.counters.failed} failed; retried after ${lastFailures.join(',')}; ` +
        `${actions} billable actions ` +
        `(${(actions / state!.pages).toFixed(2)} per page); ${((Date.now() - began) / 1000).toFixed(1)} s`,
    );
  });

  it('obeys the ops commands: poll now, pause, resume, reset the cursor', async () => {
    const deadline = Date.now() + RUN_TIMEOUT_MS;
    const partnerId = uniqueId('ppops');
    const token = `ptk_${partnerId}`;
    const opsSim = createPartnerApiSimulator({ tokens: [token], seed: 5 });
    const url = await opsSim.listen(0);
    const settled = splitByChannel(
      simulatePayments({ payments: 30, seed: 23, duplicateRate: 0, runId: partnerId }).deliveries,
    )['partner-api'] as FactOf<'settled'>[];
    const third = Math.ceil(settled.length / 3);
    opsSim.publish(settled.slice(0, third));
    // One ingest task queue: a worker left by the test before would take this poll's pages without knowing its partner.
    await stopWorkers();
    const worker = startPipelineProcess('partner-poll-ops-worker', WORKER, {
      PARTNER_APIS: JSON.stringify([{ id: partnerId, url, token, region: 'eu-west' }]),
    });
    processes.push(worker);
    // An idle wait far longer than the test: only `now`, `pause` and a cursor reset can end it.
    const { workflowId } = await ensurePartnerPoll(client, partnerId, {
      pageLimit: PAGE_LIMIT,
      idleMs: 10 * 60_000,
      pagesBeforeContinue: 1_000,
      historyEventsBeforeContinue: 8_000,
      pageTimeoutMs: 5_000,
    });
    const ops = client.workflow.getHandle(workflowId);
    const state = (): Promise<PartnerPollState> => ops.query(partnerPollStateQuery);
    const recordsReach = (what: string, records: number): Promise<void> =>
      waitFor(what, deadline, async () => {
        const s = await state();
        return (s.records === records && s.caughtUp) || `records ${s.records}/${records}, caught up ${s.caughtUp}`;
      });
    try {
      await within(worker.ready, 60_000, `the ingest worker to be ready (log: ${worker.logFile})`);
      await recordsReach('the first records, then the idle wait', opsSim.size());

      opsSim.publish(settled.slice(third, 2 * third));
      await pollPartnerNow(client, partnerId);
      await recordsReach('the records published during the idle wait, polled now', opsSim.size());

      await pausePartnerPoll(client, partnerId, true);
      await waitFor('the pause', deadline, async () => (await state()).paused || 'not paused');
      const beforePause = opsSim.size();
      opsSim.publish(settled.slice(2 * third));
      await pollPartnerNow(client, partnerId);
      await new Promise((r) => setTimeout(r, 1_500));
      assert.equal((await state()).records, beforePause, 'a paused poll read a page');

      await pausePartnerPoll(client, partnerId, false);
      await recordsReach('the records published while paused, after resume', opsSim.size());

      const reset = { cursor: '', actor: 'ops-test', reason: 're-ingest from the start' };
      await assert.rejects(resetPartnerPollCursor(client, partnerId, { ...reset, reason: ' ' }), /actor and a reason/);
      await resetPartnerPollCursor(client, partnerId, reset);
      await recordsReach('the feed read again from the start', 2 * opsSim.size());
      assert.deepEqual((await state()).lastCursorReset, reset);
    } finally {
      await ops.terminate('partner-poll ops test done');
      await opsSim.close();
    }
  });
});

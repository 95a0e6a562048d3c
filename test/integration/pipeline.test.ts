import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { repoRoot } from '../../src/stack/service';
import { createKafka, createProducer } from '../../src/streams/kafka';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { runDemo } from '../support/demo';
import { testKafka } from '../support/kafka';
import { config, requireServices, uniqueId, topics as TOPICS } from '../support/stack';

// The whole path with real processes: simulator → Kafka → router → Temporal → worker → Postgres.
describe('pipeline end to end', () => {
  let stuckFromDemo: string[] = [];
  before(() => requireServices('postgres', 'kafka', 'temporal', 's3', 'snowflake'));

  it('`npm run demo -- --duplicate-rate 1 --shuffle --stuck 2 --json` posts every fact exactly once and flags the stuck', () => {
    const summary = runDemo<{
      payments: number;
      eventsProduced: number;
      uniqueEvents: number;
      paymentsClosed: number;
      anomalies: number;
      actionsPerPayment: number;
      actionsByKind: Record<string, number>;
      stuck: { expected: number; found: number; paymentIds: string[] };
      ledger: { entries: number; unbalanced: number; duplicatePostings: number; matchesSimulator: boolean };
      temporal: { uiUrl: string };
    }>(
      [
        '--payments',
        '40',
        '--seed',
        '5',
        '--duplicate-rate',
        '1',
        '--shuffle',
        '--stuck',
        '2',
        '--captured-sla-s',
        '2',
      ],
      300_000,
    );
    assert.equal(summary.payments, 40);
    assert.equal(summary.eventsProduced, 2 * summary.uniqueEvents);
    assert.equal(summary.paymentsClosed, 38);
    assert.deepEqual(summary.stuck, { ...summary.stuck, expected: 2, found: 2 });
    assert.equal(summary.anomalies, 0);
    assert.ok(summary.ledger.entries > 80, `only ${summary.ledger.entries} entries`);
    assert.equal(summary.ledger.unbalanced, 0);
    assert.equal(summary.ledger.duplicatePostings, 0);
    assert.equal(summary.ledger.matchesSimulator, true);
    // Duplicates never reach Temporal (the inbox drops them): every fact is signalled at most once, and a
    // payment's `created` never is, so signals stay below unique facts minus payments. With every event
    // delivered twice, signalled duplicates would double the signals and break this bound.
    const signals =
      (summary.actionsByKind.signal_workflow ?? 0) + (summary.actionsByKind.signal_workflow_with_start ?? 0);
    assert.ok(signals > 0, 'no signal was counted');
    assert.ok(
      signals <= summary.uniqueEvents - summary.payments,
      `${signals} signals for ${summary.uniqueEvents} unique facts of ${summary.payments}+ payments`,
    );
    // The injected fraud payments (created then refused) cost fewer actions than a full lifecycle.
    assert.ok(
      summary.actionsPerPayment > 1.5 && summary.actionsPerPayment < 8,
      `actions per payment ${summary.actionsPerPayment}`,
    );
    assert.equal(summary.temporal.uiUrl, config.TEMPORAL_UI_URL);
    stuckFromDemo = summary.stuck.paymentIds;
  });

  it('ops resolve a stuck payment from the demo with the starter script, and it leaves the STUCK list', async () => {
    assert.equal(stuckFromDemo.length, 2, 'the demo test above left two stuck payments');
    const worker = startPipelineProcess('payment-worker-ops-test', 'src/workers/payment-worker-main.ts');
    try {
      await worker.ready;
      const ops = (...args: string[]): string => {
        const r = spawnSync('npm', ['run', '--silent', 'payment', '--', ...args, '--json'], {
          cwd: repoRoot,
          encoding: 'utf8',
          timeout: 60_000,
        });
        assert.equal(r.status, 0, `payment ${args.join(' ')} failed:\n${r.stderr}`);
        return r.stdout;
      };
      const [id] = stuckFromDemo;
      const stuckBefore = (JSON.parse(ops('stuck')) as { paymentId: string }[]).map((r) => r.paymentId);
      assert.ok(stuckBefore.includes(id!), `${id} is not listed as STUCK`);
      const resolved = JSON.parse(
        ops('resolve', id!, '--reason', 'settlement lost; written off', '--actor', 'ci-ops', '--close'),
      ) as {
        closedBy: string;
      };
      assert.equal(resolved.closedBy, 'ci-ops: settlement lost; written off');
      const stuckAfter = (JSON.parse(ops('stuck')) as { paymentId: string }[]).map((r) => r.paymentId);
      assert.ok(!stuckAfter.includes(id!), `${id} is still listed as STUCK`);
      assert.ok(stuckAfter.includes(stuckFromDemo[1]!), 'the other stuck payment is untouched');
    } finally {
      await worker.stop();
    }
  });

  describe('router quarantine', () => {
    let router: PipelineProcess;
    const kafka = createKafka(config, 'pipeline-test');
    const producer = createProducer(kafka);
    const consumer = testKafka('pipeline-test').consumer({ groupId: uniqueId('quarantine-reader') });
    before(async () => {
      router = startPipelineProcess('payment-router-test', 'src/streams/payment-router-main.ts');
      await router.ready;
      await Promise.all([producer.connect(), consumer.connect()]);
    });
    after(async () => {
      await router.stop();
      await Promise.all([producer.disconnect(), consumer.disconnect()]);
    });

    it('sends an invalid event to the quarantine topic with its reason, never drops it', async () => {
      const marker = uniqueId('bad');
      await producer.send({
        topic: TOPICS.paymentEvents,
        acks: -1,
        messages: [
          {
            key: marker,
            value: JSON.stringify({
              version: 1,
              type: 'captured',
              paymentId: marker,
              captureId: 'c1',
              amountMinor: 12.5,
              currency: 'eur',
            }),
          },
        ],
      });
      await consumer.subscribe({ topic: TOPICS.quarantine, fromBeginning: true });
      const found = await new Promise<{ reason: string; value: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('quarantined event not seen within 30 s')), 30_000);
        void consumer.run({
          eachMessage: async ({ message }) => {
            if (message.key?.toString() !== marker) return;
            clearTimeout(timer);
            resolve({ reason: String(message.headers?.['quarantine-reason']), value: String(message.value) });
          },
        });
      });
      assert.match(found.reason, /amountMinor: amount must be integer minor units/);
      assert.match(found.reason, /currency/);
      assert.match(found.value, new RegExp(marker));
    });
  });
});

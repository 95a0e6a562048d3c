import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dataDir } from '../../src/stack/service';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { createKafka, createProducer } from '../../src/streams/kafka';
import { testKafka } from '../support/kafka';
import { waitFor, within } from '../support/pipeline';
import { config, requireServices, uniqueId } from '../support/stack';

// The one consumer runner (src/streams/consumer-runner.ts) in a real process against the real Kafka:
// SIGTERM in the middle of a batch finishes it, commits it and leaves the group (exit 0); a handler bug
// crashes the process non-zero with the group, topic and failing batch in its log.

const CHILD = 'test/support/consumer-runner-child.ts';
const MESSAGES = 20;

interface LogLine {
  msg: string;
  [field: string]: unknown;
}

/** A started process and where its log file stood before it (the file is appended to across runs). */
type Child = PipelineProcess & { logFrom: number };

const logLines = (p: Child): LogLine[] =>
  readFileSync(p.logFile)
    .subarray(p.logFrom)
    .toString('utf8')
    .split('\n')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as LogLine];
      } catch {
        return [];
      }
    })
    .filter((l) => l.component === 'consumer-runner-child');

describe('consumer runner: SIGTERM and crash of a real consumer process', { timeout: 180_000 }, () => {
  const kafka = createKafka(config, 'consumer-runner-test');
  const admin = kafka.admin();
  const producer = createProducer(kafka);
  const topics: string[] = [];
  const processes: Child[] = [];

  /** A topic of its own (one partition, so one batch holds everything), filled with `values`. */
  async function topicWith(values: string[]): Promise<string> {
    const topic = `paylink.test.${uniqueId('runner')}`;
    topics.push(topic);
    await admin.createTopics({
      topics: [{ topic, numPartitions: 1, replicationFactor: config.KAFKA_REPLICATION_FACTOR }],
      waitForLeaders: true,
    });
    await producer.send({ topic, acks: -1, messages: values.map((value, i) => ({ key: `k${i}`, value })) });
    return topic;
  }

  function start(name: string, env: Record<string, string>): Child {
    const file = join(dataDir, 'processes', `${name}.log`);
    const logFrom = existsSync(file) ? statSync(file).size : 0;
    const p = Object.assign(startPipelineProcess(name, CHILD, env), { logFrom });
    processes.push(p);
    return p;
  }

  before(async () => {
    await requireServices('kafka');
    await Promise.all([admin.connect(), producer.connect()]);
  });

  after(async () => {
    await Promise.allSettled(processes.map((p) => p.kill9()));
    const cleanup = testKafka('consumer-runner-test').admin();
    await cleanup.connect();
    await cleanup.deleteTopics({ topics }).catch(() => undefined);
    await cleanup.disconnect();
    await Promise.allSettled([producer.disconnect(), admin.disconnect()]);
  });

  it('on SIGTERM finishes the batch in flight, commits it, leaves the group and exits 0', async () => {
    const topic = await topicWith(Array.from({ length: MESSAGES }, (_, i) => `m${i}`));
    const group = uniqueId('runner-sigterm');
    const p = start('runner-sigterm', {
      RUNNER_TEST_TOPIC: topic,
      RUNNER_TEST_GROUP: group,
      RUNNER_TEST_BATCH_MS: '3000',
    });
    await within(p.ready, 60_000, `the consumer to join (log: ${p.logFile})`);
    await waitFor(
      'a batch to start',
      Date.now() + 30_000,
      async () => logLines(p).some((l) => l.msg === 'batch started') || 'no batch yet',
    );
    await within(p.stop(), 30_000, 'the consumer to stop after SIGTERM');

    assert.equal(p.child.exitCode, 0, `exit code (log: ${p.logFile})`);
    const msgs = logLines(p).map((l) => l.msg);
    const stopping = msgs.indexOf('stopping: finishing the batch in flight, then leaving the group');
    assert.ok(stopping >= 0, `no stopping line: ${msgs.join(' | ')}`);
    assert.ok(msgs.indexOf('batch finished') > stopping, `the batch did not finish after SIGTERM: ${msgs.join(' | ')}`);
    assert.ok(msgs.indexOf('stopped') > msgs.indexOf('batch finished'), msgs.join(' | '));

    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    assert.deepEqual(
      committed?.partitions.map((c) => c.offset),
      [String(MESSAGES)],
      'the finished batch was committed',
    );
    const { groups } = await admin.describeGroups([group]);
    assert.deepEqual(groups[0]?.members, [], 'the member left the group (it did not wait for its session to expire)');
    await admin.deleteGroups([group]).catch(() => undefined);
  });

  it('on a handler bug exits non-zero, logging the group, topic and failing batch; nothing is committed', async () => {
    const topic = await topicWith(['m0', 'crash', 'm2']);
    const group = uniqueId('runner-crash');
    const p = start('runner-crash', { RUNNER_TEST_TOPIC: topic, RUNNER_TEST_GROUP: group });
    const exitCode = await within(
      new Promise<number | null>((resolve) => p.child.once('exit', (code) => resolve(code))),
      60_000,
      `the consumer to crash (log: ${p.logFile})`,
    );
    assert.equal(exitCode, 1);
    const failed = logLines(p).find((l) => l.msg === 'failed');
    assert.ok(failed, `no failure line in ${p.logFile}`);
    assert.equal(failed.group, group);
    assert.deepEqual(failed.topics, [topic]);
    assert.match(String(failed.error), /cannot handle the message at 0-2/);
    assert.deepEqual(failed.batch, {
      topic,
      partition: 0,
      offsets: '0-2',
      error: 'cannot handle the message at 0-2',
    });
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    assert.deepEqual(
      committed?.partitions.map((c) => c.offset),
      ['-1'],
      'a failed batch is not committed',
    );
    await admin.deleteGroups([group]).catch(() => undefined);
  });
});

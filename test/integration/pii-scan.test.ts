import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import { scanStores } from '../../src/ops/pii-scan';
import { dataDir } from '../../src/stack/service';
import { createPool } from '../../src/stores/postgres';
import { createS3Client } from '../../src/stores/s3';
import { createKafka, createProducer } from '../../src/streams/kafka';
import { testKafka } from '../support/kafka';
import { config, requireServices, uniqueId } from '../support/stack';

// The scanner must find planted raw PAN/PII in every store and every part it covers (so a clean
// report means something), in the shapes the tokenizer once missed — a JSON-number PAN beside a
// currency, a PAN glued inside an id, national-format phones — as if tokenization were switched
// off; and apart from those canaries the stack must hold none.
describe('PII scanner over the real stores', () => {
  const id = uniqueId('canary').replace(/-/g, '_');
  const topic = `paylink.test.${id}`;
  const table = `public.pii_${id}`;
  const objectKey = `raw/pii-canary/${id}.ndjson.gz`;
  // The id carries no PII: the Temporal server writes workflow ids to its own log. workflowTexts' unit
  // test covers ids; here the payloads, which the server keeps but does not log.
  const workflowId = `pii-canary/${id}`;
  const logFile = join(dataDir, 'processes', `pii-${id}.log`);
  const kafka = createKafka(config, 'pii-canary');
  // Canaries are planted as the owner: the application role may not create tables.
  const pool = createPool(config, 2, 'MIGRATION_DATABASE_URL');
  const s3 = createS3Client(config);
  let temporal: { connection: Connection; client: Client; runId: string } | undefined;

  before(async () => {
    await requireServices('kafka', 'postgres', 's3', 'snowflake', 'temporal');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [{ topic, numPartitions: 1, replicationFactor: config.KAFKA_REPLICATION_FACTOR }],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const producer = createProducer(kafka);
    await producer.connect();
    await producer.send({
      topic,
      acks: -1,
      messages: [
        { key: 'k', value: JSON.stringify({ card: '4111 1111 1111 1111' }) },
        { key: 'evt_5555555555554444_x', value: '{}' },
        { key: 'k2', value: '{}', headers: { 'idempotency-key': 'webhook:p:INV6011111111111117' } },
        { key: 'k3', value: '{"amount":{"value":4242424242424242,"currency":"EUR"}}' },
        { key: 'k4', value: JSON.stringify({ note: 'call (415) 555-2671' }) },
      ],
    });
    await producer.disconnect();
    await pool.query(`create table ${table} (note text, contact text)`);
    await pool.query(`insert into ${table} values ('refund to DE89370400440532013000 please', 'tel 020 7946 0958')`);
    await s3.send(
      new PutObjectCommand({
        Bucket: config.S3_BUCKET,
        Key: objectKey,
        Body: gzipSync(`${JSON.stringify({ mobile: '98765 43210' })}\n`),
      }),
    );
    const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    // A workflow nobody runs (no worker polls its queue): only its id and input are kept.
    const handle = await client.workflow.start('piiCanary', {
      taskQueue: `pii-canary-${id}`,
      workflowId,
      args: [{ shopperEmail: 'jane.doe@example.com' }],
      memo: { reference: 'INV4000056655665556' },
    });
    temporal = { connection, client, runId: handle.firstExecutionRunId };
    mkdirSync(join(dataDir, 'processes'), { recursive: true });
    writeFileSync(logFile, '{"msg":"customer jane.doe@example.com called"}\n');
  });
  // Deleting a topic or a workflow is asynchronous: wait until they are gone, so the next scan (the
  // demo's, in the pipeline test) does not meet a canary.
  const until = async (what: string, gone: () => Promise<boolean>): Promise<void> => {
    for (const deadline = Date.now() + 60_000; !(await gone());) {
      if (Date.now() > deadline) throw new Error(`${what} still there after 60 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  after(async () => {
    const admin = testKafka('pii-canary').admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] });
    await until(`topic ${topic}`, async () => !(await admin.listTopics()).includes(topic));
    await admin.disconnect();
    await pool.query(`drop table if exists ${table}`);
    await pool.end();
    await s3.send(new DeleteObjectCommand({ Bucket: config.S3_BUCKET, Key: objectKey }));
    s3.destroy();
    if (temporal) {
      await temporal.client.workflow.getHandle(workflowId).terminate('pii canary');
      await temporal.connection.workflowService.deleteWorkflowExecution({
        namespace: config.TEMPORAL_NAMESPACE,
        workflowExecution: { workflowId, runId: temporal.runId },
      });
      const { client } = temporal;
      await until(`workflow ${workflowId}`, async () => {
        for await (const _ of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) return false;
        return true;
      });
      await temporal.connection.close();
    }
    rmSync(logFile, { force: true });
  });

  it('finds each canary at its exact place, masked, and nothing else', async () => {
    const report = await scanStores(config);
    const canaries = report.leaks.filter((l) => l.where.includes(id) || l.where.includes(topic));
    const found = canaries.map((l) => `${l.store}:${l.kind}:${l.where.replace(id, '<id>')}`).sort();
    assert.deepEqual(found, [
      `kafka:pan:paylink.test.<id>/0@0 value`,
      `kafka:pan:paylink.test.<id>/0@1 key`,
      `kafka:pan:paylink.test.<id>/0@2 header idempotency-key`,
      `kafka:pan:paylink.test.<id>/0@3 value`,
      `kafka:phone:paylink.test.<id>/0@4 value`,
      `logs:email:${logFile.replace(id, '<id>')}:1`,
      `postgres:iban:public.pii_<id>.note (row 1)`,
      `postgres:phone:public.pii_<id>.contact (row 1)`,
      `s3:phone:s3://${config.S3_BUCKET}/raw/pii-canary/<id>.ndjson.gz`,
      `temporal:email:workflow pii-canary/<id> run ${temporal!.runId} event 1 start input`,
      `temporal:pan:workflow pii-canary/<id> run ${temporal!.runId} event 1 memo`,
    ]);
    assert.ok(
      canaries.every((l) => !/4111 1111|5555555555554444|DE8937|jane\.doe|555-2671|7946|43210/.test(l.sample)),
      'samples are masked',
    );
    const others = report.leaks.filter((l) => !canaries.includes(l));
    assert.deepEqual(others, [], 'raw PAN/PII outside the edge and the vault');
    for (const store of ['kafka', 'postgres', 'logs', 's3', 'temporal'] as const) {
      assert.ok(report.scanned[store] > 0, `${store} was scanned`);
    }
  });
});

import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { scanStores } from '../../src/ops/pii-scan';
import { dataDir } from '../../src/stack/service';
import { createPool } from '../../src/stores/postgres';
import { createKafka, createProducer } from '../../src/streams/kafka';
import { config, requireServices, uniqueId } from '../support/stack';

// The scanner must find planted raw PAN/PII in every store it covers (so a clean report means
// something), and apart from those canaries the stack must hold none.
describe('PII scanner over the real stores', () => {
  const id = uniqueId('canary').replace(/-/g, '_');
  const topic = `paylink.test.${id}`;
  const table = `public.pii_${id}`;
  const logFile = join(dataDir, 'processes', `pii-${id}.log`);
  const kafka = createKafka(config, 'pii-canary');
  const pool = createPool(config, 2);

  before(async () => {
    await requireServices('kafka', 'postgres', 's3', 'snowflake');
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
      messages: [{ key: 'k', value: JSON.stringify({ card: '4111 1111 1111 1111' }) }],
    });
    await producer.disconnect();
    await pool.query(`create table ${table} (note text)`);
    await pool.query(`insert into ${table} values ('refund to DE89370400440532013000 please')`);
    mkdirSync(join(dataDir, 'processes'), { recursive: true });
    writeFileSync(logFile, '{"msg":"customer jane.doe@example.com called"}\n');
  });
  after(async () => {
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] });
    await admin.disconnect();
    await pool.query(`drop table if exists ${table}`);
    await pool.end();
    rmSync(logFile, { force: true });
  });

  it('finds the canaries in Kafka, Postgres and logs, and nothing else', async () => {
    const report = await scanStores(config);
    const canaries = report.leaks.filter((l) => l.where.includes(id) || l.where.includes(topic));
    assert.deepEqual(canaries.map((l) => `${l.store}:${l.kind}`).sort(), ['kafka:pan', 'logs:email', 'postgres:iban']);
    assert.ok(
      canaries.every((l) => !/4111 1111|DE8937|jane\.doe/.test(l.sample)),
      'samples are masked',
    );
    const others = report.leaks.filter((l) => !canaries.includes(l));
    assert.deepEqual(others, [], 'raw PAN/PII outside the edge and the vault');
    assert.ok(report.scanned.kafka > 0 && report.scanned.postgres > 0 && report.scanned.logs > 0);
  });
});

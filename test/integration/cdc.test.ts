import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Pool } from 'pg';
import { parsePaymentEvent } from '../../src/contracts/payment-event';
import { CDC_FAULT_EXIT_CODE } from '../../src/ingest/cdc/reader';
import { scanValue } from '../../src/quality/pii-scanner';
import { createOltpPool, customerEmailOf, ensureOltpSchema, recordInOltp } from '../../src/simulator/oltp';
import { simulatePayments } from '../../src/simulator/payments';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { type Vault, openVault } from '../../src/stores/vault';
import { type KafkaAdmin, createKafka } from '../../src/streams/kafka';
import { testKafka, topicEnds } from '../support/kafka';
import { config, requireServices, uniqueId, topics as TOPICS } from '../support/stack';

// The CDC path end to end against the real Postgres and Kafka: `npm run cdc` (the reader) as a child
// process with its own slot, publication and schema (so it never fights the main slot), killed between
// produce and slot advance, restarted; `npm run cdc-normalizer` beside it, in its own group. Then the
// cdc topics and the facts the normalizer derived are checked.

type Consumed = { topic: string; key: string | null; value: string; headers: Record<string, string> };

const READER_SCRIPT = 'src/ingest/cdc/cdc-reader-main.ts';
const NORMALIZER_SCRIPT = 'src/ingest/cdc/cdc-normalizer-main.ts';

/** Reads `topics` from the given start offsets until `done` says enough arrived. */
async function consumeFrom(
  admin: KafkaAdmin,
  starts: Map<string, { partition: number; offset: string }[]>,
  done: (messages: Consumed[]) => boolean,
  timeoutMs = 45_000,
): Promise<Consumed[]> {
  const groupId = uniqueId('cdc-test-reader');
  for (const [topic, partitions] of starts) await admin.setOffsets({ groupId, topic, partitions });
  const consumer = testKafka('cdc-test').consumer({ groupId });
  const found: Consumed[] = [];
  await consumer.connect();
  try {
    for (const topic of starts.keys()) await consumer.subscribe({ topic });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`condition not met within ${timeoutMs} ms; ${found.length} messages read`)),
        timeoutMs,
      );
      void consumer.run({
        eachMessage: async ({ topic, message }) => {
          found.push({
            topic,
            key: message.key?.toString() ?? null,
            value: message.value?.toString() ?? '',
            headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])),
          });
          if (done(found)) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return found;
}

async function endOffsets(
  admin: KafkaAdmin,
  topics: string[],
): Promise<Map<string, { partition: number; offset: string }[]>> {
  const out = new Map<string, { partition: number; offset: string }[]>();
  for (const topic of topics) {
    out.set(topic, await topicEnds(admin, topic));
  }
  return out;
}

type Envelope = {
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  op: string;
  source: { snapshot: string; lsn: number; schema: string; table: string };
};

describe('CDC of PayLink OLTP (pgoutput reader → Debezium envelopes → created facts)', () => {
  const name = uniqueId('cdc').replace(/[^a-z0-9]/g, '_');
  const schema = `t_${name}`;
  const slot = `s_${name}`;
  const publication = `p_${name}`;
  const group = `g-${name}`;
  const runId = uniqueId('cdc').replace(/_/g, '-');
  const simulation = simulatePayments({ payments: 8, seed: 4242, duplicateRate: 0.25, runId });
  const paymentIds = [...new Set(simulation.events.map((e) => e.paymentId))];
  const beforeSnapshot = simulation.deliveries.filter(
    (e) => e.type === 'created' && paymentIds.indexOf(e.paymentId) < 3,
  );
  const purgedId = paymentIds[1]!;
  let pool: Pool;
  let admin: KafkaAdmin;
  let vault: Vault;
  let cdcMessages: Consumed[] = [];
  let facts: Consumed[] = [];
  let firstRun: { code: number | null };
  const processes: PipelineProcess[] = [];
  const env = {
    CDC_SLOT: slot,
    CDC_PUBLICATION: publication,
    CDC_SCHEMA: schema,
    CDC_POLL_INTERVAL_MS: '100',
    CDC_NORMALIZER_GROUP: group,
  };

  before(async () => {
    await requireServices('kafka', 'postgres');
    pool = createOltpPool(config);
    vault = await openVault(config);
    admin = createKafka(config, 'cdc-test-admin').admin();
    await admin.connect();
    await ensureOltpSchema(pool, schema);
    await recordInOltp(pool, beforeSnapshot, schema);

    const cdcStarts = await endOffsets(admin, [TOPICS.cdcPayments, TOPICS.cdcLedgerEntries]);
    const factStarts = await endOffsets(admin, [TOPICS.paymentEvents]);
    // The normalizer's group starts where the topics end now: it sees this test's changes only.
    for (const [topic, partitions] of cdcStarts) await admin.setOffsets({ groupId: group, topic, partitions });
    // The normalizer is its own process: the reader's crash and restart below do not touch it.
    const normalizer = startPipelineProcess('cdc-test-normalizer', NORMALIZER_SCRIPT, env);
    processes.push(normalizer);
    await normalizer.ready;

    // Run 1 snapshots the three existing payments, then dies after producing its first stream batch.
    const crashing = startPipelineProcess('cdc-test-crash', READER_SCRIPT, {
      ...env,
      PAYLINK_FAULT_CDC_EXIT_BEFORE_ADVANCE: 'true',
    });
    processes.push(crashing);
    await crashing.ready;
    const exited = new Promise<number | null>((resolve) => crashing.child.once('exit', (code) => resolve(code)));
    await recordInOltp(pool, simulation.deliveries, schema);
    await pool.query(`delete from ${schema}.payments where id = $1`, [purgedId]);
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`cdc run 1 did not hit the fault (see ${crashing.logFile})`)), 30_000).unref(),
    );
    firstRun = { code: crashing.child.exitCode ?? (await Promise.race([exited, timeout])) };

    // Run 2 re-reads from the unadvanced slot: the same changes again, with the same LSNs.
    const restarted = startPipelineProcess('cdc-test', READER_SCRIPT, env);
    processes.push(restarted);
    await restarted.ready;

    // Done when every row's final state and the purge arrived: one key's changes share a partition, in order.
    const finalRows = await pool.query<{ id: string; status: string }>(`select id, status from ${schema}.payments`);
    const ledgerIds = (await pool.query<{ id: string }>(`select id::text from ${schema}.ledger_entries`)).rows.map(
      (r) => r.id,
    );
    const complete = (ms: Consumed[]): boolean => {
      const seen = new Set(
        envelopes(ms).map((m) =>
          m.envelope.op === 'd'
            ? `deleted:${String(m.envelope.before?.id)}`
            : `${m.envelope.source.table}:${String(m.envelope.after?.id)}:${String(m.envelope.after?.status)}`,
        ),
      );
      return (
        seen.has(`deleted:${purgedId}`) &&
        finalRows.rows.every((r) => seen.has(`payments:${r.id}:${r.status}`)) &&
        ledgerIds.every((id) => seen.has(`ledger_entries:${id}:undefined`))
      );
    };
    cdcMessages = await consumeFrom(admin, cdcStarts, complete);
    facts = await consumeFrom(admin, factStarts, (ms) => {
      const created = new Set(ms.filter((m) => m.headers.source === 'cdc').map((m) => m.key));
      return paymentIds.every((id) => created.has(id));
    });
  });

  after(async () => {
    for (const p of processes) await p.stop();
    await pool.query('select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1', [
      slot,
    ]);
    await pool.query(`drop publication if exists ${publication}`);
    await pool.query(`drop schema if exists ${schema} cascade`);
    await pool.query('delete from paylink_cdc.reader_state where slot_name = $1', [slot]);
    await admin.deleteGroups([group]).catch(() => undefined);
    await admin.disconnect();
    await vault.close();
    await pool.end();
  });

  /** This test's change events; others share the topics (and may not even be JSON). */
  const envelopes = (ms: Consumed[]): (Consumed & { envelope: Envelope })[] =>
    ms.flatMap((m) => {
      try {
        const envelope = JSON.parse(m.value) as Envelope;
        return envelope?.source?.schema === schema ? [{ ...m, envelope }] : [];
      } catch {
        return [];
      }
    });
  const ours = (): (Consumed & { envelope: Envelope })[] => envelopes(cdcMessages);

  it('the crash hook fired after produce and before advance', () => {
    assert.equal(firstRun.code, CDC_FAULT_EXIT_CODE);
  });

  it('existing rows arrive as snapshot reads (op r), the last one marked "last"', () => {
    const reads = ours().filter((m) => m.envelope.op === 'r');
    assert.deepEqual(reads.map((m) => m.envelope.after?.id).sort(), paymentIds.slice(0, 3).sort());
    // Partitions interleave on read, so count markers rather than order them.
    assert.deepEqual(reads.map((m) => m.envelope.source.snapshot).sort(), ['last', 'true', 'true']);
    assert.equal(new Set(reads.map((m) => m.envelope.source.lsn)).size, 1, 'a snapshot has one LSN');
  });

  it('inserts, updates and deletes look like Debezium under REPLICA IDENTITY DEFAULT', () => {
    const payments = ours().filter((m) => m.envelope.source.table === 'payments');
    const creates = payments.filter((m) => m.envelope.op === 'c');
    assert.deepEqual(
      [...new Set(creates.map((m) => m.envelope.after?.id))].sort(),
      paymentIds.slice(3).sort(),
      'payments created after the snapshot are creates',
    );
    const updates = payments.filter((m) => m.envelope.op === 'u');
    assert.ok(updates.length > 0);
    for (const u of updates) assert.equal(u.envelope.before, null);
    const deletes = payments.filter((m) => m.envelope.op === 'd');
    assert.ok(deletes.length >= 1);
    for (const d of deletes) {
      assert.equal(d.envelope.after, null);
      assert.equal(d.envelope.before?.id, purgedId);
      assert.equal(d.envelope.before?.status, null, 'DEFAULT identity: only the key is known');
    }
    const ledger = ours().filter((m) => m.envelope.source.table === 'ledger_entries');
    assert.ok(ledger.length > 0, 'captures booked legacy ledger rows');
    for (const m of payments) {
      assert.equal(m.headers.source, 'cdc');
      assert.equal(m.headers.schema, 'debezium-oltp-payments@2');
      assert.match(m.headers['idempotency-key'] ?? '', new RegExp(`^cdc:paylink_oltp\\.${schema}\\.payments:id=`));
      if (m.envelope.op !== 'd') assert.equal(m.headers.region, m.envelope.after?.region);
    }
  });

  it('after the restart, re-emitted changes carry the same key and LSN', () => {
    const byKey = new Map<string, { key: string | null; lsn: number }[]>();
    for (const m of ours()) {
      const idem = m.headers['idempotency-key']!;
      byKey.set(idem, [...(byKey.get(idem) ?? []), { key: m.key, lsn: m.envelope.source.lsn }]);
    }
    const repeated = [...byKey.values()].filter((copies) => copies.length > 1);
    assert.ok(repeated.length > 0, 'the batch produced before the crash was produced again');
    for (const copies of repeated) {
      assert.equal(new Set(copies.map((c) => `${c.key}@${c.lsn}`)).size, 1);
    }
  });

  it('no raw customer email reaches the cdc topics; the vault holds the original', async () => {
    const emails = paymentIds.map(customerEmailOf);
    for (const m of ours()) {
      for (const email of emails) assert.ok(!m.value.includes(email), `raw email on ${m.topic}`);
      assert.deepEqual(scanValue(JSON.parse(m.value)), [], `PII found on ${m.topic}`);
    }
    const created = ours().find((m) => m.envelope.op === 'c' && m.envelope.source.table === 'payments')!;
    const token = String(created.envelope.after?.customer_email);
    assert.match(token, /^tok_email_/);
    const original = await vault.detokenize(token, {
      actor: 'cdc-test',
      purpose: 'prove the vault holds the original',
    });
    assert.equal(original, customerEmailOf(String(created.envelope.after?.id)));
  });

  it('the normalizer derives exactly one created fact per payment', () => {
    const byPayment = new Map<string, Set<string>>();
    for (const m of facts.filter((f) => f.headers.source === 'cdc' && paymentIds.includes(f.key ?? ''))) {
      const parsed = parsePaymentEvent(m.value);
      assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
      assert.equal(parsed.value.type, 'created');
      assert.equal(parsed.value.idempotencyKey, m.headers['idempotency-key']);
      const truth = simulation.events.find((e) => e.paymentId === parsed.value.paymentId && e.type === 'created')!;
      assert.equal(parsed.value.amountMinor, truth.type === 'created' ? truth.amountMinor : -1);
      assert.equal(parsed.value.currency, truth.currency);
      assert.equal(Date.parse(parsed.value.occurredAt), Date.parse(truth.occurredAt));
      byPayment.set(
        parsed.value.paymentId,
        (byPayment.get(parsed.value.paymentId) ?? new Set()).add(parsed.value.idempotencyKey),
      );
    }
    assert.deepEqual([...byPayment.keys()].sort(), [...paymentIds].sort());
    for (const [paymentId, keys] of byPayment) assert.equal(keys.size, 1, `${paymentId}: ${[...keys].join(', ')}`);
  });
});

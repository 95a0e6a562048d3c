import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { HEADERS } from '../../src/contracts/envelope';
import { signStripe } from '../../src/ingest/signatures';
import { parsePartners } from '../../src/ingest/webhook-receiver';
import { createLogger } from '../../src/logger';
import { type PipelineProcess, startPipelineProcess } from '../../src/starters/processes';
import { migrateAsOwner } from '../../src/stores/migrate';
import { createPool } from '../../src/stores/postgres';
import { type QuarantinedRecord, listQuarantined, readQuarantined } from '../../src/stores/quarantine';
import { consumerGroupLag, createKafka, createProducer, ensureTopics } from '../../src/streams/kafka';
import { type TestEdge, startTestEdge } from '../support/edge';
import { captureObject } from '../support/events';
import { type TopicOffsets, readKeyedBetween, topicEnds } from '../support/kafka';
import { waitFor, within } from '../support/pipeline';
import { config, requireServices, topics, uniqueId } from '../support/stack';

// Issue 15 item 4, against the real stack: an authentic webhook carrying money is quarantined by the edge
// (a field of the wrong type) → the quality process records it and holds its money in a balanced suspense
// entry → `quality -- release` with the partner's corrected record posts it once through the router and
// the payment workflow and closes the suspense → a second release and a redelivered quarantine message
// change nothing. An item naming no usable payment gets a named suspense record.

const execFileAsync = promisify(execFile);
const QUALITY_MAIN = 'src/quality/quality-consumer-main.ts';
const acme = parsePartners(config.WEBHOOK_PARTNERS).find((p) => p.scheme === 'stripe')!;
const QUARANTINE_GROUP = `${config.QUALITY_CONSUMER_GROUP}.quarantine`;

/** `npm run quality -- <args>` as a process; answers its exit code and output (a failing exit is not thrown). */
async function quality(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['--import', 'tsx', QUALITY_MAIN, ...args], {
      timeout: 180_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('quarantine → suspense → release → posted once', () => {
  const runId = uniqueId('qsus');
  const paymentId = `${runId}-p1`;
  const captureEventId = `evt_${runId}_cap`;
  const pool = createPool(config, 4);
  const kafka = createKafka(config, 'quarantine-suspense-test');
  const admin = kafka.admin();
  const producer = createProducer(kafka);
  const processes: PipelineProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'paylink-quarantine-'));
  let edge: TestEdge;
  let quarantineFrom: TopicOffsets;

  const post = async (event: object): Promise<number> => {
    const body = JSON.stringify(event);
    const res = await fetch(`${edge.base}/webhooks/${acme.id}`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'Stripe-Signature': signStripe(body, acme.secrets[0]!, Math.floor(Date.now() / 1000)),
      },
    });
    await res.text();
    return res.status;
  };
  const webhook = (id: string, type: string, object: Record<string, unknown>) => ({
    id,
    type,
    created: Math.floor(Date.now() / 1000),
    data: { object },
  });

  /** The ledger entries of a posting key prefix, with their lines. */
  const entries = async (where: string, param: string) =>
    (
      await pool.query<{ posting_key: string; payment_id: string; fact_type: string; lines: string }>(
        `select e.posting_key, e.payment_id, e.fact_type,
                string_agg(l.account_code || ' ' || l.side || ' ' || l.amount_minor || ' ' || l.currency, ', '
                           order by l.account_code, l.side) as lines
           from ledger.journal_entries e join ledger.journal_lines l on l.entry_id = e.entry_id
          where ${where} group by e.entry_id order by e.entry_id`,
        [param],
      )
    ).rows;
  /** Σ debits − Σ credits of the suspense account over entries matching `where`. */
  const suspenseNet = async (where: string, param: string): Promise<number> =>
    Number(
      (
        await pool.query<{ net: string }>(
          `select coalesce(sum(case when l.side = 'debit' then l.amount_minor else -l.amount_minor end), 0)::text as net
             from ledger.journal_entries e join ledger.journal_lines l on l.entry_id = e.entry_id
            where l.account_code = 'suspense' and ${where}`,
          [param],
        )
      ).rows[0]!.net,
    );
  const itemOf = async (idempotencyKey: string): Promise<QuarantinedRecord | undefined> =>
    (await listQuarantined(pool, { paymentIdPrefix: '' })).find((q) => q.idempotencyKey === idempotencyKey);
  const waitForItem = async (idempotencyKey: string): Promise<QuarantinedRecord> => {
    let found: QuarantinedRecord | undefined;
    await waitFor(`quarantined item ${idempotencyKey}`, Date.now() + 60_000, async () => {
      found = await itemOf(idempotencyKey);
      return found !== undefined || 'not recorded yet';
    });
    return found!;
  };

  before(async () => {
    await requireServices('kafka', 'postgres', 'temporal', 's3');
    await migrateAsOwner(config);
    await admin.connect();
    await ensureTopics(admin, config);
    await producer.connect();
    quarantineFrom = await topicEnds(admin, topics.quarantine);
    for (const [name, script] of [
      ['quarantine-test-worker', 'src/workers/payment-worker-main.ts'],
      ['quarantine-test-router', 'src/streams/payment-router-main.ts'],
      ['quarantine-test-quality', QUALITY_MAIN],
    ] as const) {
      const p = startPipelineProcess(name, script);
      processes.push(p);
      await within(p.ready, 60_000, `${name} ready`);
    }
    edge = await startTestEdge(createLogger('quarantine-suspense-test'));
  });

  after(async () => {
    await edge?.close();
    for (const p of processes.reverse()) await within(p.stop(), 30_000, `${p.name} to stop`).catch(() => p.kill9());
    await producer.disconnect();
    await admin.disconnect();
    await pool.end();
    rmSync(dir, { recursive: true, force: true });
  });

  let item: QuarantinedRecord;
  const captureKey = `webhook:${acme.id}:${captureEventId}`;

  it('an authentic capture with a field of the wrong type is quarantined and its money held in suspense', async () => {
    assert.equal(
      await post(
        webhook(`evt_${runId}_auth`, 'payment.authorized', { ...captureObject(paymentId), captureId: undefined }),
      ),
      200,
    );
    // The partner sent the capture id as a number: the contract wants a string, so the edge quarantines it.
    assert.equal(
      await post(webhook(captureEventId, 'payment.captured', captureObject(paymentId, { captureId: 12345 }))),
      202,
    );
    item = await waitForItem(captureKey);
    assert.equal(item.paymentId, paymentId);
    assert.deepEqual(item.amount, { status: 'parsed', amountMinor: 1999, currency: 'EUR' });
    assert.match(item.reason, /captureId/);
    assert.equal(item.state, 'open');
    const open = await entries('e.posting_key = $1', `quarantine/${item.quarantineId}/open`);
    assert.deepEqual(open, [
      {
        posting_key: `quarantine/${item.quarantineId}/open`,
        payment_id: paymentId,
        fact_type: 'quarantine_suspense_open',
        lines: 'gateway_clearing debit 1999 EUR, suspense credit 1999 EUR',
      },
    ]);
    assert.equal(await suspenseNet('e.payment_id = $1', paymentId), -1999);
    // The authorization went the normal way; the capture did not post.
    assert.deepEqual(await entries(`e.payment_id = $1 and e.posting_key like 'payment/%'`, paymentId), []);
  });

  it('a release that still fails says why, names the input and changes nothing', async () => {
    const r = await quality(['release', item.quarantineId, '--actor', 'finance-test']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${item.quarantineId} \\(${captureKey}\\) still fails: .*captureId`));
    const bad = await quality(['release', 'not-an-id']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /"not-an-id" is not a quarantine id/);
    const unknown = await quality(['release', `q${'a'.repeat(24)}`]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no quarantined item qa{24}/);
    assert.deepEqual((await readQuarantined(pool, item.quarantineId))!.releases, []);
    assert.equal(await suspenseNet('e.payment_id = $1', paymentId), -1999);
  });

  it('release with the corrected record posts the capture once and closes the suspense', async () => {
    const corrected = JSON.parse(item.value!) as { data: { object: Record<string, unknown> } };
    corrected.data.object['captureId'] = 'cap-12345';
    const file = join(dir, 'corrected.json');
    writeFileSync(file, JSON.stringify(corrected));
    const r = await quality([
      'release',
      item.quarantineId,
      '--with-file',
      file,
      '--actor',
      'finance-test',
      '--wait-s',
      '120',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(result['outcome'], 'released');
    assert.equal(result['suspense'], 'closed');
    assert.equal(result['factPostingKey'], `payment/${paymentId}/captured:cap-12345`);

    const posted = await entries(`e.payment_id = $1 and e.posting_key like 'payment/%'`, paymentId);
    assert.deepEqual(
      posted.map((e) => e.posting_key),
      [`payment/${paymentId}/captured:cap-12345`],
    );
    assert.equal(await suspenseNet('e.payment_id = $1', paymentId), 0);
    const released = (await readQuarantined(pool, item.quarantineId))!;
    assert.equal(released.state, 'released');
    assert.deepEqual(
      released.releases.map((x) => [x.step, x.actor, x.correction !== null]),
      [
        ['routed', 'finance-test', true],
        ['suspense_closed', 'finance-test', false],
      ],
    );
    assert.equal(released.value, item.value, 'the original record is kept beside the correction');
  });

  it('a second release and a redelivered quarantine message change nothing', async () => {
    const before = await entries('e.payment_id = $1', paymentId);
    const again = await quality(['release', item.quarantineId, '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as { outcome: string }).outcome, 'already-released');

    // The same quarantine message again (an edge re-sending after a crash): the same item, no second suspense.
    const original = (
      await readKeyedBetween(
        kafka,
        topics.quarantine,
        quarantineFrom,
        await topicEnds(admin, topics.quarantine),
        (key) => key === paymentId,
      )
    ).find((m) => m.headers[HEADERS.idempotencyKey] === captureKey);
    assert.ok(original, 'the quarantine message is on the topic');
    await producer.send({
      topic: topics.quarantine,
      messages: [{ key: original.key, value: original.value, headers: original.headers }],
    });
    await waitFor('the quarantine group to catch up', Date.now() + 60_000, async () => {
      const lag = await consumerGroupLag(admin, QUARANTINE_GROUP, topics.quarantine);
      return lag === 0 || `lag ${lag}`;
    });
    assert.deepEqual(await entries('e.payment_id = $1', paymentId), before);
    assert.equal(
      (await listQuarantined(pool, { paymentIdPrefix: paymentId })).filter((q) => q.idempotencyKey === captureKey)
        .length,
      1,
    );
  });

  it('money on an item that names no usable payment opens a named suspense record', async () => {
    const eventId = `evt_${runId}_nopay`;
    assert.equal(
      await post(webhook(eventId, 'payment.captured', captureObject('not a payment id!', { amountMinor: 777 }))),
      202,
    );
    const orphan = await waitForItem(`webhook:${acme.id}:${eventId}`);
    assert.equal(orphan.paymentId, null);
    const named = `quarantine-${orphan.quarantineId}`;
    assert.deepEqual(
      (await entries('e.payment_id = $1', named)).map((e) => [e.posting_key, e.lines]),
      [[`quarantine/${orphan.quarantineId}/open`, 'gateway_clearing debit 777 EUR, suspense credit 777 EUR']],
    );
    const listed = await quality(['quarantined', '--open', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const open = JSON.parse(listed.stdout) as { quarantineId: string; suspensePostingKey: string | null }[];
    assert.ok(open.some((q) => q.quarantineId === orphan.quarantineId && q.suspensePostingKey !== null));
    assert.ok(!open.some((q) => q.quarantineId === item.quarantineId), 'the released item is not open');
  });
});

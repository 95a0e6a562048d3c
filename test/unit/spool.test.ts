import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, truncate, appendFile, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  type Spool,
  type SpoolRecord,
  SpoolCorruptError,
  SpoolLockedError,
  crc32,
  openSpool,
} from '../../src/ingest/spool';
import { spoolWriterPayload, spoolWriterRecord } from '../fixtures/spool-writer';

const repoRoot = join(__dirname, '..', '..');
const dirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'paylink-spool-'));
  dirs.push(dir);
  return dir;
}

function record(i: number, valueBytes = 200): SpoolRecord {
  return {
    topic: 'paylink.webhooks.v1',
    key: i % 5 === 0 ? null : `payment-${i}`,
    value: Buffer.alloc(valueBytes, i % 251),
    headers: { 'idempotency-key': `gateway:tx-${i}:captured:1` },
  };
}

async function appendAll(spool: Spool, from: number, count: number, valueBytes = 200): Promise<number[]> {
  const seqs: number[] = [];
  for (let i = from; i < from + count; i++) {
    const result = await spool.append(record(i, valueBytes));
    assert.ok(result.ok, `append ${i} was refused`);
    seqs.push(Number(result.seq));
  }
  return seqs;
}

/** Drains everything and returns the records in the order send() saw them. */
async function drainAll(spool: Spool, batch = 7): Promise<SpoolRecord[]> {
  const seen: SpoolRecord[] = [];
  await spool.drain(
    async (records) => {
      seen.push(...records);
    },
    { batch },
  );
  return seen;
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.seg')).sort();
}

describe('edge spool', () => {
  after(async () => {
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('computes the standard CRC-32', () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
    assert.equal(crc32(Buffer.from('6789'), crc32(Buffer.from('12345'))), 0xcbf43926);
    assert.equal(crc32(Buffer.alloc(0)), 0);
  });

  it('drains in append order across several segments and deletes drained segments', async () => {
    const dir = await tempDir();
    const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 2048 });
    const seqs = await appendAll(spool, 0, 60);
    assert.deepEqual(
      seqs,
      Array.from({ length: 60 }, (_, i) => i),
    );
    assert.ok((await segmentFiles(dir)).length >= 5, 'records span several segments');
    assert.equal(spool.size().records, 60);

    const seen = await drainAll(spool, 7);
    assert.deepEqual(
      seen,
      Array.from({ length: 60 }, (_, i) => record(i)),
    );
    assert.deepEqual(spool.size(), { records: 0, bytes: 0 });
    assert.deepEqual(await segmentFiles(dir), []);

    // seqs keep counting after the spool emptied, in a fresh segment
    assert.deepEqual(await spool.append(record(60)), { ok: true, seq: 60 });
    assert.deepEqual(await drainAll(spool), [record(60)]);
    await spool.close();
  });

  it('answers full at maxBytes and maxRecords, and accepts again once drained', async () => {
    const dir = await tempDir();
    const spool = await openSpool({ dir, maxBytes: 4096, segmentBytes: 1024 });
    let accepted = 0;
    for (;;) {
      const result = await spool.append(record(accepted, 300));
      if (!result.ok) {
        assert.deepEqual(result, { ok: false, reason: 'full' });
        break;
      }
      accepted++;
    }
    assert.ok(accepted > 5 && spool.size().bytes <= 4096, `accepted ${accepted}, ${spool.size().bytes} bytes`);
    assert.equal((await drainAll(spool)).length, accepted);
    assert.ok((await spool.append(record(accepted, 300))).ok);
    await spool.close();

    const byCount = await openSpool({ dir: await tempDir(), maxBytes: 1 << 20, maxRecords: 3 });
    await appendAll(byCount, 0, 3);
    assert.deepEqual(await byCount.append(record(3)), { ok: false, reason: 'full' });
    assert.equal(await byCount.drain(async () => undefined), 3);
    assert.deepEqual(await byCount.append(record(3)), { ok: true, seq: 3 });
    await byCount.close();
  });

  it('advances nothing when send fails, and re-delivers that batch on the next drain', async () => {
    const dir = await tempDir();
    const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1024 });
    await appendAll(spool, 0, 20);
    const kafkaDown = new Error('kafka unreachable');
    let calls = 0;
    await assert.rejects(
      spool.drain(
        async () => {
          if (++calls === 2) throw kafkaDown;
        },
        { batch: 5 },
      ),
      (err) => err === kafkaDown,
    );
    assert.equal(spool.size().records, 15, 'only the first batch was committed');
    await assert.rejects(
      spool.drain(async () => Promise.reject(kafkaDown)),
      (err) => err === kafkaDown,
    );
    assert.equal(spool.size().records, 15);
    const seen = await drainAll(spool, 5);
    assert.deepEqual(
      seen.map((r) => r.key),
      Array.from({ length: 15 }, (_, i) => record(i + 5).key),
    );
    await spool.close();
  });

  it('keeps undrained records across close and reopen, and does not re-deliver drained ones', async () => {
    const dir = await tempDir();
    const first = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1500 });
    await appendAll(first, 0, 30);
    let sent = 0;
    await assert.rejects(
      first.drain(
        async (records) => {
          if (sent >= 12) throw new Error('stop');
          sent += records.length;
        },
        { batch: 4 },
      ),
      /stop/,
    );
    await first.close();

    const second = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1500 });
    assert.equal(second.size().records, 18);
    assert.deepEqual(await second.append(record(30)), { ok: true, seq: 30 });
    const seen = await drainAll(second);
    assert.deepEqual(
      seen,
      Array.from({ length: 19 }, (_, i) => record(i + 12)),
    );
    await second.close();

    const third = await openSpool({ dir, maxBytes: 1 << 20 });
    assert.deepEqual(third.size(), { records: 0, bytes: 0 });
    assert.deepEqual(await drainAll(third), []);
    assert.deepEqual(await third.append(record(31)), { ok: true, seq: 31 });
    await third.close();
  });

  it('cuts a torn tail on open and keeps every earlier record', async () => {
    const dir = await tempDir();
    const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1500 });
    await appendAll(spool, 0, 20);
    await spool.close();
    const tail = join(dir, (await segmentFiles(dir)).at(-1) ?? '');
    const { size } = await stat(tail);
    await truncate(tail, size - 3); // the last frame lost its last bytes

    const reopened = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1500 });
    assert.equal(reopened.size().records, 19);
    // the torn record's seq is reused: it was never acknowledged
    assert.deepEqual(await reopened.append(record(19)), { ok: true, seq: 19 });
    await reopened.close();

    await appendFile(tail, Buffer.from([0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])); // garbage after the last frame
    const again = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1500 });
    assert.deepEqual(
      await drainAll(again),
      Array.from({ length: 20 }, (_, i) => record(i)),
    );
    await again.close();
  });

  it('refuses to open over a corrupt frame that is not at the tail', async () => {
    const dir = await tempDir();
    const spool = await openSpool({ dir, maxBytes: 1 << 20, segmentBytes: 1500 });
    await appendAll(spool, 0, 20);
    await spool.close();
    const head = join(dir, (await segmentFiles(dir))[0] ?? '');
    const bytes = await readFile(head);
    const middle = bytes.length >> 1;
    bytes.writeUInt8(bytes.readUInt8(middle) ^ 0xff, middle);
    await writeFile(head, bytes);
    await assert.rejects(openSpool({ dir, maxBytes: 1 << 20 }), SpoolCorruptError);
  });

  it('keeps order when appends run during a slow drain, and group-commits concurrent appends', async () => {
    const dir = await tempDir();
    const spool = await openSpool({ dir, maxBytes: 4 << 20, segmentBytes: 4096 });
    const firstWave = await Promise.all(Array.from({ length: 64 }, (_, i) => spool.append(record(i))));
    assert.deepEqual(
      firstWave.map((r) => (r.ok ? Number(r.seq) : -1)),
      Array.from({ length: 64 }, (_, i) => i),
    );
    const seen: SpoolRecord[] = [];
    let during: Promise<number[]> | undefined;
    await spool.drain(
      async (records) => {
        during ??= appendAll(spool, 64, 40); // appends while the drain is between read and commit
        await new Promise((resolve) => setTimeout(resolve, 2));
        seen.push(...records);
      },
      { batch: 10 },
    );
    assert.ok(during);
    assert.deepEqual(
      await during,
      Array.from({ length: 40 }, (_, i) => 64 + i),
    );
    seen.push(...(await drainAll(spool)));
    assert.deepEqual(
      seen,
      Array.from({ length: 104 }, (_, i) => record(i)),
    );
    await spool.close();
  });

  it('lets one spool at a time own a directory', async () => {
    const dir = await tempDir();
    const spool = await openSpool({ dir, maxBytes: 1 << 20 });
    await assert.rejects(openSpool({ dir, maxBytes: 1 << 20 }), SpoolLockedError);
    await spool.close();
    await (await openSpool({ dir, maxBytes: 1 << 20 })).close();
  });

  interface WriterRun {
    acked: Map<number, number>; // seq → record index
    sentBatches: number[][];
  }

  /** Runs test/fixtures/spool-writer.ts until it acknowledged `acks` records, then kill -9s it. */
  async function runAndKill(dir: string, mode: 'append' | 'drain', acks: number): Promise<WriterRun> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/spool-writer.ts', dir, mode], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run: WriterRun = { acked: new Map(), sentBatches: [] };
    let stderr = '';
    let partial = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const [kind, a, b] = line.split(' ');
        if (kind === 'ack') run.acked.set(Number(a), Number(b));
        if (kind === 'sent') run.sentBatches.push((a ?? '').split(',').map(Number));
      }
      if (run.acked.size >= acks && child.signalCode === null) child.kill('SIGKILL');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.once('close', (c, s) => resolve([c, s])),
    );
    clearTimeout(timer);
    assert.equal(signal, 'SIGKILL', `writer exited by itself (code ${code}): ${stderr}`);
    assert.ok(run.acked.size >= acks, `writer acknowledged only ${run.acked.size} of ${acks} (stderr: ${stderr})`);
    return run;
  }

  function assertIntact(records: SpoolRecord[]): number[] {
    return records.map((r) => {
      const i = Number(r.key);
      assert.deepEqual(r, spoolWriterRecord(i), `record ${i} came back altered`);
      assert.ok(r.value.equals(spoolWriterPayload(i)));
      return i;
    });
  }

  it('loses no acknowledged record when the writer is killed with SIGKILL', async () => {
    const dir = await tempDir();
    const run = await runAndKill(dir, 'append', 3000);
    const spool = await openSpool({ dir, maxBytes: 1 << 30 });
    const indexes = assertIntact(await drainAll(spool, 500));
    assert.deepEqual(
      indexes,
      Array.from({ length: indexes.length }, (_, i) => i),
      'every record, in order, no gap',
    );
    for (const [seq, i] of run.acked) {
      assert.equal(seq, i, 'seq order is append order');
      assert.ok(i < indexes.length, `acknowledged record ${i} is missing (spool has ${indexes.length})`);
    }
    await spool.close();
  });

  it('after SIGKILL mid-drain, re-delivers at most the batch in flight and loses nothing', async () => {
    const dir = await tempDir();
    const run = await runAndKill(dir, 'drain', 3000);
    assert.ok(run.sentBatches.length > 0, 'the writer drained before it was killed');
    const spool = await openSpool({ dir, maxBytes: 1 << 30 });
    const rest = assertIntact(await drainAll(spool, 500));
    const sent = run.sentBatches.flat();
    const inFlight = new Set(run.sentBatches.at(-1));
    const sentSet = new Set(sent);
    const redelivered = rest.filter((i) => sentSet.has(i));
    assert.ok(
      redelivered.every((i) => inFlight.has(i)),
      `re-delivered ${redelivered.join(',')} outside the batch in flight`,
    );
    const delivered = [...sent, ...rest.filter((i) => !sentSet.has(i))];
    assert.deepEqual(
      delivered,
      Array.from({ length: delivered.length }, (_, i) => i),
      'in order, no gap',
    );
    for (const i of run.acked.values()) assert.ok(i < delivered.length, `acknowledged record ${i} was lost`);
    await spool.close();
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Spool, type SpoolRecord, openSpool } from '../src/ingest/spool';

// Durable appends/s of the edge spool with 2 KB records: one awaited append at a time (one fsync each)
// versus 64 in flight (group commit shares the fsync), plus the raw fsync cost of this disk.
// Run: node --import tsx bench/spool.ts   (SPOOL_BENCH_SECONDS=3, SPOOL_BENCH_DIR=os.tmpdir())

const SECONDS = Number(process.env.SPOOL_BENCH_SECONDS ?? 3);
const RECORD_BYTES = 2048;
const CONCURRENCY = 64;
const baseDir = process.env.SPOOL_BENCH_DIR ?? tmpdir();

const record: SpoolRecord = {
  topic: 'paylink.webhooks.v1',
  key: 'payment-0001',
  value: randomBytes(RECORD_BYTES),
  headers: { 'idempotency-key': 'gateway:tx-0001:captured:1' },
};

/** `inFlight` loops each await one append after another until the time is up. */
async function run(name: string, spool: Spool, inFlight: number): Promise<void> {
  const start = performance.now();
  const end = start + SECONDS * 1000;
  let appended = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const result = await spool.append(record);
      if (!result.ok) throw new Error('spool full: raise maxBytes or lower SPOOL_BENCH_SECONDS');
      appended++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  const seconds = (performance.now() - start) / 1000;
  const rate = Math.round(appended / seconds);
  console.log(`${name.padEnd(36)} ${String(rate).padStart(8)} appends/s  (${appended} in ${seconds.toFixed(1)} s)`);
  const drainStart = performance.now();
  const drained = await spool.drain(async () => undefined, { batch: 500 });
  const drainRate = Math.round(drained / ((performance.now() - drainStart) / 1000));
  console.log(`${'  then drain (no-op send, batch 500)'.padEnd(36)} ${String(drainRate).padStart(8)} records/s`);
}

/** Median microseconds of a 2 KB write + fsync appended to a plain file. */
async function fsyncCost(dir: string): Promise<number> {
  const handle = await open(join(dir, 'fsync-probe'), 'w');
  const samples: number[] = [];
  try {
    for (let i = 0, position = 0; i < 200; i++, position += RECORD_BYTES) {
      const t = performance.now();
      await handle.write(record.value, 0, RECORD_BYTES, position);
      await handle.sync();
      samples.push((performance.now() - t) * 1000);
    }
  } finally {
    await handle.close();
  }
  samples.sort((a, b) => a - b);
  return Math.round(samples[samples.length >> 1] ?? 0);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(baseDir, 'paylink-spool-bench-'));
  try {
    const spool = await openSpool({ dir: join(dir, 'spool'), maxBytes: 8 * 1024 ** 3, segmentBytes: 64 * 1024 ** 2 });
    try {
      console.log(`spool bench: ${RECORD_BYTES} B records, ${SECONDS} s per mode, dir ${dir}`);
      await run('sequential (1 in flight)', spool, 1);
      await run(`concurrent (${CONCURRENCY} in flight)`, spool, CONCURRENCY);
    } finally {
      await spool.close();
    }
    const micros = await fsyncCost(dir);
    console.log(
      `fsync here: 2 KB write + fsync takes ${micros} µs (median of 200), so one-at-a-time appends cap near ${Math.round(1e6 / micros)}/s`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

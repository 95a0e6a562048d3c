import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, secretSetting } from '../src/config';
import { stripeStyleToFact } from '../src/contracts/partner-webhooks';
import { signStripe, verifyStripeSignature } from '../src/ingest/signatures';
import { tokenizerFromConfig } from '../src/ingest/tokenize';
import { encodeVaultRecord } from '../src/ingest/vault-journal';
import { encryptVaultEntries, vaultKeyring } from '../src/stores/vault';
import { parsePartners } from '../src/ingest/webhook-receiver';
import { up } from '../src/stack/cli';
import { startPipelineProcess } from '../src/starters/processes';
import { createKafka, ensureTopics } from '../src/streams/kafka';

// Edge throughput: the full webhook receiver (signature + validation + tokenization + vault +
// Kafka acks=all) against a bare Node http server, same requests, same machine, same run.
// The ratio is the figure (target ≥ 0.5×); absolute numbers move with the machine's load.

const BENCH_TOPIC_NAMESPACE = 'bench';
const SECONDS = Number(process.env.BENCH_EDGE_SECONDS ?? 5);
// Bare and edge alternate, round after round, so a neighbour's load burst hits both sides alike.
const ROUNDS = Number(process.env.BENCH_EDGE_ROUNDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_EDGE_CONCURRENCY ?? 32);
// A directory here makes the receiver write a V8 CPU profile (node --cpu-prof) for docs/edge.md.
// The bare baseline runs as many processes as the edge (node:cluster), so the ratio compares like with like.
const WORKERS = Number(process.env.WEBHOOK_WORKERS ?? 0);
const CPU_PROFILE_DIR = process.env.BENCH_EDGE_CPU_PROF ?? '';
// A git revision here (`BENCH_EDGE_BASELINE=HEAD~1`): that revision's receiver runs too, in every round beside
// this one, so a change is measured against what it replaces on the same busy machine in the same run.
const BASELINE_REV = process.env.BENCH_EDGE_BASELINE ?? '';
const REPO = join(__dirname, '..');
const RECEIVER_MAIN = 'src/ingest/webhook-receiver-main.ts';

interface Result {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
  /** CPU µs per request: the server's processes, this load generator, everything else on the machine (Kafka, Postgres, neighbours). */
  cpuUsPerRequest?: { server: number; client: number; rest: number; machineBusy: number };
}

// CPU accounting from /proc (Linux): where each request's CPU goes, so the ratio can be explained.
const TICK_US = 1e6 / 100; // USER_HZ is 100 on Linux
function processTreeTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const own = Number(fields[11]) + Number(fields[12]);
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean);
    return own + children.reduce((n, c) => n + processTreeTicks(Number(c)), 0);
  } catch {
    return 0; // a process that just exited
  }
}
function machineTicks(): { busy: number; all: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  const all = cpu.reduce((a, b) => a + b, 0);
  return { busy: all - (cpu[3] ?? 0) - (cpu[4] ?? 0), all };
}
async function measured(serverPid: number | undefined, run: () => Promise<Result>): Promise<Result> {
  if (!existsSync('/proc/stat') || serverPid === undefined) return run();
  const [m0, s0, c0] = [machineTicks(), processTreeTicks(serverPid), process.cpuUsage()];
  const r = await run();
  const [m1, s1, c1] = [machineTicks(), processTreeTicks(serverPid), process.cpuUsage(c0)];
  const server = (s1 - s0) * TICK_US;
  const client = c1.user + c1.system;
  const busy = (m1.busy - m0.busy) * TICK_US;
  const per = (us: number): number => Math.round(us / Math.max(1, r.requests));
  return {
    ...r,
    cpuUsPerRequest: {
      server: per(server),
      client: per(client),
      rest: per(Math.max(0, busy - server - client)),
      machineBusy: (m1.busy - m0.busy) / Math.max(1, m1.all - m0.all),
    },
  };
}

function bodies(n: number): { body: string; signature: string }[] {
  const partner = parsePartners(secretSetting(loadConfig(), 'WEBHOOK_PARTNERS')).find((p) => p.scheme === 'stripe')!;
  const now = Math.floor(Date.now() / 1000);
  return Array.from({ length: n }, (_, i) => {
    const body = JSON.stringify({
      id: `evt_bench_${now}_${i}`,
      type: 'payment.captured',
      created: now,
      data: {
        object: {
          paymentId: `bench-${now}-${i % 5000}`,
          merchantId: 'm-1',
          currency: 'EUR',
          captureId: `cap${i}`,
          amountMinor: 1000 + i,
          platformFeeMinor: 10,
          customer: { email: `shopper${i}@example.com`, name: 'Jane Doe', card: '4242 4242 4242 4242' },
          metadata: { orderRef: `order-${i}`, note: 'x'.repeat(900) }, // ~1.5 KB events, as the brief sizes them
        },
      },
    });
    return { body, signature: signStripe(body, partner.secrets[0]!, now) };
  });
}

/** Sends `reqs` in order for SECONDS (or until they run out); `cycle` reuses them (the bare server checks nothing). */
async function load(
  port: number,
  path: string,
  reqs: { body: string; signature: string }[],
  cycle = false,
): Promise<Result> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const deadline = Date.now() + SECONDS * 1000;
  const one = (r: { body: string; signature: string }): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path,
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'stripe-signature': r.signature,
            'content-length': Buffer.byteLength(r.body),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(r.body);
    });
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < deadline && (cycle || next < reqs.length)) {
        const r = reqs[next++ % reqs.length]!;
        const t = process.hrtime.bigint();
        const status = await one(r).catch(() => 0);
        latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
        if (status < 200 || status >= 300) errors += 1;
      }
    }),
  );
  const elapsed = (Date.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return { requests: latencies.length, errors, rps: latencies.length / elapsed, p50: pct(50), p99: pct(99) };
}

/** The receiver under `node --cpu-prof` (startPipelineProcess takes no node flags); SIGTERM writes the profile. */
function startProfiled(
  script: string,
  env: Record<string, string>,
): { pid: number | undefined; ready: Promise<void>; stop(): Promise<void> } {
  const child = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', CPU_PROFILE_DIR, '--import', 'tsx', script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('"msg":"ready"')) resolve();
    });
    void exited.then(() => reject(new Error(`${script} exited before it was ready`)));
  });
  return {
    pid: child.pid,
    ready,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** `rev` exported from git into a temporary folder that uses this checkout's node_modules. */
function checkoutOf(rev: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'paylink-bench-baseline-'));
  const tar = execFileSync('git', ['archive', '--format=tar', rev], { cwd: REPO, maxBuffer: 1 << 30 });
  execFileSync('tar', ['-x', '-C', dir], { input: tar });
  symlinkSync(realpathSync(join(REPO, 'node_modules')), join(dir, 'node_modules'));
  return dir;
}

/** CPU µs per call of each in-process stage of the edge, on the same requests (no I/O: Kafka and fsync are not in it). */
function stageCosts(reqs: { body: string; signature: string }[]): Record<string, number> {
  const config = loadConfig();
  const partner = parsePartners(secretSetting(config, 'WEBHOOK_PARTNERS')).find((p) => p.scheme === 'stripe')!;
  const tokenizer = tokenizerFromConfig(config);
  const keyring = vaultKeyring(config);
  const sample = reqs.slice(0, 3000).map((r) => ({ ...r, raw: Buffer.from(r.body) }));
  const stage = (fn: (r: (typeof sample)[number]) => unknown): number => {
    for (const r of sample.slice(0, 300)) fn(r); // warm-up (JIT)
    const start = process.cpuUsage();
    for (const r of sample) fn(r);
    const used = process.cpuUsage(start);
    return Math.round(((used.user + used.system) / sample.length) * 10) / 10;
  };
  const parsed = sample.map((r) => JSON.parse(r.body) as unknown);
  const tokenized = parsed.map((p) => tokenizer.tokenize(p));
  let i = 0;
  const next = <T>(list: T[]): T => list[i++ % list.length]!;
  return {
    'signature (HMAC-SHA256 × 2 secrets)': stage((r) =>
      verifyStripeSignature(r.raw, r.signature, { secrets: partner.secrets }),
    ),
    'JSON.parse': stage((r) => JSON.parse(r.raw.toString('utf8'))),
    tokenize: stage(() => tokenizer.tokenize(next(parsed))),
    'validate + map to fact (zod)': stage(() => stripeStyleToFact(partner.id, partner.region, next(tokenized).payload)),
    'envelope (JSON.stringify × 2)': stage(() => {
      const t = next(tokenized).payload;
      return [Buffer.from(JSON.stringify(t)), Buffer.from(JSON.stringify(t))];
    }),
    'vault journal record (AES-GCM × entries)': stage(() =>
      encodeVaultRecord(encryptVaultEntries(next(tokenized).vault, keyring)),
    ),
  };
}

interface Contender {
  name: string;
  port: number;
  pid: number | undefined;
  ready: Promise<void>;
  stop(): Promise<void>;
  /** The next of the prepared requests it has not been sent (a receiver accepts each signature once). */
  next: number;
}

interface Round {
  bare: Result;
  edge: Result;
  ratio: number;
  /** With BENCH_EDGE_BASELINE: the baseline's receiver in the same round, and edge / baseline. */
  baseline?: Result;
  vsBaseline?: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const range = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;

async function main(): Promise<void> {
  // The edge needs only these (the vault journal drains to Postgres, claim checks go to S3).
  await up(['kafka', 'postgres', 's3']);
  // The benchmark's events are real facts: they go to the bench's own topics, never to the dev pipeline's.
  const benchConfig = { ...loadConfig(), KAFKA_TOPIC_NAMESPACE: BENCH_TOPIC_NAMESPACE };
  const admin = createKafka(benchConfig, 'paylink-bench-edge').admin();
  await admin.connect();
  try {
    await ensureTopics(admin, benchConfig);
  } finally {
    await admin.disconnect();
  }
  const reqs = bodies(Number(process.env.BENCH_EDGE_REQUESTS ?? 120_000));
  process.stderr.write(`bench: ${reqs.length} signed requests prepared\n`);
  const stages = stageCosts(reqs);
  const spoolDir = mkdtempSync(join(tmpdir(), 'paylink-bench-spool-'));
  const baselineDir = BASELINE_REV ? checkoutOf(BASELINE_REV) : undefined;
  const barePort = 30_000 + Math.floor(Math.random() * 10_000);
  const bareServer = startPipelineProcess('bench-bare-http', 'bench/bare-server.ts', {
    WEBHOOK_PORT: String(barePort),
    WEBHOOK_WORKERS: String(WORKERS),
  });
  const receiverEnv = (port: number, dir: string): Record<string, string> => ({
    KAFKA_TOPIC_NAMESPACE: BENCH_TOPIC_NAMESPACE,
    WEBHOOK_PORT: String(port),
    WEBHOOK_SPOOL_DIR: join(spoolDir, dir, 'spool'),
    VAULT_JOURNAL_DIR: join(spoolDir, dir, 'vault-journal'),
    WEBHOOK_WORKERS: String(WORKERS),
  });
  const started = (name: string, port: number, script: string): Contender => {
    const p = startPipelineProcess(name, script, receiverEnv(port, name));
    return { name, port, pid: p.child.pid, ready: p.ready, stop: () => p.stop(), next: 1000 };
  };
  const edgePort = barePort + 1;
  const edge: Contender = CPU_PROFILE_DIR
    ? { name: 'edge', port: edgePort, ...startProfiled(RECEIVER_MAIN, receiverEnv(edgePort, 'edge')), next: 1000 }
    : started('bench-webhook-receiver', edgePort, RECEIVER_MAIN);
  const baseline = baselineDir
    ? started('bench-webhook-receiver-baseline', barePort + 2, join(baselineDir, RECEIVER_MAIN))
    : undefined;
  const edges = baseline ? [edge, baseline] : [edge];
  try {
    await Promise.all([bareServer.ready, ...edges.map((e) => e.ready)]);
    process.stderr.write('bench: servers ready\n');
    await load(barePort, '/webhooks/acme-pay', reqs.slice(0, 500)); // warm-up
    // Separate processes, separate replay sets: each receiver gets the same requests.
    for (const e of edges) await load(e.port, '/webhooks/acme-pay', reqs.slice(500, 1000));
    const rounds: Round[] = [];
    const sent = async (e: Contender): Promise<Result> => {
      const r = await measured(e.pid, () => load(e.port, '/webhooks/acme-pay', reqs.slice(e.next)));
      e.next += r.requests;
      return r;
    };
    for (let round = 0; round < ROUNDS; round++) {
      const bare = await measured(bareServer.child.pid, () =>
        load(barePort, '/webhooks/acme-pay', reqs.slice(1000), true),
      );
      // The receivers take turns going first, so neither always follows the bare server's round.
      const order = round % 2 === 0 ? edges : [...edges].reverse();
      const results = new Map<Contender, Result>();
      for (const e of order) results.set(e, await sent(e));
      const edgeResult = results.get(edge)!;
      const baselineResult = baseline ? results.get(baseline) : undefined;
      rounds.push({
        bare,
        edge: edgeResult,
        ratio: edgeResult.rps / bare.rps,
        ...(baselineResult ? { baseline: baselineResult, vsBaseline: edgeResult.rps / baselineResult.rps } : {}),
      });
    }
    const ratios = rounds.map((r) => r.ratio);
    const vsBaseline = rounds.flatMap((r) => (r.vsBaseline === undefined ? [] : [r.vsBaseline]));
    const cpu = (r: Result): string =>
      r.cpuUsPerRequest
        ? `\n  ${''.padEnd(34)} CPU µs/request: server ${r.cpuUsPerRequest.server}, load generator ${r.cpuUsPerRequest.client}, rest of machine ${r.cpuUsPerRequest.rest} (machine ${(r.cpuUsPerRequest.machineBusy * 100).toFixed(0)}% busy)`
        : '';
    const row = (name: string, r: Result): string =>
      `  ${name.padEnd(34)} ${r.rps.toFixed(0).padStart(7)} req/s   p50 ${r.p50.toFixed(2)} ms   p99 ${r.p99.toFixed(2)} ms   (${r.requests} requests, ${r.errors} non-2xx)${cpu(r)}`;
    if (process.argv.includes('--json')) {
      process.stdout.write(
        `${JSON.stringify({ bench: 'edge', seconds: SECONDS, concurrency: CONCURRENCY, workers: WORKERS, baseline: BASELINE_REV || undefined, rounds, medianRatio: median(ratios), ...(vsBaseline.length > 0 ? { medianVsBaseline: median(vsBaseline) } : {}), stageCpuUs: stages })}\n`,
      );
    } else {
      process.stdout.write(
        `Edge vs bare Node http (${ROUNDS} rounds × ${SECONDS} s each, ${CONCURRENCY} concurrent, ~1.5 KB signed events, WEBHOOK_WORKERS=${WORKERS || 'cores'}; target ratio ≥ 0.5)${BASELINE_REV ? `, beside the receiver at ${BASELINE_REV}` : ''}\n`,
      );
      for (const [i, r] of rounds.entries()) {
        const base = r.baseline
          ? `\n${row(`webhook receiver at ${BASELINE_REV}`, r.baseline)}\n  ratio edge/${BASELINE_REV}: ${r.vsBaseline!.toFixed(2)}`
          : '';
        process.stdout.write(
          `round ${i + 1}\n${row('bare node http', r.bare)}\n${row('webhook receiver (full edge)', r.edge)}\n  ratio edge/bare: ${r.ratio.toFixed(2)}${base}\n`,
        );
      }
      process.stdout.write(
        `edge stages, CPU µs per request in one process (no I/O): ${Object.entries(stages)
          .map(([k, v]) => `${k} ${v}`)
          .join('; ')}\n`,
      );
      process.stdout.write(
        `ratio edge/bare over ${ROUNDS} rounds: median ${median(ratios).toFixed(2)}, range ${range(ratios)}\n`,
      );
      if (vsBaseline.length > 0) {
        process.stdout.write(
          `ratio edge/${BASELINE_REV} (req/s, same rounds): median ${median(vsBaseline).toFixed(2)}, range ${range(vsBaseline)}\n`,
        );
      }
    }
    if (rounds.some((r) => r.edge.errors > 0)) process.exitCode = 1;
  } finally {
    await Promise.all([bareServer.stop(), ...edges.map((e) => e.stop())]);
    rmSync(spoolDir, { recursive: true, force: true });
    if (baselineDir) rmSync(baselineDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

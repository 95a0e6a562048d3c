import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config';
import { signStripe } from '../src/ingest/signatures';
import { parsePartners } from '../src/ingest/webhook-receiver';
import { up } from '../src/stack/cli';
import { startPipelineProcess } from '../src/starters/processes';

// Edge throughput: the full webhook receiver (signature + validation + tokenization + vault +
// Kafka acks=all) against a bare Node http server, same requests, same machine, same run.
// The ratio is the figure (target ≥ 0.5×); absolute numbers move with the machine's load.

const SECONDS = Number(process.env.BENCH_EDGE_SECONDS ?? 6);
const CONCURRENCY = Number(process.env.BENCH_EDGE_CONCURRENCY ?? 32);

interface Result {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
}

function bodies(n: number): { body: string; signature: string }[] {
  const partner = parsePartners(loadConfig().WEBHOOK_PARTNERS).find((p) => p.scheme === 'stripe')!;
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

async function load(port: number, path: string, reqs: { body: string; signature: string }[]): Promise<Result> {
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
      while (Date.now() < deadline && next < reqs.length) {
        const r = reqs[next++]!;
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

async function main(): Promise<void> {
  await up();
  const reqs = bodies(Number(process.env.BENCH_EDGE_REQUESTS ?? 200_000));
  process.stderr.write(`bench: ${reqs.length} signed requests prepared\n`);
  const spoolDir = mkdtempSync(join(tmpdir(), 'paylink-bench-spool-'));
  const barePort = 30_000 + Math.floor(Math.random() * 10_000);
  const edgePort = barePort + 1;
  const bare = startPipelineProcess('bench-bare-http', 'bench/bare-server.ts', { WEBHOOK_PORT: String(barePort) });
  const edge = startPipelineProcess('bench-webhook-receiver', 'src/ingest/webhook-receiver-main.ts', {
    WEBHOOK_PORT: String(edgePort),
    WEBHOOK_SPOOL_DIR: spoolDir,
  });
  try {
    await Promise.all([bare.ready, edge.ready]);
    process.stderr.write('bench: servers ready\n');
    await load(barePort, '/webhooks/acme-pay', reqs.slice(0, 500)); // warm-up
    await load(edgePort, '/webhooks/acme-pay', reqs.slice(500, 1000));
    const mid = 1000 + Math.floor((reqs.length - 1000) / 2);
    const bareResult = await load(barePort, '/webhooks/acme-pay', reqs.slice(1000, mid));
    const edgeResult = await load(edgePort, '/webhooks/acme-pay', reqs.slice(mid));
    const ratio = edgeResult.rps / bareResult.rps;
    const row = (name: string, r: Result): string =>
      `  ${name.padEnd(34)} ${r.rps.toFixed(0).padStart(7)} req/s   p50 ${r.p50.toFixed(2)} ms   p99 ${r.p99.toFixed(2)} ms   (${r.requests} requests, ${r.errors} non-2xx)`;
    if (process.argv.includes('--json')) {
      process.stdout.write(
        `${JSON.stringify({ bench: 'edge', seconds: SECONDS, concurrency: CONCURRENCY, bare: bareResult, edge: edgeResult, ratio })}\n`,
      );
    } else {
      process.stdout.write(
        `Edge vs bare Node http (${SECONDS} s each, ${CONCURRENCY} concurrent, ~1.5 KB signed events; target ratio ≥ 0.5)\n`,
      );
      process.stdout.write(
        `${row('bare node http', bareResult)}\n${row('webhook receiver (full edge)', edgeResult)}\n`,
      );
      process.stdout.write(`  ratio edge/bare: ${ratio.toFixed(2)}\n`);
    }
    if (edgeResult.errors > 0) process.exitCode = 1;
  } finally {
    await Promise.all([bare.stop(), edge.stop()]);
    rmSync(spoolDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

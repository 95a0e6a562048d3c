import { Agent, get } from 'node:http';
import { extname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

// GET /healthz every few ms on a connection of its own, from a thread of its own: a stall of the process that
// sends hostile requests (building a 1 MB body, say) must not count as the receiver's (docs/edge.md, "Fuzzing").

export interface HealthzStats {
  polls: number;
  /** Polls not answered 200 (or not at all within 10 s), with the first reasons. */
  failures: number;
  failureExamples: string[];
  maxMs: number;
  p99Ms: number;
  p50Ms: number;
}

interface PollerData {
  kind: 'healthz-poller';
  url: string;
  intervalMs: number;
}

const TIMEOUT_MS = 10_000;

const percentile = (sorted: number[], p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

const round = (ms: number): number => Math.round(ms * 10) / 10;

/** Time to a whole 200 answer, or why there was none. */
function pollOnce(agent: Agent, url: string): Promise<{ ms: number; failure?: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = get(url, { agent, timeout: TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('error', (err) => resolve({ ms: performance.now() - started, failure: err.message }));
      res.on('end', () => {
        const ms = performance.now() - started;
        resolve(res.statusCode === 200 ? { ms } : { ms, failure: `${res.statusCode} ${body.slice(0, 200)}` });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (err) => resolve({ ms: performance.now() - started, failure: err.message }));
  });
}

/** The thread's side: polls until the starter says stop, then answers its stats. */
function runPoller(data: PollerData): void {
  const port = parentPort!;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  const failureExamples: string[] = [];
  let failures = 0;
  let running = true;
  port.once('message', () => (running = false));
  void (async () => {
    while (running) {
      const { ms, failure } = await pollOnce(agent, data.url);
      if (failure === undefined) latencies.push(ms);
      else {
        failures += 1;
        if (failureExamples.length < 5) failureExamples.push(failure);
      }
      await new Promise((r) => setTimeout(r, data.intervalMs));
    }
    agent.destroy();
    const sorted = latencies.sort((a, b) => a - b);
    const stats: HealthzStats = {
      polls: latencies.length + failures,
      failures,
      failureExamples,
      maxMs: round(sorted.at(-1) ?? 0),
      p99Ms: round(percentile(sorted, 99)),
      p50Ms: round(percentile(sorted, 50)),
    };
    port.postMessage(stats);
  })();
}

/** Starts polling `base`/healthz every `intervalMs` in a worker thread; `stop()` ends it and answers the stats. */
export function pollHealthz(base: string, intervalMs = 10): { stop(): Promise<HealthzStats> } {
  const data: PollerData = { kind: 'healthz-poller', url: new URL('/healthz', base).href, intervalMs };
  // Run from TypeScript (tsx), the thread loads this file through tsx as well.
  const tsx = extname(__filename) === '.ts' ? `require(${JSON.stringify(require.resolve('tsx/cjs'))});` : '';
  const load = `${tsx}require(${JSON.stringify(__filename)});`;
  const worker = new Worker(load, { eval: true, workerData: data });
  const result = new Promise<HealthzStats>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the /healthz poller exited (code ${code}) before its stats`)));
  });
  return {
    async stop() {
      worker.postMessage('stop');
      try {
        return await result;
      } finally {
        await worker.terminate();
      }
    },
  };
}

if (!isMainThread && (workerData as Partial<PollerData> | undefined)?.kind === 'healthz-poller') {
  runPoller(workerData as PollerData);
}

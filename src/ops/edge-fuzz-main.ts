import { parseArgs } from 'node:util';
import { loadConfig } from '../config';
import { type Logger, createLogger, errorMessage } from '../logger';
import { type EdgeFuzzSummary, FUZZ_MIXES, type FuzzMix, fuzzFailures } from './edge-fuzz';
import { fuzzEdge } from './edge-fuzz-run';

// `npm run fuzz:edge -- --requests N --seed S [--concurrency C] [--mix all|heavy] [--url URL] [--json]`: the edge
// fuzz of test/integration/edge-fuzz.test.ts, longer. Without --url it starts a receiver in this process on the
// configured stack (Kafka, the vault's Postgres, S3); with --url it sends to a receiver already running (start it
// with KAFKA_TOPIC_NAMESPACE=fuzz). Either way it writes to the `fuzz` topic namespace, which no pipeline consumer
// reads, and checks what was committed there. Exit 1 when a check fails.

const log = createLogger('fuzz-edge');

const USAGE =
  'usage: npm run fuzz:edge -- [--requests N] [--seed S] [--concurrency C] [--mix all|heavy] [--url http://host:port] [--json]';

function printText(s: EdgeFuzzSummary, failures: string[]): void {
  const lines = [
    `edge fuzz: seed ${s.seed}, ${s.requests} requests in ${(s.durationMs / 1000).toFixed(1)} s`,
    `statuses: ${Object.entries(s.statuses)
      .map(([k, v]) => `${k} ×${v}`)
      .join(', ')}`,
    'by class:',
    ...Object.entries(s.byClass).map(
      ([cls, statuses]) =>
        `  ${cls.padEnd(36)} ${Object.entries(statuses)
          .map(([k, v]) => `${k} ×${v}`)
          .join(', ')}`,
    ),
    `forgeries accepted: ${s.forgeriesAccepted}; 5xx: ${s.serverErrors}; no answer: ${s.transportErrors}; Adyen replays produced again: ${s.replaysProduced}`,
    `/healthz: ${s.healthz.polls} polls, ${s.healthz.failures} failed; p50 ${s.healthz.p50Ms} ms, p99 ${s.healthz.p99Ms} ms, max ${s.healthz.maxMs} ms`,
    `delivered exactly once: ${s.delivery.ok ? 'yes' : 'NO'} — ${s.delivery.acceptedEvents} events answered 2xx, ${s.delivery.rawRecords} on the raw topic, ` +
      `${s.delivery.claimChecked} claim-checked, ${s.delivery.quarantineRecords} quarantine records; duplicates ${s.delivery.duplicates.length}, ` +
      `missing ${s.delivery.missing.length}, refused yet produced ${s.delivery.unexpected.length}`,
    failures.length === 0 ? 'PASS' : `FAIL (seed ${s.seed}):\n  ${failures.join('\n  ')}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '5000' },
      seed: { type: 'string', default: '1' },
      concurrency: { type: 'string', default: '8' },
      mix: { type: 'string', default: 'all' },
      url: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const [requests, seed, concurrency] = [values.requests, values.seed, values.concurrency].map(Number) as [
    number,
    number,
    number,
  ];
  const mix = values.mix as FuzzMix;
  if (
    ![requests, seed, concurrency].every((n) => Number.isInteger(n) && n >= 0) ||
    concurrency < 1 ||
    !FUZZ_MIXES.includes(mix)
  )
    throw new Error(USAGE);
  const tty = !values.json && process.stderr.isTTY;
  let last = 0;
  const progress = tty
    ? (answered: number, total: number): void => {
        if (answered !== total && Date.now() - last < 250) return;
        last = Date.now();
        process.stderr.write(`\r${answered}/${total} requests answered`);
        if (answered === total) process.stderr.write('\n');
      }
    : undefined;
  // Each refused request is an info line; the summary counts them, so only warnings and errors are logged.
  const quiet: Logger = { ...log, debug: () => undefined, info: () => undefined };
  const summary = await fuzzEdge(
    loadConfig(),
    { requests, seed, concurrency, mix, ...(values.url ? { url: values.url } : {}), ...(progress ? { progress } : {}) },
    quiet,
  );
  const failures = fuzzFailures(summary);
  if (values.json) process.stdout.write(`${JSON.stringify({ ...summary, failures })}\n`);
  else printText(summary, failures);
  if (failures.length > 0) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((err: unknown) => {
    log.error('fuzz:edge failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

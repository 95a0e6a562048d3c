import { Client, Connection } from '@temporalio/client';
import { NativeConnection, bundleWorkflowCode } from '@temporalio/worker';
import type { PaymentEvent } from '../src/contracts/payment-event';
import { loadConfig } from '../src/config';
import { countActionsForWorkflows } from '../src/ops/billable-actions';
import { simulatePayments } from '../src/simulator/payments';
import { up } from '../src/stack/cli';
import { summarizeLedger } from '../src/stores/ledger';
import { migrateAsOwner } from '../src/stores/migrate';
import { createPool } from '../src/stores/postgres';
import { type RoutingPolicy, routeFacts } from '../src/streams/payment-router';
import { createPaymentWorker } from '../src/workers/payment-worker';
import { paymentWorkflowId } from '../src/workflows/payment';

// Billable Temporal actions per payment, measured from real histories on the dev server.
// The target: at most 5 for created → captured → settled delivered as 3 events.

const PAYMENTS = Number(process.env.BENCH_PAYMENTS ?? 20);
const PRICE_PER_MILLION = [25, 50];
const PAYMENTS_PER_DAY = 1_500_000;

interface Variant {
  name: string;
  lifecycleSearchAttribute: boolean;
  duplicate: boolean;
}

const VARIANTS: Variant[] = [
  {
    name: '3 events, PaymentStatus only for STUCK/ANOMALY (default)',
    lifecycleSearchAttribute: false,
    duplicate: false,
  },
  { name: '3 events, each delivered twice', lifecycleSearchAttribute: false, duplicate: true },
  { name: '3 events, PaymentStatus mirrors every lifecycle step', lifecycleSearchAttribute: true, duplicate: false },
];

async function main(): Promise<void> {
  const config = loadConfig();
  await up();
  await migrateAsOwner(config);
  const pool = createPool(config, 8);
  const nativeConnection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  const taskQueue = `bench-${Date.now().toString(36)}`;
  const worker = await createPaymentWorker({
    connection: nativeConnection,
    namespace: config.TEMPORAL_NAMESPACE,
    pool,
    taskQueue,
    workflowBundle: await bundleWorkflowCode({
      workflowsPath: require.resolve('../src/workflows'),
      logger: quietLogger,
    }),
  });
  const rows: { variant: string; payments: number; actionsPerPayment: number; byKind: Record<string, number> }[] = [];
  try {
    await worker.runUntil(async () => {
      for (const variant of VARIANTS) {
        const runId = `bench-${Date.now().toString(36)}`;
        const sim = simulatePayments({ payments: PAYMENTS, seed: 7, duplicateRate: 0, runId, happyPathOnly: true });
        // The 3-event lifecycle: a sale reported as created, captured, settled (no separate authorization).
        const threeEvents = sim.events.filter((e) => e.type !== 'authorized');
        const policy: RoutingPolicy = {
          preconditionTimeoutMs: 60_000,
          lifecycleSearchAttribute: variant.lifecycleSearchAttribute,
          taskQueue,
        };
        for (const type of ['created', 'captured', 'settled'] as const) {
          const round: PaymentEvent[] = threeEvents.filter((e) => e.type === type);
          await routeFacts(client, pool, variant.duplicate ? [...round, ...round] : round, policy);
          // Each event in its own workflow task, as in production where events are minutes apart.
          await waitForPostings(pool, runId, type === 'created' ? 0 : type === 'captured' ? PAYMENTS : 2 * PAYMENTS);
          if (type === 'created') await new Promise((r) => setTimeout(r, 1000));
        }
        const ids = [...new Set(threeEvents.map((e) => paymentWorkflowId(e.paymentId)))];
        for (const id of ids) await client.workflow.getHandle(id).result();
        const counted = await countActionsForWorkflows(client, ids);
        rows.push({
          variant: variant.name,
          payments: ids.length,
          actionsPerPayment: counted.total / ids.length,
          byKind: counted.byKind,
        });
      }
    });
  } finally {
    await pool.end();
    await connection.close();
    await nativeConnection.close();
  }
  const report = rows.map((r) => ({
    ...r,
    monthlyUsd: PRICE_PER_MILLION.map((p) => Math.round((PAYMENTS_PER_DAY * r.actionsPerPayment * 30 * p) / 1e6)),
  }));
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify({ bench: 'temporal-actions-per-payment', target: 5, rows: report })}\n`);
    return;
  }
  process.stdout.write(
    `Temporal billable actions per payment (from histories, ${PAYMENTS} payments per variant; target ≤ 5)\n`,
  );
  for (const r of report) {
    process.stdout.write(
      `  ${r.actionsPerPayment.toFixed(2).padStart(5)}  ${r.variant}\n         ${JSON.stringify(r.byKind)}\n` +
        `         at ${PAYMENTS_PER_DAY.toLocaleString('en-US')} payments/day: $${r.monthlyUsd[0]}–$${r.monthlyUsd[1]}/month\n`,
    );
  }
}

async function waitForPostings(pool: ReturnType<typeof createPool>, runId: string, entries: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await summarizeLedger(pool, `${runId}-`)).entries < entries) {
    if (Date.now() > deadline) throw new Error(`postings for ${runId} did not reach ${entries} within 60 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { Client, Connection, ScheduleNotFoundError, WorkflowNotFoundError } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { parseSlas } from '../activities/sla';
import { type Config, loadConfig } from '../config';
import { ACCOUNTS, type AccountCode } from '../ledger/posting-rules';
import {
  PAYMENT_TASK_QUEUE,
  type PaymentState,
  adjustPaymentUpdate,
  paymentStateQuery,
  paymentWorkflowId,
  resolvePaymentUpdate,
} from '../workflows/payment';
import { type SlaSweepInput, slaSweepWorkflow } from '../workflows/sla-sweep';
import { errorMessage } from '../logger';
import { reopenPayment } from '../ops/payment-reopen';
import { createPool } from '../stores/postgres';
import { routingPolicy } from '../streams/payment-router';

// `npm run payment -- <command>`: what ops do to payments. Every change goes through the payment's
// own workflow (an update), which records it as an audited fact in the ledger database.

const SLA_SWEEP_SCHEDULE = 'payment-sla-sweep';

const USAGE = `usage: npm run payment -- <command>
  stuck [--anomalies]                         list payments flagged STUCK (or ANOMALY)
  show <paymentId>                            the payment's full state
  resolve <paymentId> --reason R [--close] [--actor A]
                                              clear STUCK/ANOMALY with a reason; --close ends the payment
  adjust <paymentId> --account ACC --side debit|credit --amount MINOR --currency CCY --reason R [--id ID] [--actor A]
                                              post a manual adjustment against suspense
  reopen <paymentId>                          start a closed payment's run again: it loads every accepted
                                              fact and posts what the ledger lacks (ledger.missing_postings)
  sweep                                       run the SLA sweep now (PAYMENT_SLAS; expires waits idle
                                              past PAYMENT_PRECONDITION_TIMEOUT_MS)
  schedule-sweep [--every 5m]                 create or update the Temporal Schedule that runs the sweep`;

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      reason: { type: 'string' },
      actor: { type: 'string', default: `${userInfo().username}@${hostname()}` },
      close: { type: 'boolean', default: false },
      anomalies: { type: 'boolean', default: false },
      account: { type: 'string' },
      side: { type: 'string' },
      amount: { type: 'string' },
      currency: { type: 'string' },
      id: { type: 'string' },
      every: { type: 'string', default: '5m' },
      json: { type: 'boolean', default: false },
    },
  });
  const [command, paymentId] = positionals;
  const config = loadConfig();
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  const print = (value: unknown): void => {
    process.stdout.write(values.json ? `${JSON.stringify(value)}\n` : `${JSON.stringify(value, null, 2)}\n`);
  };
  try {
    switch (command) {
      case 'stuck': {
        const status = values.anomalies ? 'ANOMALY' : 'STUCK';
        const rows: { paymentId: string; status: string; startTime: string }[] = [];
        const query = `WorkflowType = "paymentWorkflow" AND ExecutionStatus = "Running" AND PaymentStatus = "${status}"`;
        for await (const w of client.workflow.list({ query })) {
          rows.push({
            paymentId: w.workflowId.replace(/^payment\//, ''),
            status,
            startTime: w.startTime.toISOString(),
          });
        }
        print(rows);
        break;
      }
      case 'show': {
        const handle = client.workflow.getHandle(paymentWorkflowId(required('paymentId', paymentId)));
        const description = await handle.describe();
        if (description.status.name === 'RUNNING') {
          await requireWorker(client, config);
          print(await handle.query(paymentStateQuery));
        } else {
          print({ closed: description.status.name, result: (await handle.result()) as PaymentState });
        }
        break;
      }
      case 'resolve': {
        const handle = client.workflow.getHandle(paymentWorkflowId(required('paymentId', paymentId)));
        await requireWorker(client, config);
        const state = await handle.executeUpdate(resolvePaymentUpdate, {
          args: [{ actor: values.actor, reason: required('--reason', values.reason), close: values.close ?? false }],
        });
        print({ paymentId, attention: state.attention, status: state.status, closedBy: state.closedBy });
        break;
      }
      case 'adjust': {
        const handle = client.workflow.getHandle(paymentWorkflowId(required('paymentId', paymentId)));
        const account = required('--account', values.account);
        if (!(ACCOUNTS as readonly string[]).includes(account))
          throw new Error(`--account must be one of ${ACCOUNTS.join(', ')}`);
        const side = required('--side', values.side);
        if (side !== 'debit' && side !== 'credit') throw new Error(`--side must be debit or credit, got "${side}"`);
        const amount = Number(required('--amount', values.amount));
        if (!Number.isSafeInteger(amount) || amount <= 0)
          throw new Error(`--amount must be a positive integer in minor units, got "${values.amount}"`);
        await requireWorker(client, config);
        const adjustmentId = values.id ?? randomUUID();
        await handle.executeUpdate(adjustPaymentUpdate, {
          args: [
            {
              adjustmentId,
              actor: values.actor,
              reason: required('--reason', values.reason),
              account: account as AccountCode,
              side,
              amountMinor: amount,
              currency: required('--currency', values.currency),
            },
          ],
        });
        print({ paymentId, adjustmentId, postingKey: `payment/${paymentId}/manual:${adjustmentId}` });
        break;
      }
      case 'reopen': {
        await requireWorker(client, config);
        const pool = createPool(config, 1);
        try {
          print(await reopenPayment({ client, pool, policy: routingPolicy(config) }, required('paymentId', paymentId)));
        } finally {
          await pool.end();
        }
        break;
      }
      case 'sweep': {
        await requireWorker(client, config);
        print(
          await client.workflow.execute(slaSweepWorkflow, {
            workflowId: `sla-sweep/manual-${Date.now()}`,
            taskQueue: PAYMENT_TASK_QUEUE,
            args: [sweepInput(config)],
          }),
        );
        break;
      }
      case 'schedule-sweep': {
        const every = values.every ?? '5m';
        if (!/^\d+[smh]$/.test(every)) throw new Error(`--every must look like 30s, 5m or 1h, got "${every}"`);
        const action = {
          type: 'startWorkflow' as const,
          workflowType: slaSweepWorkflow,
          taskQueue: PAYMENT_TASK_QUEUE,
          args: [sweepInput(config)] as const,
        };
        const handle = client.schedule.getHandle(SLA_SWEEP_SCHEDULE);
        try {
          await handle.update((previous) => ({
            ...previous,
            spec: { intervals: [{ every: every as `${number}m` }] },
            action,
          }));
        } catch (err) {
          if (!(err instanceof ScheduleNotFoundError)) throw err;
          await client.schedule.create({
            scheduleId: SLA_SWEEP_SCHEDULE,
            spec: { intervals: [{ every: every as `${number}m` }] },
            action: { ...action, args: [...action.args] },
            policies: { overlap: 'SKIP' }, // a slow sweep is never doubled
          });
        }
        print({ scheduleId: SLA_SWEEP_SCHEDULE, every, slas: config.PAYMENT_SLAS });
        break;
      }
      default:
        throw new Error(`${command ? `unknown command "${command}"` : 'no command'}\n${USAGE}`);
    }
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new Error(`no payment workflow ${err.workflowId ?? ''}`);
    throw err;
  } finally {
    await connection.close();
  }
}

/** What every sweep checks: the stage SLAs, and waits idle past the precondition timeout. */
function sweepInput(config: Config): SlaSweepInput {
  return {
    slas: parseSlas(config.PAYMENT_SLAS),
    limit: 10_000,
    preconditionTimeoutMs: config.PAYMENT_PRECONDITION_TIMEOUT_MS,
  };
}

function required(name: string, value: string | undefined): string {
  if (value === undefined || value.trim() === '') throw new Error(`${name} is required\n${USAGE}`);
  return value;
}

/** Updates and queries need a worker: fail at once instead of hanging. */
async function requireWorker(client: Client, config: Config): Promise<void> {
  const described = await client.workflowService.describeTaskQueue({
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: { name: PAYMENT_TASK_QUEUE },
    taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  if ((described.pollers ?? []).length === 0) {
    throw new Error(`no worker is polling task queue "${PAYMENT_TASK_QUEUE}": start one with \`npm run worker\``);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`payment: ${errorMessage(err)}\n`);
  process.exit(1);
});

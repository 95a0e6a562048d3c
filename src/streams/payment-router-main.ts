import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection, type WorkflowClientInterceptor } from '@temporalio/client';
import { loadConfig } from '../config';
import { createPool } from '../stores/postgres';
import { createLogger, errorMessage } from '../logger';
import { createConsumer, createKafka, createProducer } from './kafka';
import { PAYMENT_ROUTER_GROUP, runPaymentRouter } from './payment-router';

const log = createLogger('payment-router');

async function main(): Promise<void> {
  const config = loadConfig();
  const pool = createPool(config); // first (it connects lazily): a refused production secret stops the start at once
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const kafka = createKafka(config, 'paylink-payment-router');
  const consumer = createConsumer(kafka, PAYMENT_ROUTER_GROUP);
  const producer = createProducer(kafka);
  const stopped = new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  try {
    await Promise.all([consumer.connect(), producer.connect()]);
    // Crash-test fault injection, off unless set: ms to hold each signalWithStart after Temporal accepted it.
    const faultSignalDelayMs = config.PAYLINK_FAULT_SIGNAL_DELAY_MS;
    const delayed: WorkflowClientInterceptor = {
      async signalWithStart(input, next) {
        const runId = await next(input);
        await sleep(faultSignalDelayMs); // accepted by Temporal, not yet marked signalled in the inbox
        return runId;
      },
    };
    const client = new Client({
      connection,
      namespace: config.TEMPORAL_NAMESPACE,
      interceptors: { workflow: faultSignalDelayMs > 0 ? [delayed] : [] },
    });
    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
    const crashed = new Promise<never>((_, reject) =>
      consumer.on(consumer.events.CRASH, (e) => {
        if (!e.payload.restart) reject(e.payload.error);
      }),
    );
    await runPaymentRouter({
      client,
      consumer,
      producer,
      pool,
      log,
      policy: {
        preconditionTimeoutMs: config.PAYMENT_PRECONDITION_TIMEOUT_MS,
        lifecycleSearchAttribute: config.PAYMENT_LIFECYCLE_SEARCH_ATTRIBUTE,
      },
    });
    await Promise.race([joined, crashed]);
    log.info('ready', { group: PAYMENT_ROUTER_GROUP, ...(faultSignalDelayMs > 0 && { faultSignalDelayMs }) });
    await Promise.race([stopped, crashed]);
  } finally {
    await consumer.disconnect();
    await producer.disconnect();
    await connection.close();
    await pool.end();
  }
}

main().catch((err: unknown) => {
  log.error('router failed', { error: errorMessage(err) });
  process.exit(1);
});

import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection, type WorkflowClientInterceptor } from '@temporalio/client';
import { loadConfig } from '../config';
import { createPool } from '../stores/postgres';
import { createLogger } from '../logger';
import { runConsumer, runMain } from './consumer-runner';
import { createConsumer, createKafka, createProducer, topicsFor } from './kafka';
import { PAYMENT_ROUTER_GROUP, paymentRouterBatches, routingPolicy } from './payment-router';

const log = createLogger('payment-router');

async function main(): Promise<void> {
  const config = loadConfig();
  const topics = topicsFor(config);
  const pool = createPool(config); // first (it connects lazily): a refused production secret stops the start at once
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const kafka = createKafka(config, 'paylink-payment-router');
  const consumer = createConsumer(kafka, PAYMENT_ROUTER_GROUP, config.KAFKA_SESSION_TIMEOUT_MS);
  const producer = createProducer(kafka);
  try {
    await producer.connect();
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
    await runConsumer({
      consumer,
      topics: [topics.paymentEvents],
      handle: paymentRouterBatches({
        client,
        producer,
        topics,
        pool,
        log,
        policy: routingPolicy(config),
      }),
      log,
      ready: faultSignalDelayMs > 0 ? { faultSignalDelayMs } : {},
    });
  } finally {
    await consumer.disconnect();
    await producer.disconnect();
    await connection.close();
    await pool.end();
  }
}

runMain(log, main);

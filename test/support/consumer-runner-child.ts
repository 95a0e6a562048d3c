import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { runConsumer, runMain } from '../../src/streams/consumer-runner';
import { createConsumer, createKafka } from '../../src/streams/kafka';

// A consumer process as the pipeline's are, for test/integration/consumer-runner.test.ts: each batch takes
// RUNNER_TEST_BATCH_MS; a message whose value is "crash" makes the handler throw a bug (a TypeError).

const log = createLogger('consumer-runner-child');

runMain(log, async () => {
  const config = loadConfig();
  const topic = process.env.RUNNER_TEST_TOPIC!;
  const group = process.env.RUNNER_TEST_GROUP!;
  const batchMs = Number(process.env.RUNNER_TEST_BATCH_MS ?? '0');
  const consumer = createConsumer(createKafka(config, 'consumer-runner-child'), group);
  await runConsumer({
    consumer,
    topics: [topic],
    log,
    handle: async (batch) => {
      const offsets = `${batch.messages[0]!.offset}-${batch.messages[batch.messages.length - 1]!.offset}`;
      log.info('batch started', { offsets });
      if (batch.messages.some((m) => m.value?.toString() === 'crash')) {
        throw new TypeError(`cannot handle the message at ${offsets}`);
      }
      await sleep(batchMs);
      log.info('batch finished', { offsets });
      return 'commit';
    },
  });
});

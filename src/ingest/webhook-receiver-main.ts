import { join } from 'node:path';
import { loadConfig, versionedKeys } from '../config';
import { createLogger, errorMessage } from '../logger';
import { dataDir } from '../stack/service';
import { openVault } from '../stores/vault';
import { createKafka, createProducer } from '../streams/kafka';
import { openSpool } from './spool';
import { createTokenizer } from './tokenize';
import { createWebhookReceiver, parsePartners } from './webhook-receiver';

const log = createLogger('webhook-receiver');

async function main(): Promise<void> {
  const config = loadConfig();
  const tokenKeys = versionedKeys('TOKENIZATION_KEYS', config.TOKENIZATION_KEYS);
  const spool = await openSpool({
    dir: config.WEBHOOK_SPOOL_DIR || join(dataDir, 'spool', 'webhooks'),
    maxBytes: config.WEBHOOK_SPOOL_MAX_BYTES,
  });
  const vault = await openVault(config);
  const producer = createProducer(createKafka(config, 'paylink-webhook-receiver'));
  // Not awaited: the edge must start (and spool) while Kafka is down; kafkajs connects on first send.
  producer.connect().catch((err: unknown) => log.warn('kafka not reachable at start', { error: errorMessage(err) }));
  const receiver = createWebhookReceiver({
    partners: parsePartners(config.WEBHOOK_PARTNERS),
    producer,
    spool,
    tokenizer: createTokenizer({ keys: Object.fromEntries(tokenKeys.keys), activeVersion: tokenKeys.active }),
    vault,
    log,
    maxBodyBytes: config.WEBHOOK_MAX_BODY_BYTES,
    kafkaTimeoutMs: config.WEBHOOK_KAFKA_TIMEOUT_MS,
  });
  let draining = false;
  const drainTimer = setInterval(() => {
    if (draining) return;
    draining = true;
    void receiver.drainSpool().finally(() => (draining = false));
  }, 500);
  await new Promise<void>((resolve) => receiver.server.listen(config.WEBHOOK_PORT, '127.0.0.1', resolve));
  const address = receiver.server.address();
  log.info('ready', {
    port: typeof address === 'object' && address ? address.port : config.WEBHOOK_PORT,
    spooled: spool.size().records,
  });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(drainTimer);
  await receiver.close();
  await producer.disconnect().catch(() => undefined);
  await spool.close();
  await vault.close();
}

main().catch((err: unknown) => {
  log.error('webhook receiver failed', { error: errorMessage(err) });
  process.exit(1);
});

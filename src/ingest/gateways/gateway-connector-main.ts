import { join, resolve } from 'node:path';
import { loadConfig } from '../../config';
import { createLogger, errorMessage } from '../../logger';
import { openVault } from '../../stores/vault';
import { createKafka } from '../../streams/kafka';
import { createEdgePublisher } from '../edge-publisher';
import { gatewayConnectorFromConfig, parseGatewayFeeds } from './gateway-connector';

const log = createLogger('gateway-connector');

// In-flight pages get this long to finish on SIGTERM; an unfinished one is re-read after restart.
const STOP_DEADLINE_MS = 10_000;

async function main(): Promise<void> {
  const config = loadConfig();
  const feeds = parseGatewayFeeds(config.GATEWAY_FEEDS);
  const vault = await openVault(config);
  const stateDir = config.GATEWAY_STATE_DIR || join(config.PAYLINK_DATA, 'ingest', 'gateways');
  // The cursor directory is this connector's slot: a restarted one fences its zombie's transactions.
  const kafka = createKafka(config, 'paylink-gateway-connector');
  const publisher = createEdgePublisher(config, kafka, 'paylink-gateways', resolve(stateDir), log);
  try {
    const connector = gatewayConnectorFromConfig(config, { feeds, publisher, vault, log, stateDir });
    connector.start();
    log.info('ready', { feeds: feeds.map((f) => `${f.gateway}=${f.url}`) });
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), STOP_DEADLINE_MS);
    });
    const how = await Promise.race([connector.stop().then(() => 'stopped' as const), deadline]);
    clearTimeout(timer);
    log.info('stopped', { how, regions: connector.status() });
  } finally {
    await publisher.close().catch(() => undefined);
    await vault.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log.error('gateway connector failed', { error: errorMessage(err) });
    process.exit(1);
  },
);

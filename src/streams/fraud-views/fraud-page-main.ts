import { loadConfig } from '../../config';
import { createLogger } from '../../logger';
import { runMain, untilSignal } from '../consumer-runner';
import { createFraudViewsServer } from './server';

// `npm run fraud-page`: the fraud views' API, event stream and live page on FRAUD_PAGE_PORT, reading
// the risk store's snapshot about once a second, until SIGTERM/SIGINT.

const log = createLogger('fraud-page');

runMain(log, async () => {
  const config = loadConfig();
  // Imported lazily: the store's client code loads only in the process that serves the page.
  const { createViewsSourceFromConfig } = await import('./source-from-config');
  const source = await createViewsSourceFromConfig(config, log);
  try {
    const page = await createFraudViewsServer({
      source,
      pollIntervalMs: config.FRAUD_PAGE_POLL_INTERVAL_MS,
      port: config.FRAUD_PAGE_PORT,
      host: config.FRAUD_PAGE_HOST,
      staleAfterMs: config.FRAUD_PAGE_STALE_AFTER_MS,
      maxClients: config.FRAUD_PAGE_MAX_CLIENTS,
      logger: log,
    });
    log.info('ready', { url: `${page.url}/`, api: `${page.url}/api/openapi.json` });
    await untilSignal();
    await page.close();
  } finally {
    await source.close();
  }
});

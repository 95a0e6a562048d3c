import type { Config } from '../../config';
import type { Logger } from '../../logger';
import type { ViewsSource } from './snapshot';
import { createRiskViewsSource } from './views-source';

// Where `npm run fraud-page` gets its ViewsSource: the risk store's, built from config. The server
// depends only on the ViewsSource contract (./snapshot.ts), never on how a source reads the store.

/** A source the page's process owns: closed (its pool, its clients) when the process stops. */
export interface ClosableViewsSource extends ViewsSource {
  close(): Promise<void>;
}

/** The risk store's ViewsSource for this config (RISK_DATABASE_URL, the fraud-views group's lag, its thresholds). */
export function createViewsSourceFromConfig(config: Config, log: Logger): Promise<ClosableViewsSource> {
  log.info('fraud-views source: the risk store', { group: config.FRAUD_VIEWS_GROUP });
  return Promise.resolve(createRiskViewsSource(config));
}

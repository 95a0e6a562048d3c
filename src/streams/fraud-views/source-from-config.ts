import type { Config } from '../../config';
import type { Logger } from '../../logger';
import type { ViewsSource } from './snapshot';

// Where `npm run fraud-page` gets its ViewsSource: the risk store's, built from config. The server
// depends only on the ViewsSource contract (./snapshot.ts), never on how a source reads the store.

/** A source the page's process owns: closed (its pool, its clients) when the process stops. */
export interface ClosableViewsSource extends ViewsSource {
  close(): Promise<void>;
}

export class ViewsSourceNotWired extends Error {
  constructor() {
    super(
      'the fraud-views page has no ViewsSource yet: createViewsSourceFromConfig in src/streams/fraud-views/source-from-config.ts must build the risk store’s source',
    );
    this.name = 'ViewsSourceNotWired';
  }
}

/** The risk store's ViewsSource for this config. Not wired yet: the integrator replaces the body. */
export async function createViewsSourceFromConfig(_config: Config, _log: Logger): Promise<ClosableViewsSource> {
  throw new ViewsSourceNotWired();
}

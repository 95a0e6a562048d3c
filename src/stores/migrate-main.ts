import { loadConfig } from '../config';
import { createLogger, errorMessage } from '../logger';
import { migrateAsOwner } from './migrate';

const log = createLogger('migrate');

async function main(): Promise<void> {
  const applied = await migrateAsOwner(loadConfig());
  log.info(applied.length > 0 ? 'applied migrations' : 'schema up to date', { applied });
}

main().catch((err: unknown) => {
  log.error('migration failed', { error: errorMessage(err) });
  process.exit(1);
});

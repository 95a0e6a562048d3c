import { loadConfig } from '../config';
import { createLogger, errorMessage } from '../logger';
import { migrate } from './migrate';
import { createPool } from './postgres';

const log = createLogger('migrate');

async function main(): Promise<void> {
  const pool = createPool(loadConfig(), 1);
  try {
    const applied = await migrate(pool);
    log.info(applied.length > 0 ? 'applied migrations' : 'schema up to date', { applied });
  } finally {
    await pool.end();
  }
}

main().catch((err: unknown) => {
  log.error('migration failed', { error: errorMessage(err) });
  process.exit(1);
});

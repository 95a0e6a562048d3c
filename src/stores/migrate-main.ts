import { loadConfig } from '../config';
import { createLogger, errorMessage } from '../logger';
import { migrateAsOwner } from './migrate';
import { migrateSnowflake } from './snowflake-migrate';

const log = createLogger('migrate');

async function main(): Promise<void> {
  const config = loadConfig();
  const applied = await migrateAsOwner(config);
  log.info(applied.length > 0 ? 'applied migrations' : 'schema up to date', { applied });
  // The finance tables in Snowflake (and, on a real account, their governance set); --postgres-only skips them.
  if (!process.argv.includes('--postgres-only')) {
    const snowflake = await migrateSnowflake(config);
    log.info(snowflake.length > 0 ? 'applied snowflake migrations' : 'snowflake schema up to date', {
      applied: snowflake,
    });
  }
}

main().catch((err: unknown) => {
  log.error('migration failed', { error: errorMessage(err) });
  process.exit(1);
});

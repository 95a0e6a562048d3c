import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type SnowflakeSession, connectSnowflake } from '../../src/stores/snowflake';
import { migrateSnowflake, snowflakeMigrations, statementsOf } from '../../src/stores/snowflake-migrate';
import { config, requireServices } from '../support/stack';

// The local server cannot enforce governance (fakesnow has no roles, grants or policies); it must accept
// every statement of the governance set as an explicit no-op, and still refuse anything else it cannot run.

describe('local Snowflake server: the governance set runs as explicit no-ops', () => {
  let session: SnowflakeSession;
  before(async () => {
    await requireServices('snowflake');
    assert.ok(config.SNOWFLAKE_ACCESS_URL, 'these tests are for the local server (SNOWFLAKE_ACCESS_URL set)');
    await migrateSnowflake(config, ['finance']);
    session = await connectSnowflake(config);
  });
  after(() => session?.close());

  it('accepts every governance statement', async () => {
    const statements = snowflakeMigrations('governance').flatMap((m) => statementsOf(m.sql));
    assert.ok(statements.length > 50, `only ${statements.length} statements found`);
    for (const sql of statements) {
      await session.query(sql).catch((err: unknown) => {
        throw new Error(`governance statement refused locally: ${sql.slice(0, 120)}: ${(err as Error).message}`);
      });
    }
  });

  it('still fails SQL it cannot run, even next to a governance keyword', async () => {
    await assert.rejects(
      session.query('SELECT GRANT_NOTHING FROM FINANCE.NO_SUCH_TABLE'),
      /NO_SUCH_TABLE|does not exist/i,
    );
    await assert.rejects(session.query('CREATE WAREHOUSE IF NOT EXISTS NOPE_WH'), /syntax|parser|not|support/i);
  });
});

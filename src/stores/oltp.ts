import { Pool } from 'pg';
import { type Config, secretSetting } from '../config';
import { survivingIdleErrors } from './postgres';

// PayLink's own OLTP database, as CDC reads it: PayLink's payments API owns and writes these tables
// (locally the simulator plays that API and creates them); the pipeline only reads them.

/** The tables CDC captures, one topic each. */
export const OLTP_TABLES = ['payments', 'ledger_entries'] as const;

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function assertSchemaName(schema: string): string {
  if (!SCHEMA_NAME.test(schema)) throw new Error(`OLTP schema name "${schema}" must match ${SCHEMA_NAME.source}`);
  return schema;
}

export function createOltpPool(config: Config, max = 4): Pool {
  // UTC + ISO dates: timestamptz text (also in logical decoding, which runs in this session) is unambiguous.
  return survivingIdleErrors(
    new Pool({
      connectionString: secretSetting(config, 'OLTP_DATABASE_URL'),
      max,
      connectionTimeoutMillis: 5000,
      options: '-c TimeZone=UTC -c DateStyle=ISO,YMD',
    }),
    'OLTP_DATABASE_URL',
  );
}

import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../config';
import { createLogger, errorMessage } from '../logger';
import { traceMoney } from '../ops/finance-trace';
import { createPool } from '../stores/postgres';
import { createS3Client } from '../stores/s3';
import { connectSnowflake } from '../stores/snowflake';

// `npm run trace -- <paymentId | journal entry id | idempotency key> [--json]`: one payment's money trail
// from its source events to its Snowflake rows and seals (src/ops/finance-trace.ts, docs/finance.md).

const log = createLogger('trace');

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false } },
    strict: true,
  });
  const query = positionals[0];
  if (!query) throw new Error('usage: npm run trace -- <paymentId | journal entry id | idempotency key> [--json]');
  const config = loadConfig();
  const pool = createPool(config, 2);
  const snowflake = await connectSnowflake(config);
  const s3 = createS3Client(config);
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  try {
    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
    const trail = await traceMoney(
      {
        pool,
        snowflake,
        client,
        uiUrl: config.TEMPORAL_UI_URL,
        namespace: config.TEMPORAL_NAMESPACE,
        archive: { s3, bucket: config.S3_BUCKET },
      },
      query,
    );
    if (values.json) {
      process.stdout.write(`${JSON.stringify(trail)}\n`);
    } else if (!trail.paymentId) {
      process.stdout.write(`nothing found for "${query}" (not a payment id, journal entry id or idempotency key)\n`);
    } else {
      const lines = [`payment ${trail.paymentId}`];
      for (const h of trail.hops) {
        const indent =
          h.hop === 'journal line' ? '    ' : h.hop === 'snowflake row' || h.hop === 'seal' ? '    ' : '  ';
        lines.push(`${indent}${h.exists ? '✔' : '✘'} ${h.hop} ${h.ref} ${JSON.stringify(h.detail)}`);
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    if (!trail.paymentId || trail.hops.some((h) => !h.exists)) process.exitCode = 1;
  } finally {
    await connection.close();
    s3.destroy();
    await snowflake.close();
    await pool.end();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    log.error('trace failed', { error: errorMessage(err) });
    process.exit(1);
  });
}

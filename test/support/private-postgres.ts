import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pgBinDir, runAs } from '../../src/stack/postgres-service';

// A throwaway PostgreSQL cluster, reachable only through a Unix socket in its own directory, for tests
// that change cluster-wide settings (max_slot_wal_keep_size, checkpoints) which on the shared stack
// would invalidate every other lagging slot too.

export interface PrivatePostgres {
  /** A connection URL for `database` as the superuser `postgres` (trust auth, socket only). */
  url(database: string): string;
  /** Why a test failed: the cluster's own log. */
  logFile: string;
  stop(): void;
}

const PORT = 5432; // names the socket file inside the cluster's own directory: never a clash

export function startPrivatePostgres(options: {
  settings: Record<string, string>;
  initdb?: string[];
}): PrivatePostgres {
  const bin = pgBinDir();
  if (!bin)
    throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql; run `npm run stack -- up`');
  const dir = mkdtempSync(join(tmpdir(), 'paylink-pg-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const owner = runAs(); // Postgres refuses to run as root
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const pg = (command: string, args: string[]): void => {
    const [file, argv] = owner
      ? ['runuser', ['-u', owner.name, '--', join(bin, command), ...args]]
      : [join(bin, command), args];
    execFileSync(file, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  pg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', ...(options.initdb ?? [])]);
  const settings = { listen_addresses: "''", unix_socket_directories: dir, port: String(PORT), ...options.settings };
  const serverOptions = Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(' ');
  try {
    pg('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '60', '-o', serverOptions, 'start']);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: (database) => `postgres://postgres@localhost:${PORT}/${database}?host=${encodeURIComponent(dir)}`,
    logFile,
    stop: () => {
      try {
        pg('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

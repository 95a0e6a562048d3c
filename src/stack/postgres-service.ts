import { existsSync, readdirSync, chownSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { Client } from 'pg';
import { loadConfig } from '../config';
import {
  type LocalService,
  commandExists,
  log,
  pidFile,
  run,
  serviceDir,
  spawnDetached,
  stopByPidFile,
  tcpAnswers,
  waitUntil,
} from './service';

// PostgreSQL from Debian's packages, one cluster under the project's data dir, wal_level=logical for CDC.

function target(): { host: string; port: number; user: string; password: string; database: string } {
  const url = new URL(loadConfig().DATABASE_URL);
  return {
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: url.pathname.replace(/^\//, ''),
  };
}

function pgBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

/** Postgres refuses to run as root: when we are root, run it as the Debian `postgres` user. */
function runAs(): { uid: number; gid: number; name: string } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const uid = Number(run('id', ['-u', 'postgres']).trim());
  const gid = Number(run('id', ['-g', 'postgres']).trim());
  return { uid, gid, name: 'postgres' };
}

function socketDir(): string {
  return serviceDir('postgres');
}

async function superuserQuery(sql: string): Promise<void> {
  const t = target();
  const client = new Client({ host: socketDir(), port: t.port, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export const postgresService: LocalService = {
  name: 'postgres',
  address: () => {
    const t = target();
    return `${t.host}:${t.port}/${t.database}`;
  },
  answers: async () => {
    const t = target();
    if (!(await tcpAnswers(t.host, t.port))) return false;
    const client = new Client({ ...t, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      await client.query('select 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  },
  install: async () => {
    if (pgBinDir()) return;
    if (userInfo().uid !== 0 || !commandExists('apt-get')) {
      throw new Error(
        'PostgreSQL server binaries not found under /usr/lib/postgresql; install Debian package "postgresql"',
      );
    }
    log('installing PostgreSQL from Debian packages (apt-get)');
    run('apt-get', ['update', '-q'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    run('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'postgresql', 'postgresql-contrib'], {
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  },
  start: async () => {
    const bin = pgBinDir();
    if (!bin) throw new Error('PostgreSQL is not installed; run `npm run stack -- up`');
    const t = target();
    const dir = serviceDir('postgres');
    const data = join(dir, 'data');
    const owner = runAs();
    if (owner) chownSync(dir, owner.uid, owner.gid);
    if (!existsSync(join(data, 'PG_VERSION'))) {
      log(`initdb ${data}`);
      const args = [
        '-D',
        data,
        '-U',
        'postgres',
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '-E',
        'UTF8',
        '--no-locale',
      ];
      if (owner) run('runuser', ['-u', owner.name, '--', join(bin, 'initdb'), ...args]);
      else run(join(bin, 'initdb'), args);
    }
    if (owner && statSync(data).uid !== owner.uid) throw new Error(`${data} is not owned by ${owner.name}`);
    spawnDetached(
      'postgres',
      join(bin, 'postgres'),
      [
        '-D',
        data,
        '-p',
        String(t.port),
        '-c',
        `listen_addresses=${t.host === 'localhost' ? '127.0.0.1' : t.host}`,
        '-c',
        `unix_socket_directories=${socketDir()}`,
        '-c',
        'wal_level=logical',
        '-c',
        'max_replication_slots=10',
        '-c',
        'max_wal_senders=10',
        '-c',
        'max_connections=200',
        '-c',
        'fsync=on',
      ],
      owner ? { uid: owner.uid, gid: owner.gid } : {},
    );
    await waitUntil('postgres', () => tcpAnswers(t.host, t.port), 60_000, join(dir, 'postgres.log'));
  },
  stop: async () => {
    await stopByPidFile('postgres', 30_000);
  },
  provision: async () => {
    // Only our own cluster is provisioned; a managed one (RDS) comes with its role and database.
    if (!existsSync(pidFile('postgres'))) return;
    const t = target();
    const ident = (s: string): string => `"${s.replace(/"/g, '""')}"`;
    const literal = (s: string): string => `'${s.replace(/'/g, "''")}'`;
    await superuserQuery(
      `do $$ begin
         if not exists (select from pg_roles where rolname = ${literal(t.user)}) then
           create role ${ident(t.user)} login replication password ${literal(t.password)};
         end if;
       end $$`,
    );
    const client = new Client({ host: socketDir(), port: t.port, user: 'postgres', database: 'postgres' });
    await client.connect();
    try {
      const exists = await client.query('select 1 from pg_database where datname = $1', [t.database]);
      if (exists.rowCount === 0) await client.query(`create database ${ident(t.database)} owner ${ident(t.user)}`);
    } finally {
      await client.end();
    }
    // PayLink's OLTP database (the simulator writes it, CDC reads it): its role needs REPLICATION for slots.
    const oltp = new URL(loadConfig().OLTP_DATABASE_URL);
    const oltpUser = decodeURIComponent(oltp.username);
    const oltpDatabase = decodeURIComponent(oltp.pathname.replace(/^\//, ''));
    await superuserQuery(
      `do $$ begin
         if not exists (select from pg_roles where rolname = ${literal(oltpUser)}) then
           create role ${ident(oltpUser)} login replication password ${literal(decodeURIComponent(oltp.password))};
         end if;
       end $$`,
    );
    const server = new Client({ host: socketDir(), port: t.port, user: 'postgres', database: 'postgres' });
    await server.connect();
    try {
      const exists = await server.query('select 1 from pg_database where datname = $1', [oltpDatabase]);
      if (exists.rowCount === 0) await server.query(`create database ${ident(oltpDatabase)} owner ${ident(oltpUser)}`);
    } finally {
      await server.end();
    }
    // The token vault's role owns its schema; the ledger role gets no access to it.
    const vault = new URL(loadConfig().VAULT_DATABASE_URL);
    const vaultUser = decodeURIComponent(vault.username);
    await superuserQuery(
      `do $$ begin
         if not exists (select from pg_roles where rolname = ${literal(vaultUser)}) then
           create role ${ident(vaultUser)} login password ${literal(decodeURIComponent(vault.password))};
         end if;
       end $$`,
    );
    const db = new Client({ host: socketDir(), port: t.port, user: 'postgres', database: t.database });
    await db.connect();
    try {
      await db.query(`create schema if not exists vault authorization ${ident(vaultUser)}`);
      await db.query(`revoke all on schema vault from public`);
    } finally {
      await db.end();
    }
  },
};

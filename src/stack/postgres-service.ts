import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, chownSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { Client } from 'pg';
import { loadConfig } from '../config';
import { APPLICATION_ROLE, VAULT_ROLE, migrateAsOwner } from '../stores/migrate';
import {
  type LocalService,
  commandExists,
  dataDir,
  log,
  pidFile,
  run,
  serviceDir,
  spawnDetached,
  stopByPidFile,
  tcpAnswers,
  waitUntil,
} from './service';
import { createOltpPool, ensureOltpSchema } from '../simulator/oltp';

// PostgreSQL from Debian's packages, one cluster under the project's data dir, wal_level=logical for CDC.

interface PgTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/** The owner's connection (MIGRATION_DATABASE_URL): it exists before the application role is provisioned. */
function target(): PgTarget {
  return parseTarget(loadConfig().MIGRATION_DATABASE_URL);
}

function parseTarget(connectionString: string): PgTarget {
  const url = new URL(connectionString);
  return {
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database: url.pathname.replace(/^\//, ''),
  };
}

export function pgBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

/** Postgres refuses to run as root: when we are root, run it as the Debian `postgres` user. */
export function runAs(): { uid: number; gid: number; name: string } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const uid = Number(run('id', ['-u', 'postgres']).trim());
  const gid = Number(run('id', ['-g', 'postgres']).trim());
  return { uid, gid, name: 'postgres' };
}

let cluster: string | undefined;

/**
 * Where the cluster's files (data, socket) live: <data dir>/postgres, unless the server runs as the
 * `postgres` user (we are root) and that user cannot reach the clone — root's home is mode 700 on
 * Debian, and so is a `mktemp -d` — in which case initdb would fail with "Permission denied". Then the
 * cluster lives in the postgres user's own home, one per clone (keyed on the data dir's path), and
 * <data dir>/postgres/CLUSTER says where. The pid file and log stay in the clone either way.
 */
export function clusterDir(): string {
  if (cluster) return cluster;
  const inClone = serviceDir('postgres');
  const owner = runAs();
  const reachable =
    !owner || spawnSync('runuser', ['-u', owner.name, '--', 'test', '-x', dataDir], { stdio: 'ignore' }).status === 0;
  if (reachable) {
    cluster = inClone;
  } else {
    const home = run('getent', ['passwd', owner.name]).trim().split(':')[5] || '/var/lib/postgresql';
    const key = createHash('sha256').update(dataDir).digest('hex').slice(0, 12);
    const parent = join(home, 'paylink');
    cluster = join(parent, key);
    mkdirSync(cluster, { recursive: true });
    chownSync(parent, owner.uid, owner.gid);
    chownSync(cluster, owner.uid, owner.gid);
    writeFileSync(
      join(inClone, 'CLUSTER'),
      `The postgres user cannot reach ${dataDir} (a parent directory is not world-traversable),\n` +
        `so this clone's cluster lives at ${cluster}. Delete it with the clone.\n`,
    );
    log(`postgres: ${dataDir} is not reachable by the postgres user; the cluster lives at ${cluster}`);
  }
  return cluster;
}

function socketDir(): string {
  return clusterDir();
}

async function superuserQuery(sql: string, database = 'postgres'): Promise<void> {
  const t = target();
  const client = new Client({ host: socketDir(), port: t.port, user: 'postgres', database });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

const ident = (s: string): string => `"${s.replace(/"/g, '""')}"`;
const literal = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** Creates the login role of a connection URL if missing; `attributes` (e.g. REPLICATION) are set either way. */
async function ensureLoginRole(connectionString: string, attributes = ''): Promise<string> {
  const { user, password } = parseTarget(connectionString);
  await superuserQuery(
    `do $$ begin
       if not exists (select from pg_roles where rolname = ${literal(user)}) then
         create role ${ident(user)} login password ${literal(password)};
       end if;
     end $$`,
  );
  if (attributes) await superuserQuery(`alter role ${ident(user)} ${attributes}`);
  return user;
}

/** Creates the database if missing, and makes `owner` its owner. */
export async function ensureDatabase(database: string, owner: string): Promise<void> {
  const client = new Client({ host: socketDir(), port: target().port, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    const found = await client.query<{ owner: string }>(
      'select pg_get_userbyid(datdba) as owner from pg_database where datname = $1',
      [database],
    );
    if (found.rowCount === 0) await client.query(`create database ${ident(database)} owner ${ident(owner)}`);
    else if (found.rows[0]!.owner !== owner)
      await client.query(`alter database ${ident(database)} owner to ${ident(owner)}`);
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
    const dir = clusterDir();
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
    await waitUntil('postgres', () => tcpAnswers(t.host, t.port), 60_000, join(serviceDir('postgres'), 'postgres.log'));
  },
  stop: async () => {
    await stopByPidFile('postgres', 30_000);
  },
  provision: async () => {
    // Roles only on our own cluster; a managed one (RDS) is set up as docs/architecture.md says, and
    // docker-compose's by tools/postgres/docker-init.sql.
    if (existsSync(pidFile('postgres'))) await provisionRoles();
    // Whichever Postgres answers is migrated, so a fresh stack (CI, `npm test`) has its schemas: no
    // pipeline process migrates, the vault included.
    const applied = await migrateAsOwner(loadConfig());
    log(`postgres: ${applied.length > 0 ? `applied migrations ${applied.join(', ')}` : 'schema up to date'}`);
    // PayLink's OLTP tables are its API's, not the pipeline's: locally the simulator creates them, so
    // `npm run cdc` alone finds something to capture.
    const oltp = createOltpPool(loadConfig(), 1);
    try {
      await ensureOltpSchema(oltp);
    } finally {
      await oltp.end();
    }
  },
};

/** Our own cluster: login roles, databases and who owns what; runs as the superuser, idempotently. */
async function provisionRoles(): Promise<void> {
  const config = loadConfig();
  const t = target();
  const app = parseTarget(config.DATABASE_URL);
  if (app.port !== t.port || app.database !== t.database) {
    throw new Error('DATABASE_URL and MIGRATION_DATABASE_URL must name the same database (port and name)');
  }
  // PayLink's OLTP database (the simulator writes it, CDC reads it): its role needs REPLICATION for
  // slots. Locally it is the owner role too, so it goes first and keeps REPLICATION.
  const oltp = parseTarget(config.OLTP_DATABASE_URL);
  const oltpUser = await ensureLoginRole(config.OLTP_DATABASE_URL, 'replication');
  await ensureDatabase(oltp.database, oltpUser);
  // The owner runs migrations and owns the ledger, payments, quality and vault schemas.
  const owner = await ensureLoginRole(config.MIGRATION_DATABASE_URL);
  await ensureDatabase(t.database, owner);
  // The application role owns nothing; migration 004 grants it what the pipeline needs.
  const appUser = await ensureLoginRole(config.DATABASE_URL);
  if (appUser === owner) {
    log(`postgres: DATABASE_URL uses the owner role ${owner}: the application could rewrite the ledger`);
  } else if (appUser !== APPLICATION_ROLE) {
    // A login role of another name gets the privileges through membership, as on RDS.
    await ensureMemberOf(APPLICATION_ROLE, appUser);
  }
  // The vault role owns nothing either; vault migration 002 grants it what src/stores/vault.ts runs.
  const vaultUser = await ensureLoginRole(config.VAULT_DATABASE_URL);
  if (vaultUser === owner) {
    log(`postgres: VAULT_DATABASE_URL uses the owner role ${owner}: the vault role could rewrite its audit trail`);
    return;
  }
  if (vaultUser !== VAULT_ROLE) await ensureMemberOf(VAULT_ROLE, vaultUser);
  // Clusters provisioned before the owner took the vault over: the vault role owned schema vault and
  // everything in it. Hand it all to the owner before migrating (a no-op once the vault role owns nothing).
  for (const role of new Set([vaultUser, VAULT_ROLE])) {
    await superuserQuery(`reassign owned by ${ident(role)} to ${ident(owner)}`, t.database);
  }
}

/** Creates the NOLOGIN group role the migrations grant to, and makes `member` a member of it. */
async function ensureMemberOf(group: string, member: string): Promise<void> {
  await superuserQuery(
    `do $$ begin
       if not exists (select from pg_roles where rolname = ${literal(group)}) then
         create role ${ident(group)} nologin;
       end if;
     end $$`,
  );
  await superuserQuery(`grant ${ident(group)} to ${ident(member)}`);
}

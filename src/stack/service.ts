import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '../config';
import { pidAlive } from '../pid';

// The local stack: each service knows how to install itself (idempotently, into a cache
// outside the clone), start detached with a pid file under the project's data dir, and answer.

export const repoRoot = resolve(__dirname, '..', '..');

/** Installed tools (venv, Kafka jars): outside the clone, so a fresh clone reuses them. */
export const cacheDir = resolve(process.env.PAYLINK_CACHE ?? join(homedir(), '.cache', 'paylink'));
/** Service state (databases, logs, pid files): project-local. */
export const dataDir = resolve(loadConfig().PAYLINK_DATA);

export interface ServiceStatus {
  name: string;
  address: string;
  answers: boolean;
  detail?: string;
}

export interface LocalService {
  name: string;
  /** Human-readable address (host:port or URL) the code connects to. */
  address(): string;
  /** True when something already answers at the address (ours, docker-compose's or a remote one). */
  answers(): Promise<boolean>;
  /** Install what is missing; a no-op when already installed. */
  install(): Promise<void>;
  /** Start detached and return once it answers. Only called when answers() is false. */
  start(): Promise<void>;
  /** Stop the process this project started (pid file); leaves foreign services alone. */
  stop(): Promise<void>;
  /** Post-start setup done by project code (search attributes, buckets…); idempotent. */
  provision?(): Promise<void>;
}

export function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function serviceDir(name: string): string {
  return ensureDir(join(dataDir, name));
}

export function log(message: string): void {
  process.stderr.write(`[stack] ${message}\n`);
}

/** Run a command to completion; throws with its output when it fails. */
export function run(cmd: string, args: string[], options: SpawnSyncOptions = {}): string {
  const result = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  if (result.error) throw new Error(`${cmd} ${args.join(' ')}: ${result.error.message}`);
  if (result.status !== 0) {
    const out = `${String(result.stdout ?? '')}\n${String(result.stderr ?? '')}`.trim().slice(-4000);
    throw new Error(`${cmd} ${args.join(' ')} exited ${result.status}:\n${out}`);
  }
  return String(result.stdout ?? '');
}

export function commandExists(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Spawn a long-running process detached from this one, logging to <data>/<name>/<name>.log. */
export function spawnDetached(
  name: string,
  cmd: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; uid?: number; gid?: number } = {},
): number {
  const dir = serviceDir(name);
  const logFile = join(dir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, args, {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, ...options.env },
    cwd: options.cwd ?? dir,
    uid: options.uid,
    gid: options.gid,
  });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`could not start ${name}: ${cmd}`);
  child.unref();
  writeFileSync(pidFile(name), String(child.pid));
  return child.pid;
}

export function pidFile(name: string): string {
  return join(serviceDir(name), `${name}.pid`);
}

/** SIGTERM the process group from the pid file, escalate to SIGKILL after a grace period. */
export async function stopByPidFile(name: string, graceMs = 15_000): Promise<boolean> {
  const file = pidFile(name);
  if (!existsSync(file)) return false;
  const pid = Number(readFileSync(file, 'utf8').trim());
  rmSync(file, { force: true });
  if (!Number.isInteger(pid) || !pidAlive(pid)) return false;
  const signal = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        /* already gone */
      }
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pidAlive(pid) && Date.now() < deadline) await sleep(200);
  if (pidAlive(pid)) signal('SIGKILL');
  return true;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function tcpAnswers(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolveAnswer) => {
    const socket = createConnection({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolveAnswer(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Poll until check() is true; throws naming the service and its log when it never is. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  logHint?: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(300);
  }
  throw new Error(`${what} did not answer within ${timeoutMs} ms${logHint ? ` (see ${logHint})` : ''}`);
}

export function hostPort(address: string, defaultPort: number): { host: string; port: number } {
  const stripped = address.replace(/^[a-z]+:\/\//, '').split('/')[0] ?? address;
  const [host, port] = stripped.split(':');
  return { host: host || '127.0.0.1', port: port ? Number(port) : defaultPort };
}

/** Short content hash used to key cached installs on the files that define them. */
export function hashFiles(...files: string[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(readFileSync(f));
  return h.digest('hex').slice(0, 12);
}

/** The project's Python venv (temporal CLI, fakesnow, moto), keyed on tools/python/requirements.txt. */
export function pythonVenv(): { dir: string; bin: (tool: string) => string } {
  const requirements = join(repoRoot, 'tools', 'python', 'requirements.txt');
  const dir = join(cacheDir, `venv-${hashFiles(requirements)}`);
  return { dir, bin: (tool) => join(dir, 'bin', tool) };
}

let venvReady = false;
export function ensurePythonVenv(): { dir: string; bin: (tool: string) => string } {
  const venv = pythonVenv();
  const marker = join(venv.dir, '.installed');
  if (venvReady || existsSync(marker)) {
    venvReady = true;
    return venv;
  }
  const python = process.env.PAYLINK_PYTHON ?? (commandExists('python3') ? 'python3' : 'python');
  log(`creating Python venv ${venv.dir}`);
  ensureDir(cacheDir);
  run(python, ['-m', 'venv', venv.dir]);
  const requirements = join(repoRoot, 'tools', 'python', 'requirements.txt');
  run(venv.bin('pip'), ['install', '--disable-pip-version-check', '-q', '-r', requirements], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  writeFileSync(marker, new Date().toISOString());
  venvReady = true;
  return venv;
}

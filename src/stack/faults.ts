import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { pidAlive } from '../pid';
import { kafkaService } from './kafka-service';
import { postgresService } from './postgres-service';
import { s3Service } from './s3-service';
import { type LocalService, log, pidFile } from './service';
import { snowflakeService } from './snowflake-service';
import { temporalService } from './temporal-service';

// Outage drills on the local stack: take one service down the way production loses it, then bring it
// back. The demo's --fault option and the resilience tests use these; operators run them as
// `npm run stack -- kill <service> [--fast]` and `npm run stack -- up`.

export const FAULT_SERVICES = {
  postgres: postgresService,
  kafka: kafkaService,
  temporal: temporalService,
  s3: s3Service,
  snowflake: snowflakeService,
} as const satisfies Record<string, LocalService>;

export type FaultService = keyof typeof FAULT_SERVICES;

/**
 * `kill9`: SIGKILL to the service's whole process group, as a crashed host or OOM kill leaves it (for
 * Postgres: postmaster and backends, crash recovery on the next start). `fast`: Postgres' fast shutdown
 * (SIGINT to the postmaster: sessions are terminated with 57P01); for other services, SIGTERM.
 * Resolves once the service's process is gone. Throws when the stack did not start it (no pid file).
 */
export async function takeDown(name: FaultService, how: 'kill9' | 'fast'): Promise<number> {
  const file = pidFile(name);
  if (!existsSync(file)) throw new Error(`${name}: no pid file at ${file}; this stack did not start it`);
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (!Number.isInteger(pid) || !pidAlive(pid)) throw new Error(`${name}: process ${pid} is not running`);
  if (how === 'kill9') {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      process.kill(pid, 'SIGKILL');
    }
  } else {
    process.kill(pid, name === 'postgres' ? 'SIGINT' : 'SIGTERM');
  }
  const deadline = Date.now() + 60_000;
  while (pidAlive(pid)) {
    if (Date.now() > deadline) throw new Error(`${name}: process ${pid} still running 60 s after ${how}`);
    await sleep(100);
  }
  log(`${name}: taken down (${how}, pid ${pid})`);
  return pid;
}

/** Starts a service taken down by takeDown and waits until it answers (its state is on disk). */
export async function bringBack(name: FaultService): Promise<void> {
  const service = FAULT_SERVICES[name];
  if (await service.answers()) return;
  await service.start();
  log(`${name}: back at ${service.address()}`);
}

export function isFaultService(name: string): name is FaultService {
  return Object.hasOwn(FAULT_SERVICES, name);
}

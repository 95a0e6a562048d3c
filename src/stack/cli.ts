import { spawnSync } from 'node:child_process';
import { loadConfig } from '../config';
import { createKafka, ensureTopics } from '../streams/kafka';
import { kafkaService } from './kafka-service';
import { postgresService } from './postgres-service';
import { s3Service } from './s3-service';
import { type LocalService, type ServiceStatus, log, pythonVenv } from './service';
import { snowflakeService } from './snowflake-service';
import { temporalService } from './temporal-service';
import { errorMessage } from '../logger';
import { FAULT_SERVICES, isFaultService, takeDown } from './faults';

// `npm run stack -- up|down|status`: the five real services, installed and started idempotently;
// `npm run stack -- kill <service> [--fast]`: an outage drill (src/stack/faults.ts);
// `npm run stack -- temporal <args>`: the Temporal CLI the stack installed.

export const services: LocalService[] = [postgresService, kafkaService, temporalService, s3Service, snowflakeService];

async function status(): Promise<ServiceStatus[]> {
  return Promise.all(services.map(async (s) => ({ name: s.name, address: s.address(), answers: await s.answers() })));
}

/** Starts the stack's services (or only those `names`), provisions them and the topics. */
export async function up(names?: readonly string[]): Promise<void> {
  const started = Date.now();
  const wanted = names ? services.filter((s) => names.includes(s.name)) : services;
  const down: LocalService[] = [];
  for (const s of wanted) {
    if (await s.answers()) log(`${s.name}: already answering at ${s.address()}`);
    else down.push(s);
  }
  // Installs are sequential (they share the venv); starts run in parallel.
  for (const s of down) await s.install();
  await Promise.all(
    down.map(async (s) => {
      const t = Date.now();
      await s.start();
      log(`${s.name}: started at ${s.address()} in ${Date.now() - t} ms`);
    }),
  );
  for (const s of wanted) await s.provision?.();
  if (wanted.includes(kafkaService)) await provisionTopics();
  log(`stack up in ${Date.now() - started} ms`);
}

async function provisionTopics(): Promise<void> {
  const config = loadConfig();
  const admin = createKafka(config, 'paylink-stack').admin();
  await admin.connect();
  try {
    const created = await ensureTopics(admin, config);
    if (created.length > 0) log(`kafka: created topics ${created.join(', ')}`);
  } finally {
    await admin.disconnect();
  }
}

async function downAll(): Promise<void> {
  for (const s of [...services].reverse()) {
    await s.stop();
    log(`${s.name}: stopped`);
  }
}

async function main(): Promise<void> {
  const command = process.argv[2] ?? 'status';
  if (command === 'up') {
    await up();
    printStatus(await status());
  } else if (command === 'down') {
    await downAll();
  } else if (command === 'status') {
    const rows = await status();
    printStatus(rows);
    if (rows.some((r) => !r.answers)) process.exitCode = 1;
  } else if (command === 'kill') {
    // An outage drill: `kill <service> [--fast]`; `up` brings it back. See docs/operations.md.
    const name = process.argv[3] ?? '';
    if (!isFaultService(name))
      throw new Error(`kill: unknown service "${name}"; use one of ${Object.keys(FAULT_SERVICES).join(', ')}`);
    await takeDown(name, process.argv.includes('--fast') ? 'fast' : 'kill9');
  } else if (command === 'temporal') {
    // The project's own Temporal CLI (from the venv), aimed at TEMPORAL_ADDRESS: no binary on PATH needed.
    const config = loadConfig();
    const args = [
      ...process.argv.slice(3),
      '--address',
      config.TEMPORAL_ADDRESS,
      '--namespace',
      config.TEMPORAL_NAMESPACE,
    ];
    const ran = spawnSync(pythonVenv().bin('temporal'), args, { stdio: 'inherit' });
    if (ran.error) throw new Error(`temporal CLI: ${ran.error.message}; run \`npm run stack -- up\` to install it`);
    process.exitCode = ran.status ?? 1;
  } else {
    throw new Error(
      `unknown stack command "${command}"; use up | down | status | kill <service> [--fast] | temporal <args>`,
    );
  }
}

function printStatus(rows: ServiceStatus[]): void {
  for (const r of rows) {
    process.stdout.write(`${r.name.padEnd(10)} ${(r.answers ? 'answering' : 'DOWN').padEnd(10)} ${r.address}\n`);
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`stack: ${errorMessage(err)}\n`);
    process.exit(1);
  });
}

import cluster, { type Worker } from 'node:cluster';
import { existsSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Config, loadConfig, secretSetting } from '../config';
import { createLogger, errorMessage } from '../logger';
import { openVaultLazily, vaultKeyring } from '../stores/vault';
import { createKafka, topicsFor } from '../streams/kafka';
import { createEdgePublisher } from './edge-publisher';
import { type Spool, SpoolLockedError, openSpool } from './spool';
import { tokenizerFromConfig } from './tokenize';
import { createVaultJournal } from './vault-journal';
import { type EdgeStatus, type SpoolDrainFailure, createWebhookReceiver, parsePartners } from './webhook-receiver';

// `npm run webhooks`: one receiver process per core (node:cluster; WEBHOOK_WORKERS). Worker n owns
// <spool dir>/worker-<n> and <vault journal dir>/worker-<n>; directories of workers that no longer
// run (fewer workers after a restart) are drained by worker (m mod WEBHOOK_WORKERS).

const log = createLogger('webhook-receiver');

type StatusMessage = { kind: 'edge-status'; index: number; status: EdgeStatus };
type ClusterMessage = { kind: 'edge-cluster-status'; statuses: Record<number, EdgeStatus> } | { kind: 'worker-ready' };

const workerDir = (base: string, index: number): string => join(base, `worker-${index}`);

/** worker-<m> directories under `base` with m ≥ workers, plus `base` itself if it holds segments (the one-process layout). */
function orphanDirs(base: string, workers: number, index: number): string[] {
  if (!existsSync(base)) return [];
  const names = readdirSync(base);
  const orphans = names
    .map((name) => /^worker-(\d+)$/.exec(name))
    .filter((m): m is RegExpExecArray => m !== null && Number(m[1]) >= workers && Number(m[1]) % workers === index)
    .map((m) => join(base, m[0]));
  if (index === 0 && names.some((n) => n.endsWith('.seg'))) orphans.push(base);
  return orphans;
}

/** A killed predecessor's worker may hold the lock for a moment (it exits when its primary is gone). */
async function openOwnedSpool(dir: string, maxBytes: number): Promise<Spool> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await openSpool({ dir, maxBytes });
    } catch (err) {
      if (!(err instanceof SpoolLockedError) || attempt >= 100) throw err;
      await sleep(100);
    }
  }
}

function sumStatuses(statuses: EdgeStatus[]): EdgeStatus {
  const journals = statuses.flatMap((s) => (s.vaultJournal ? [s.vaultJournal] : []));
  const failing = journals.find((j) => j.drainError !== undefined);
  const lastDrainError = statuses
    .flatMap((s) => (s.lastSpoolDrainError ? [s.lastSpoolDrainError] : []))
    .reduce<SpoolDrainFailure | undefined>((last, e) => (last && last.at >= e.at ? last : e), undefined);
  return {
    spooled: statuses.reduce((n, s) => n + s.spooled, 0),
    kafkaHealthy: statuses.every((s) => s.kafkaHealthy),
    spoolDrainErrors: statuses.reduce((n, s) => n + s.spoolDrainErrors, 0),
    ...(lastDrainError ? { lastSpoolDrainError: lastDrainError } : {}),
    ...(journals.length > 0
      ? {
          vaultJournal: {
            records: journals.reduce((n, j) => n + j.records, 0),
            bytes: journals.reduce((n, j) => n + j.bytes, 0),
            drainedRecords: journals.reduce((n, j) => n + j.drainedRecords, 0),
            ...(failing?.drainError !== undefined ? { drainError: failing.drainError } : {}),
          },
        }
      : {}),
  };
}

async function runReceiver(config: Config, index: number, workers: number): Promise<void> {
  // Secrets first: a refused production setting stops the start before any spool is opened.
  const partners = parsePartners(secretSetting(config, 'WEBHOOK_PARTNERS'));
  const tokenizer = tokenizerFromConfig(config);
  const keyring = vaultKeyring(config);
  // Lazily: the edge starts, journals and answers 2xx while Postgres is down.
  const vault = openVaultLazily(config);
  const spoolBase = config.WEBHOOK_SPOOL_DIR || join(config.PAYLINK_DATA, 'spool', 'webhooks');
  const journalBase = config.VAULT_JOURNAL_DIR || join(config.PAYLINK_DATA, 'vault-journal', 'webhooks');
  const spool = await openOwnedSpool(workerDir(spoolBase, index), config.WEBHOOK_SPOOL_MAX_BYTES);
  const journalSpool = await openOwnedSpool(workerDir(journalBase, index), config.VAULT_JOURNAL_MAX_BYTES);
  const orphanSpools = await Promise.all(
    orphanDirs(spoolBase, workers, index).map((d) => openOwnedSpool(d, config.WEBHOOK_SPOOL_MAX_BYTES)),
  );
  const orphanJournalSpools = await Promise.all(
    orphanDirs(journalBase, workers, index).map((d) => openOwnedSpool(d, config.VAULT_JOURNAL_MAX_BYTES)),
  );
  const vaultJournal = createVaultJournal({ spool: journalSpool, keyring, vault, log });
  const orphanJournals = orphanJournalSpools.map((s) => createVaultJournal({ spool: s, keyring, vault, log }));
  const kafka = createKafka(config, 'paylink-webhook-receiver');
  // The spool directory is this worker's identity: the process that reopens it after a restart gets the
  // same transactional id, so its first transaction fences the one it replaces (a zombie cannot commit).
  const spoolDir = resolve(workerDir(spoolBase, index));
  const topics = topicsFor(config);
  // Connects on its first transaction: the edge must start (and spool) while Kafka is down.
  const publisher = createEdgePublisher(config, kafka, 'paylink-webhooks', spoolDir, log);

  let clusterStatuses: Record<number, EdgeStatus> = {};
  const receiver = createWebhookReceiver({
    partners,
    publisher,
    topics,
    spool,
    tokenizer,
    vault,
    vaultJournal,
    readiness: () => {
      const others = Object.entries(clusterStatuses)
        .filter(([i]) => Number(i) !== index)
        .map(([, s]) => s);
      return sumStatuses([ownStatus(), ...others]);
    },
    log,
    maxBodyBytes: config.WEBHOOK_MAX_BODY_BYTES,
    kafkaTimeoutMs: config.WEBHOOK_KAFKA_TIMEOUT_MS,
  });
  // This worker's spool and journal plus the orphaned journals it drains (the receiver counts their drain errors).
  const ownStatus = (): EdgeStatus =>
    sumStatuses([
      receiver.status(),
      ...orphanJournals.map((j) => ({ spooled: 0, kafkaHealthy: true, spoolDrainErrors: 0, vaultJournal: j.status() })),
      ...orphanSpools.map((s) => ({ spooled: s.size().records, kafkaHealthy: true, spoolDrainErrors: 0 })),
    ]);
  const drainers = [vaultJournal, ...orphanJournals].map((j) => j.startDraining());
  // The receiver logs and counts drain failures; a pass in flight is awaited at shutdown.
  let stopping = false;
  let drainPass: Promise<void> | undefined;
  const drainTimer = setInterval(() => {
    drainPass ??= (async () => {
      await receiver.drainSpool();
      for (const s of orphanSpools) if (!stopping) await receiver.drainSpoolFrom(s);
    })().finally(() => (drainPass = undefined));
  }, 500);

  let statusTimer: NodeJS.Timeout | undefined;
  if (cluster.isWorker) {
    process.on('message', (m: ClusterMessage) => {
      if (m.kind === 'edge-cluster-status') clusterStatuses = m.statuses;
    });
    statusTimer = setInterval(() => {
      process.send?.({ kind: 'edge-status', index, status: ownStatus() } satisfies StatusMessage);
    }, 250);
  }

  await new Promise<void>((resolve) => receiver.server.listen(config.WEBHOOK_PORT, '127.0.0.1', resolve));
  const address = receiver.server.address();
  const fields = {
    port: typeof address === 'object' && address ? address.port : config.WEBHOOK_PORT,
    worker: index,
    transactionalId: publisher.transactionalId,
    spooled: spool.size().records,
    vaultJournal: journalSpool.size().records,
  };
  if (cluster.isWorker) {
    log.info('worker listening', fields);
    process.send?.({ kind: 'worker-ready' } satisfies ClusterMessage);
  } else {
    log.info('ready', fields);
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  stopping = true;
  clearInterval(drainTimer);
  clearInterval(statusTimer);
  await receiver.close();
  await Promise.all(drainers.map((d) => d.stop()));
  // Spools first: closing one ends its drain after the current batch, so no send fails on a disconnected producer.
  await Promise.all([spool, journalSpool, ...orphanSpools, ...orphanJournalSpools].map((s) => s.close()));
  await drainPass;
  await publisher.close();
  await vault.close().catch(() => undefined);
}

async function runPrimary(config: Config, workers: number): Promise<void> {
  const statuses: Record<number, EdgeStatus> = {};
  const byWorker = new Map<Worker, number>();
  let stopping = false;
  let ready = 0;
  const listened = new Set<number>();
  let failStart: (err: Error) => void = () => undefined;
  const startFailed = new Promise<Error>((resolve) => (failStart = resolve));
  const fork = (index: number): void => {
    const worker = cluster.fork({ WEBHOOK_WORKER_INDEX: String(index) });
    byWorker.set(worker, index);
    worker.on('message', (m: StatusMessage | ClusterMessage) => {
      if (m.kind === 'edge-status') statuses[m.index] = m.status;
      if (m.kind === 'worker-ready') listened.add(index);
      if (m.kind === 'worker-ready' && ++ready === workers) {
        log.info('ready', { port: config.WEBHOOK_PORT, workers });
      }
    });
    worker.on('exit', (code, signal) => {
      byWorker.delete(worker);
      if (stopping) return;
      // A worker that never listened failed its start (configuration, a refused secret): every restart would too.
      if (!listened.has(index)) {
        failStart(new Error(`receiver worker ${index} exited (code ${code}, signal ${signal}) before it listened`));
        return;
      }
      log.error('receiver worker exited; starting it again', { worker: index, code, signal });
      setTimeout(() => fork(index), 500); // its spool and journal stay put; the new worker resumes them
    });
  };
  for (let i = 0; i < workers; i++) fork(i);
  const broadcast = setInterval(() => {
    for (const w of byWorker.keys()) {
      // A dying worker's channel closes before its exit event; sending then would crash the primary.
      if (w.isConnected()) w.send({ kind: 'edge-cluster-status', statuses } satisfies ClusterMessage);
    }
  }, 250);
  const failed = await Promise.race([
    startFailed,
    new Promise<undefined>((resolve) => {
      process.once('SIGINT', () => resolve(undefined));
      process.once('SIGTERM', () => resolve(undefined));
    }),
  ]);
  stopping = true;
  clearInterval(broadcast);
  await Promise.all(
    [...byWorker.keys()].map(
      (w) =>
        new Promise<void>((resolve) => {
          w.once('exit', () => resolve());
          w.process.kill('SIGTERM');
        }),
    ),
  );
  if (failed) throw failed;
}

async function main(): Promise<void> {
  const config = loadConfig();
  const workers = config.WEBHOOK_WORKERS || availableParallelism();
  if (cluster.isPrimary && workers > 1) return runPrimary(config, workers);
  const index = cluster.isWorker ? Number(process.env.WEBHOOK_WORKER_INDEX) : 0;
  return runReceiver(config, index, workers);
}

// Exits explicitly: a clean stop leaves no handle worth waiting for, and `--cpu-prof` writes on exit.
main().then(
  () => process.exit(0),
  (err: unknown) => {
    log.error('webhook receiver failed', { error: errorMessage(err) });
    process.exit(1);
  },
);

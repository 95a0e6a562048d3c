import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { kafkaBrokers, loadConfig } from '../config';
import {
  cacheDir,
  ensureDir,
  hashFiles,
  hostPort,
  log,
  pidFile,
  repoRoot,
  run,
  serviceDir,
  spawnDetached,
  stopByPidFile,
  waitUntil,
  type LocalService,
} from './service';
import { pidAlive } from '../pid';

// A real Apache Kafka 4.x broker (KRaft, broker+controller in one JVM) run from the jars that
// tools/kafka/pom.xml resolves from Maven Central: no Docker, no tarball download.

const NAME = 'kafka';
const START_TIMEOUT_MS = 90_000;
// Combined-mode shutdown flushes logs and closes the metadata log; give it time before SIGKILL.
const STOP_GRACE_MS = 30_000;

const pomFile = (): string => join(repoRoot, 'tools', 'kafka', 'pom.xml');

/** Cached jar folder, keyed on the pom so a version bump installs beside the old one. */
function installDir(): { root: string; libs: string; marker: string } {
  const root = join(cacheDir, `kafka-${hashFiles(pomFile())}`);
  const libs = join(root, 'libs');
  return { root, libs, marker: join(libs, '.installed') };
}

function brokerAddress(): string {
  return kafkaBrokers(loadConfig())[0] ?? '127.0.0.1:9092';
}

function ports(): { broker: number; controller: number } {
  const { port } = hostPort(brokerAddress(), 9092);
  return { broker: port, controller: port + 1 };
}

function java(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

/** A stable cluster id (Kafka's base64url-encoded 16-byte UUID), so formatting is reproducible. */
function clusterId(): string {
  return createHash('sha256').update('paylink-local-kafka').digest().subarray(0, 16).toString('base64url');
}

function paths(): { dir: string; data: string; props: string; log4j: string; serverLog: string; stdoutLog: string } {
  const dir = serviceDir(NAME);
  return {
    dir,
    data: join(dir, 'data'),
    props: join(dir, 'server.properties'),
    log4j: join(dir, 'log4j2.xml'),
    serverLog: join(dir, 'logs', 'server.log'),
    stdoutLog: join(dir, `${NAME}.log`),
  };
}

function writeServerProperties(): void {
  const p = paths();
  const { broker, controller } = ports();
  const props = [
    '# Written by src/stack/kafka-service.ts on every start; edit that file, not this one.',
    'node.id=1',
    'process.roles=broker,controller',
    `listeners=PLAINTEXT://127.0.0.1:${broker},CONTROLLER://127.0.0.1:${controller}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${broker}`,
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'inter.broker.listener.name=PLAINTEXT',
    'controller.listener.names=CONTROLLER',
    // Dynamic quorum (KIP-853): formatted once with --standalone, the voter set lives in the log.
    `controller.quorum.bootstrap.servers=127.0.0.1:${controller}`,
    `log.dirs=${p.data}`,
    'num.partitions=1',
    'default.replication.factor=1',
    'min.insync.replicas=1',
    'offsets.topic.replication.factor=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'auto.create.topics.enable=false',
    'unclean.leader.election.enable=false',
    'group.initial.rebalance.delay.ms=0',
    // Small, fast-deleting local logs: this is a dev broker sharing 2 cores with other services.
    'num.network.threads=2',
    'num.io.threads=4',
    'num.recovery.threads.per.data.dir=1',
    'log.retention.hours=24',
    'log.segment.bytes=67108864',
    '',
  ];
  writeFileSync(p.props, props.join('\n'));
}

function writeLog4jConfig(): void {
  const p = paths();
  // Everything to a rolling file in the service dir; only errors reach stdout (<name>.log).
  // shutdownHook="disable": log4j's own hook would close the file before Kafka logs its shutdown.
  const xml = `<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <ThresholdFilter level="ERROR"/>
    </Console>
    <RollingFile name="server" fileName="${p.serverLog}" filePattern="${p.serverLog}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/><AppenderRef ref="stdout"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
  </Loggers>
</Configuration>
`;
  writeFileSync(p.log4j, xml);
}

function classpath(): string {
  // The java launcher expands "dir/*" itself into every jar in the folder.
  return `${join(installDir().libs, '*')}`;
}

function jvmArgs(): string[] {
  const p = paths();
  return [
    '-Xms256m',
    '-Xmx768m',
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:InitiatingHeapOccupancyPercent=35',
    '-XX:+ExplicitGCInvokesConcurrent',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${p.log4j}`,
    `-Dkafka.logs.dir=${join(p.dir, 'logs')}`,
    '-cp',
    classpath(),
  ];
}

/** Format the KRaft storage once; meta.properties in the data dir marks it as done. */
function formatIfNeeded(): void {
  const p = paths();
  if (existsSync(join(p.data, 'meta.properties'))) return;
  log(`formatting Kafka storage in ${p.data}`);
  run(java(), [
    ...jvmArgs(),
    'kafka.tools.StorageTool',
    'format',
    '--cluster-id',
    clusterId(),
    '--config',
    p.props,
    '--standalone',
  ]);
}

async function describeClusterOnce(timeoutMs: number): Promise<boolean> {
  const { host, port } = hostPort(brokerAddress(), 9092);
  const kafka = new Kafka({
    clientId: 'paylink-stack-probe',
    brokers: [`${host}:${port}`],
    connectionTimeout: timeoutMs,
    requestTimeout: timeoutMs * 2,
    retry: { retries: 0 },
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length > 0;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

function livePid(): number | undefined {
  const file = pidFile(NAME);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(pid) && pidAlive(pid) ? pid : undefined;
}

function installJars(): void {
  const { root, libs, marker } = installDir();
  if (existsSync(marker)) return;
  log(`installing Kafka jars into ${libs} (Maven Central, local repo ~/.m2)`);
  const started = Date.now();
  // A half-finished copy must not leave stale or missing jars on the classpath.
  rmSync(libs, { recursive: true, force: true });
  ensureDir(root);
  run('mvn', [
    '-q',
    '-B',
    '-Dstyle.color=never',
    '-f',
    pomFile(),
    'dependency:copy-dependencies',
    '-DincludeScope=runtime',
    `-DoutputDirectory=${libs}`,
  ]);
  writeFileSync(marker, new Date().toISOString());
  log(`Kafka jars installed in ${Date.now() - started} ms`);
}

export const kafkaService: LocalService = {
  name: NAME,

  address: brokerAddress,

  answers: () => describeClusterOnce(1000),

  // Maven runs synchronously; the Promise only satisfies the LocalService contract.
  install: () => Promise.resolve().then(installJars),

  async start(): Promise<void> {
    await kafkaService.install();
    const p = paths();
    ensureDir(join(p.dir, 'logs'));
    writeServerProperties();
    writeLog4jConfig();
    const logHint = `${p.serverLog} and ${p.stdoutLog}`;
    let pid = livePid();
    if (pid === undefined) {
      formatIfNeeded();
      pid = spawnDetached(NAME, java(), [...jvmArgs(), 'kafka.Kafka', p.props]);
      log(`started Kafka (pid ${pid}) on ${brokerAddress()}, logs in ${p.serverLog}`);
    } else {
      // Our broker is still booting from an earlier call; wait for it rather than start a second one.
      log(`Kafka (pid ${pid}) is already running, waiting for it to answer`);
    }
    const started = Date.now();
    const brokerPid = pid;
    await waitUntil(
      `Kafka at ${brokerAddress()}`,
      // Stop polling early when the JVM exits (bad config, port taken) instead of waiting 90 s.
      async () => !pidAlive(brokerPid) || (await describeClusterOnce(1000)),
      START_TIMEOUT_MS,
      logHint,
    );
    if (!pidAlive(brokerPid)) throw new Error(`Kafka exited during startup (see ${logHint})`);
    log(`Kafka answers after ${Date.now() - started} ms`);
  },

  async stop(): Promise<void> {
    if (await stopByPidFile(NAME, STOP_GRACE_MS)) log('stopped Kafka');
  },
};

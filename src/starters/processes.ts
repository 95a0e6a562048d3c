import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { dataDir, repoRoot } from '../stack/service';

// Runs the pipeline's own processes (worker, router) as real child processes: the demo uses them,
// and crash tests kill -9 them.

export interface PipelineProcess {
  name: string;
  child: ChildProcess;
  logFile: string;
  ready: Promise<void>;
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

// Children must not outlive their parent: an interrupted demo or test (Ctrl-C, a runner's timeout)
// would otherwise leave routers in the consumer group and workers on the task queue.
const live = new Set<ChildProcess>();
let exitHandlersInstalled = false;
function stopChildrenOnExit(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  const killAll = (signal: NodeJS.Signals): void => live.forEach((c) => c.kill(signal));
  process.once('exit', () => killAll('SIGKILL'));
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      // Graceful first; a child still starting up may have missed it, so SIGKILL after 5 s.
      killAll('SIGTERM');
      const deadline = Date.now() + 5000;
      const timer = setInterval(() => {
        if (live.size === 0 || Date.now() > deadline) {
          clearInterval(timer);
          process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
        }
      }, 100);
    });
  }
}

export function startPipelineProcess(name: string, script: string, env: NodeJS.ProcessEnv = {}): PipelineProcess {
  const dir = join(dataDir, 'processes');
  mkdirSync(dir, { recursive: true });
  const logFile = join(dir, `${name}.log`);
  const out = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(repoRoot, script)], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(out);
  stopChildrenOnExit();
  live.add(child);
  child.once('exit', () => live.delete(child));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: child.stderr });
    lines.on('line', (line) => {
      out.write(`${line}\n`);
      if (line.includes('"msg":"ready"')) resolve();
    });
    void exited.then((code) =>
      reject(new Error(`${name} exited with code ${code} before it was ready (see ${logFile})`)),
    );
  });
  ready.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
  const waitExit = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await exited;
  };
  return {
    name,
    child,
    logFile,
    ready,
    stop: () => waitExit('SIGTERM'),
    kill9: () => waitExit('SIGKILL'),
  };
}

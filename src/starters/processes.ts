import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
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

export function startPipelineProcess(name: string, script: string, env: NodeJS.ProcessEnv = {}): PipelineProcess {
  const dir = join(dataDir, 'processes');
  mkdirSync(dir, { recursive: true });
  const logFile = join(dir, `${name}.log`);
  const out = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, script)], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(out);
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

import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger';
import { type PipelineProcess, startPipelineProcess } from './processes';

// The demo's process supervisor, the local equivalent of systemd's Restart=always with
// StartLimitBurst (deploy/systemd/) or an orchestrator's restart policy: a pipeline process that dies
// is started again after a backoff, and every restart is counted; one that keeps dying fails the demo
// at once, naming it and quoting its last log lines, instead of a timeout that names nothing.

export interface ProcessSpec {
  name: string;
  script: string;
  env?: NodeJS.ProcessEnv;
}

export interface RestartPolicy {
  /** First wait before a restart; doubles per consecutive crash up to maxBackoffMs. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** More than `burst` restarts of one process within `windowMs` is a crash loop: give up. */
  burst: number;
  windowMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  initialBackoffMs: 500,
  maxBackoffMs: 10_000,
  burst: 6,
  windowMs: 120_000,
};

export interface ProcessReport {
  name: string;
  restarts: number;
  /** Alive when the report was made. */
  alive: boolean;
  exits: { at: string; code: number | null; signal: string | null }[];
}

/** A process that kept dying: its name, how it last ended and its last log lines. */
export class CrashLoop extends Error {
  override name = 'CrashLoop';
  constructor(
    readonly processName: string,
    readonly lastLines: string[],
    detail: string,
  ) {
    super(`${processName} keeps dying (${detail}); last log lines:\n  ${lastLines.join('\n  ')}`);
  }
}

/** The last `count` lines of a log file (reads at most its last 64 KB). */
export function lastLogLines(file: string, count = 15): string[] {
  let fd: number | undefined;
  try {
    const size = statSync(file).size;
    const length = Math.min(size, 64 * 1024);
    const buffer = Buffer.alloc(length);
    fd = openSync(file, 'r');
    readSync(fd, buffer, 0, length, size - length);
    return buffer.toString('utf8').split('\n').filter(Boolean).slice(-count);
  } catch {
    return [];
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

class Supervised {
  current: PipelineProcess;
  restarts = 0;
  readonly exits: ProcessReport['exits'] = [];
  private stopping = false;

  constructor(
    readonly spec: ProcessSpec,
    private readonly policy: RestartPolicy,
    private readonly log: Logger,
    private readonly giveUp: (err: CrashLoop) => void,
  ) {
    this.current = this.launch();
  }

  private launch(): PipelineProcess {
    const p = startPipelineProcess(this.spec.name, this.spec.script, this.spec.env);
    void new Promise<void>((resolve) => p.child.once('exit', () => resolve())).then(() => this.onExit(p));
    return p;
  }

  private async onExit(p: PipelineProcess): Promise<void> {
    if (this.stopping || p !== this.current) return;
    const now = Date.now();
    this.exits.push({ at: new Date(now).toISOString(), code: p.child.exitCode, signal: p.child.signalCode });
    const recent = this.exits.filter((e) => now - Date.parse(e.at) <= this.policy.windowMs).length;
    const how = p.child.signalCode ? `signal ${p.child.signalCode}` : `exit code ${p.child.exitCode}`;
    if (recent > this.policy.burst) {
      this.giveUp(
        new CrashLoop(
          this.spec.name,
          lastLogLines(p.logFile),
          `${recent} exits within ${this.policy.windowMs / 1000} s, last by ${how}; log ${p.logFile}`,
        ),
      );
      return;
    }
    const backoff = Math.min(this.policy.maxBackoffMs, this.policy.initialBackoffMs * 2 ** (recent - 1));
    this.log.warn('pipeline process died; restarting it', {
      process: this.spec.name,
      how,
      restartInMs: backoff,
      restarts: this.restarts + 1,
      lastLogLine: lastLogLines(p.logFile, 1)[0],
    });
    await sleep(backoff);
    if (this.stopping) return;
    this.restarts += 1;
    this.current = this.launch();
    this.current.ready.then(
      () => this.log.info('pipeline process restarted', { process: this.spec.name, restarts: this.restarts }),
      () => undefined, // its exit is handled by onExit
    );
  }

  alive(): boolean {
    return this.current.child.exitCode === null && this.current.child.signalCode === null;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.current.stop();
  }
}

export class Supervisor {
  private readonly processes: Supervised[] = [];
  /** Rejects with CrashLoop when a process keeps dying; never resolves. Race every wait with it. */
  readonly failed: Promise<never>;
  private fail!: (err: CrashLoop) => void;

  constructor(
    private readonly log: Logger,
    private readonly policy: RestartPolicy = DEFAULT_RESTART_POLICY,
  ) {
    this.failed = new Promise<never>((_, reject) => {
      this.fail = reject;
    });
    this.failed.catch(() => undefined); // observed by whoever races it
  }

  start(specs: ProcessSpec[]): void {
    for (const spec of specs) this.processes.push(new Supervised(spec, this.policy, this.log, this.fail));
  }

  /** Every process's first start answered ready (or one kept dying). */
  async ready(): Promise<void> {
    await Promise.race([
      Promise.all(
        this.processes.map(async (p) => {
          // A process that dies before its first ready is restarted: wait for whichever start gets there.
          for (;;) {
            const attempt = p.current;
            try {
              await attempt.ready;
              return;
            } catch {
              while (p.current === attempt) await Promise.race([sleep(100), this.failed]);
            }
          }
        }),
      ),
      this.failed,
    ]);
  }

  /** The running process of that name (kill9() it to test the restart). */
  process(name: string): PipelineProcess {
    const p = this.processes.find((s) => s.spec.name === name);
    if (!p) throw new Error(`no supervised process "${name}"`);
    return p.current;
  }

  names(): string[] {
    return this.processes.map((p) => p.spec.name);
  }

  /** Waits until `name` was restarted `restarts` times and its current start answered ready. */
  async restarted(name: string, restarts: number): Promise<void> {
    const p = this.processes.find((s) => s.spec.name === name);
    if (!p) throw new Error(`no supervised process "${name}"`);
    for (;;) {
      if (p.restarts >= restarts) {
        const attempt = p.current;
        const ok = await Promise.race([
          attempt.ready.then(
            () => true,
            () => false,
          ),
          this.failed,
        ]);
        if (ok && p.current === attempt) return;
      }
      await Promise.race([sleep(100), this.failed]);
    }
  }

  report(): ProcessReport[] {
    return this.processes.map((p) => ({ name: p.spec.name, restarts: p.restarts, alive: p.alive(), exits: p.exits }));
  }

  async stop(): Promise<void> {
    await Promise.all(this.processes.map((p) => p.stop()));
  }
}

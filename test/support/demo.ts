import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { repoRoot } from '../../src/stack/service';

/**
 * Runs `src/starters/demo.ts <args> --json` as `npm run demo` does and returns its summary (the last
 * stdout line). Its own entry point, so a timeout's SIGTERM reaches it and it stops its processes.
 * A non-zero exit fails the test with the tail of its stderr and stdout.
 */
export function runDemo<Summary>(args: string[], timeoutMs: number): Summary {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/starters/demo.ts', ...args, '--json'], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  assert.equal(
    run.status,
    0,
    `demo ${args.join(' ')} failed (${run.signal ?? run.status}):\n${run.stderr.slice(-4000)}\nsummary: ${run.stdout.slice(-2000)}`,
  );
  return JSON.parse(run.stdout.trim().split('\n').pop()!) as Summary;
}

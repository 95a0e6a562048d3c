import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/logger';
import { CrashLoop, Supervisor } from '../../src/starters/supervisor';

// The demo's supervisor with real child processes: a process that dies is restarted and counted;
// one that keeps dying fails at once, naming itself and quoting its last log lines.
describe('process supervisor', () => {
  const dir = mkdtempSync(join(tmpdir(), 'paylink-supervisor-'));
  const script = (name: string, body: string): string => {
    const file = join(dir, `${name}.ts`);
    writeFileSync(file, body);
    return file;
  };
  const fast = { initialBackoffMs: 50, maxBackoffMs: 200, burst: 3, windowMs: 60_000 };
  const log = createLogger('supervisor-test');

  it('restarts a process killed -9 and counts the restart', async () => {
    const steady = script(
      'steady',
      `process.stderr.write(JSON.stringify({ msg: 'ready' }) + '\\n'); setInterval(() => undefined, 1000);`,
    );
    const supervisor = new Supervisor(log, fast);
    supervisor.start([{ name: 'steady-test', script: steady }]);
    try {
      await supervisor.ready();
      const first = supervisor.process('steady-test').child.pid;
      await supervisor.process('steady-test').kill9();
      await supervisor.restarted('steady-test', 1);
      const [report] = supervisor.report();
      assert.equal(report!.restarts, 1);
      assert.equal(report!.alive, true);
      assert.equal(report!.exits[0]!.signal, 'SIGKILL');
      assert.notEqual(supervisor.process('steady-test').child.pid, first);
    } finally {
      await supervisor.stop();
    }
    assert.equal(supervisor.report()[0]!.alive, false, 'stopped, and not restarted after the stop');
  });

  it('a process that keeps dying fails the supervisor, naming it and its last log lines', async () => {
    const dying = script(
      'dying',
      `process.stderr.write(JSON.stringify({ msg: 'cannot start: DATABASE_URL refused' }) + '\\n'); process.exit(3);`,
    );
    const supervisor = new Supervisor(log, fast);
    supervisor.start([{ name: 'dying-test', script: dying }]);
    try {
      const err = await supervisor.ready().then(
        () => assert.fail('a process that never starts was reported ready'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof CrashLoop, String(err));
      assert.equal(err.processName, 'dying-test');
      assert.match(err.message, /dying-test keeps dying \(4 exits within 60 s, last by exit code 3/);
      assert.match(err.lastLines.join('\n'), /cannot start: DATABASE_URL refused/);
    } finally {
      await supervisor.stop();
    }
  });
});

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

// A command run through runMain writes its answer to a pipe (a test's execFile, `| jq`): the process must
// not exit before the pipe took all of it. A bare process.exit cut `quality -- quarantined --json` at
// ~219 KB in CI once the list grew.

const run = promisify(execFile);

describe('runMain', () => {
  it('exits only after a long answer went through the pipe whole', async () => {
    const bytes = 3_000_000;
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'test/fixtures/long-answer.ts', String(bytes)], {
      maxBuffer: 64 * 1024 * 1024,
      timeout: 60_000,
    });
    const answer = JSON.parse(stdout) as { text: string };
    assert.equal(answer.text.length, bytes);
  });
});

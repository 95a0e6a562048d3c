import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Logger } from '../../src/logger';
import { serveHealth } from '../../src/health';
import {
  degradedDependencies,
  dependencyOf,
  isTransient,
  markDegraded,
  markRecovered,
  retryTransient,
} from '../../src/resilience';

// Which errors are waited out (the dependency is restarting) and which fail at once (a bug or a
// refusal that waiting cannot fix), with the error shapes the real clients throw.
describe('resilience: transient errors are retried, the rest thrown', () => {
  const pgError = (code: string, message = 'x'): Error =>
    Object.assign(new Error(message), { severity: 'FATAL', code });
  const grpcCause = (code: number): Error =>
    Object.assign(new Error('Failed to signalWithStart Workflow'), {
      name: 'ServiceError',
      cause: Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code }),
    });

  it('classifies the shapes of a restart as transient, others not', () => {
    assert.equal(isTransient(pgError('57P01', 'terminating connection due to administrator command')), true);
    assert.equal(isTransient(pgError('57P03', 'the database system is starting up')), true);
    assert.equal(isTransient(pgError('08006')), true);
    assert.equal(
      isTransient(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5433'), { code: 'ECONNREFUSED' })),
      true,
    );
    assert.equal(isTransient(new Error('Connection terminated unexpectedly')), true);
    assert.equal(isTransient(grpcCause(14)), true);
    assert.equal(isTransient(Object.assign(new Error('x'), { name: 'KafkaJSConnectionError' })), true);
    // A bug, a refused grant, a constraint: waiting does not fix them.
    assert.equal(isTransient(pgError('42501', 'permission denied for table journal_entries')), false);
    assert.equal(isTransient(pgError('23505', 'duplicate key value')), false);
    assert.equal(isTransient(grpcCause(3)), false); // INVALID_ARGUMENT
    assert.equal(isTransient(new TypeError('cannot read properties of undefined')), false);
    assert.equal(isTransient('a string'), false);
  });

  it('names the dependency by the error shape', () => {
    assert.equal(dependencyOf(pgError('57P01'), 'kafka'), 'postgres');
    assert.equal(dependencyOf(grpcCause(14), 'postgres'), 'temporal');
    assert.equal(
      dependencyOf(Object.assign(new Error('x'), { name: 'KafkaJSNumberOfRetriesExceeded' }), 'postgres'),
      'kafka',
    );
    assert.equal(dependencyOf(Object.assign(new Error('x'), { $metadata: {} }), 'postgres'), 's3');
    assert.equal(
      dependencyOf(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'postgres'),
      'postgres',
    );
  });

  const lines: { level: string; msg: string }[] = [];
  const log: Logger = {
    debug: () => undefined,
    info: (msg) => void lines.push({ level: 'info', msg }),
    warn: (msg) => void lines.push({ level: 'warn', msg }),
    error: (msg) => void lines.push({ level: 'error', msg }),
  };

  it('waits out a restart: degraded once, recovered once, the result returned', async () => {
    lines.length = 0;
    let calls = 0;
    const result = await retryTransient(
      'postgres',
      'a query',
      async () => {
        calls += 1;
        if (calls <= 3) throw pgError('57P03', 'the database system is starting up');
        return 'rows';
      },
      { log, initialDelayMs: 1, maxDelayMs: 5 },
    );
    assert.equal(result, 'rows');
    assert.equal(calls, 4);
    assert.deepEqual(lines, [
      { level: 'warn', msg: 'degraded: postgres' },
      { level: 'info', msg: 'recovered: postgres' },
    ]);
    assert.deepEqual(degradedDependencies(), []);
  });

  it('throws a non-transient error at once, and a transient one once told to stop', async () => {
    let calls = 0;
    await assert.rejects(
      retryTransient(
        'postgres',
        'a query',
        async () => {
          calls += 1;
          throw pgError('42501', 'permission denied');
        },
        { log, initialDelayMs: 1 },
      ),
      /permission denied/,
    );
    assert.equal(calls, 1);
    let owned = 3;
    await assert.rejects(
      retryTransient(
        'temporal',
        'a signal',
        async () => {
          throw grpcCause(14);
        },
        { log, initialDelayMs: 1, shouldContinue: () => --owned > 0 },
      ),
      /signalWithStart/,
    );
    assert.deepEqual(
      degradedDependencies().map((d) => d.dependency),
      ['temporal'],
      'still degraded: it never answered',
    );
  });
});

describe('health endpoints (PAYLINK_HEALTH_PORT)', () => {
  it('/readyz says degraded: <dependency> while one is waited out, ready after', async () => {
    const quiet: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
    };
    const server = await serveHealth(0, quiet);
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const readyz = async (): Promise<{ status: string }> =>
      (await fetch(`${url}/readyz`)).json() as Promise<{ status: string }>;
    try {
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      markDegraded('kafka', new Error('broker down'), quiet);
      assert.match((await readyz()).status, /^degraded: .*kafka/);
      markRecovered('kafka', quiet);
      assert.doesNotMatch((await readyz()).status, /kafka/);
      assert.equal((await fetch(`${url}/nope`)).status, 404);
    } finally {
      server.close();
    }
  });
});

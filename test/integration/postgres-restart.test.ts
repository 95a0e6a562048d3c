import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createPool } from '../../src/stores/postgres';
import { createOltpPool } from '../../src/stores/oltp';
import { config, requireServices } from '../support/stack';

// A Postgres restart (fast shutdown: 57P01 to every backend) reaches an idle pooled connection as an
// 'error' event on the pool; unlistened, it kills the process. Here the server terminates the pools'
// idle connections as a restart would, and the process must live and the pools serve the next query.
describe('pools ride out the server dropping their idle connections', () => {
  const pools = [createPool(config, 2), createOltpPool(config, 2)];
  before(async () => requireServices('postgres'));
  after(async () => Promise.all(pools.map((p) => p.end())));

  it('terminated idle connections are logged and replaced, not fatal', async () => {
    for (const pool of pools) {
      const pid = (await pool.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      // The same role may end its own backends: what a restart does to all of them.
      const same = pool === pools[0] ? createPool(config, 1) : createOltpPool(config, 1);
      try {
        await same.query('select pg_terminate_backend($1)', [pid]);
      } finally {
        await same.end();
      }
      // No listener of the test's own: were the pool's missing, the 'error' event would crash this process.
      for (const deadline = Date.now() + 10_000; pool.totalCount > 0;) {
        assert.ok(Date.now() < deadline, 'the pool never noticed its connection was terminated');
        await new Promise((r) => setTimeout(r, 50));
      }
      const again = await pool.query<{ ok: number }>('select 1 as ok');
      assert.equal(again.rows[0]!.ok, 1, 'the pool reconnects on next use');
    }
  });

  it('a connection terminated while checked out between queries is not fatal either', async () => {
    for (const pool of pools) {
      const client = await pool.connect();
      const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const ended = new Promise((resolve) => client.once('end', resolve));
      const same = pool === pools[0] ? createPool(config, 1) : createOltpPool(config, 1);
      try {
        await same.query('select pg_terminate_backend($1)', [pid]);
      } finally {
        await same.end();
      }
      // No query in flight: the FATAL arrives as an 'error' event on the checked-out client (pg-pool
      // removed its idle listener on checkout), just before 'end'. Unlistened, it crashes this process.
      await ended;
      const failure = await client.query('select 1').then(
        () => assert.fail('a terminated connection answered a query'),
        (err: Error) => err,
      );
      client.release(failure);
      const again = await pool.query<{ ok: number }>('select 1 as ok');
      assert.equal(again.rows[0]!.ok, 1, 'the pool replaces the dropped client');
    }
  });
});

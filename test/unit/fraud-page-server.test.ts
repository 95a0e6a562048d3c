import assert from 'node:assert/strict';
import { type IncomingMessage, get as httpGet } from 'node:http';
import { connect } from 'node:net';
import { after, describe, it } from 'node:test';
import type { Logger } from '../../src/logger';
import { seededRandom } from '../../src/simulator/random';
import { FRAUD_VIEWS_OPENAPI } from '../../src/streams/fraud-views/openapi';
import {
  FRAUD_VIEWS_ROUTES,
  type FraudViewsServer,
  createFraudViewsServer,
} from '../../src/streams/fraud-views/server';
import type { ViewsSnapshot, ViewsSource } from '../../src/streams/fraud-views/snapshot';
import { createScriptedViewsSource } from '../support/fraud-views-source';
import { waitFor } from '../support/pipeline';

// The fraud-views server against a scripted ViewsSource on 127.0.0.1:<ephemeral>: the API's shapes and
// refusals, the OpenAPI document, the event stream, the AP behaviour when the source fails or hangs,
// and a seeded fuzz of hostile requests. The page itself in a real browser: test/integration/fraud-page.test.ts.

/** A logger that keeps error lines: a request the server could not answer is logged at error level. */
function recordingLogger(): Logger & { errors: string[] } {
  const errors: string[] = [];
  return {
    errors,
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (msg, fields) => void errors.push(`${msg} ${JSON.stringify(fields)}`),
  };
}

const servers: FraudViewsServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function start(
  source: ViewsSource = createScriptedViewsSource(),
  options: { pollIntervalMs?: number; maxClients?: number; heartbeatMs?: number; slowReadMs?: number } = {},
): Promise<{ server: FraudViewsServer; log: ReturnType<typeof recordingLogger> }> {
  const log = recordingLogger();
  const server = await createFraudViewsServer({
    source,
    pollIntervalMs: options.pollIntervalMs ?? 50,
    port: 0,
    host: '127.0.0.1',
    logger: log,
    ...options,
  });
  servers.push(server);
  // Served once the first read is in.
  await waitFor(
    'the first snapshot',
    Date.now() + 10_000,
    async () => server.current().store.lastReadAt !== null || 'not read',
    {
      intervalMs: 20,
    },
  );
  return { server, log };
}

async function getJson(
  server: FraudViewsServer,
  path: string,
  init?: RequestInit,
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${server.url}${path}`, { ...init, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** One request written byte for byte (no client normalizes it); resolves the status code. */
function rawStatus(port: number, head: Buffer, timeoutMs = 10_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    const shown = JSON.stringify(head.toString('latin1').slice(0, 120));
    const timer = setTimeout(
      () => settle(() => reject(new Error(`no answer within ${timeoutMs} ms to ${shown}`))),
      timeoutMs,
    );
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      data += chunk;
      const m = /^HTTP\/1\.[01] (\d{3}) /.exec(data);
      if (m) settle(() => resolve(Number(m[1])));
    });
    socket.on('error', (err) => settle(() => reject(new Error(`${err.message} for ${shown}`))));
    socket.on('close', () => settle(() => reject(new Error(`closed without an answer to ${shown}`))));
    socket.write(head);
  });
}

interface SseStream {
  events: { event: string; data: string }[];
  comments: string[];
  response: IncomingMessage;
  close(): void;
}

/** Reads /events and parses what comes (events and comment lines). */
function openStream(server: FraudViewsServer): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = httpGet(`${server.url}/events`, (response) => {
      const stream: SseStream = { events: [], comments: [], response, close: () => req.destroy() };
      let buffer = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) stream.comments.push(line);
            else if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length) stream.events.push({ event, data: data.join('\n') });
        }
      });
      resolve(stream);
    });
    req.on('error', reject);
  });
}

const snapshotsOf = (stream: SseStream): ViewsSnapshot[] =>
  stream.events.filter((e) => e.event === 'snapshot').map((e) => JSON.parse(e.data) as ViewsSnapshot);

describe('fraud-views server: the API', () => {
  it('serves the whole snapshot, one view with the store status, and the alerts filtered and limited', async () => {
    const source = createScriptedViewsSource();
    const { server } = await start(source);
    const expected = source.peek();

    const all = await getJson(server, '/api/views');
    assert.equal(all.status, 200);
    assert.match(all.headers.get('content-type') ?? '', /^application\/json/);
    const snapshot = all.body as unknown as ViewsSnapshot;
    assert.deepEqual(snapshot.views, expected.views);
    assert.deepEqual(snapshot.alerts, expected.alerts);
    assert.equal(snapshot.store.reachable, true);
    assert.ok(snapshot.store.lastReadAt !== null);

    const one = await getJson(server, '/api/views/decline-rate');
    assert.equal(one.status, 200);
    assert.deepEqual(
      one.body['view'],
      expected.views.find((v) => v.name === 'decline-rate'),
    );
    assert.equal((one.body['store'] as ViewsSnapshot['store']).reachable, true);

    const cardTesting = await getJson(server, '/api/alerts?rule=card-testing');
    const alerts = cardTesting.body['alerts'] as ViewsSnapshot['alerts'];
    assert.equal(cardTesting.status, 200);
    assert.ok(alerts.length === 1 && alerts[0]!.rule === 'card-testing');
    const limited = await getJson(server, '/api/alerts?limit=1');
    assert.deepEqual(limited.body['alerts'], expected.alerts.slice(0, 1), 'newest first, one');
    assert.equal(((await getJson(server, '/api/alerts')).body['alerts'] as unknown[]).length, 2);
    assert.deepEqual((await getJson(server, '/healthz')).body, { status: 'ok' });
  });

  it('refuses unknown paths (404), other methods (405) and bad queries (400), each error naming what was wrong', async () => {
    const { server, log } = await start();
    const cases: [string, string, number, RegExp][] = [
      ['GET', '/api/views/no-such-view', 404, /no view "no-such-view": the views are decline-rate, .*card-testing/],
      ['GET', '/api/views/%E0%A4%A', 400, /view name "%E0%A4%A" is not valid percent-encoding/],
      ['GET', '/api/nope', 404, /no route "\/api\/nope"/],
      ['GET', '/api/views/decline-rate/rows', 404, /no route/],
      ['GET', '/assets/../server.ts', 404, /no route|no asset/],
      ['GET', '/assets/secrets.json', 404, /no asset "\/assets\/secrets.json"/],
      ['POST', '/api/views', 405, /method POST not allowed on \/api\/views: use GET/],
      ['DELETE', '/', 405, /method DELETE not allowed/],
      ['PUT', '/events', 405, /method PUT not allowed on \/events/],
      ['GET', '/api/alerts?limit=0', 400, /query parameter "limit": expected an integer from 1 to 500, got "0"/],
      ['GET', '/api/alerts?limit=501', 400, /"limit"/],
      ['GET', '/api/alerts?limit=1e2', 400, /"limit".*"1e2"/],
      ['GET', '/api/alerts?limit=-1', 400, /"limit"/],
      ['GET', '/api/alerts?limit=', 400, /"limit"/],
      ['GET', '/api/alerts?rule=', 400, /query parameter "rule": expected 1–100 of/],
      ['GET', '/api/alerts?rule=%3Cscript%3E', 400, /"rule".*"<script>"/],
      ['GET', '/api/alerts?rule=a&rule=b', 400, /query parameter "rule" given more than once/],
      ['GET', '/api/alerts?since=1', 400, /unknown query parameter "since": this path takes rule, limit/],
      ['GET', '/api/views?x=1', 400, /unknown query parameter "x": this path takes none/],
      ['GET', '/api/views/decline-rate?x=1', 400, /unknown query parameter "x"/],
    ];
    for (const [method, path, status, error] of cases) {
      const res = await getJson(server, path, { method });
      assert.equal(res.status, status, `${method} ${path}`);
      assert.match(String(res.body['error']), error, `${method} ${path}`);
      if (status === 405) assert.equal(res.headers.get('allow'), 'GET, HEAD');
    }
    // A refusal is the client's problem, not the server's: nothing logged as an error.
    assert.deepEqual(log.errors, []);
  });

  it('publishes an OpenAPI 3.1 document listing every route, and every documented route answers', async () => {
    const { server } = await start();
    const res = await getJson(server, '/api/openapi.json');
    assert.equal(res.status, 200);
    assert.equal(res.body['openapi'], '3.1.0');
    const paths = Object.keys(res.body['paths'] as object);
    assert.deepEqual([...paths].sort(), [...FRAUD_VIEWS_ROUTES].sort());
    assert.deepEqual(res.body, JSON.parse(JSON.stringify(FRAUD_VIEWS_OPENAPI)));
    const schemas = (res.body['components'] as { schemas: Record<string, { properties?: object }> }).schemas;
    for (const name of ['ViewsSnapshot', 'View', 'FraudAlert', 'StoreStatus', 'Error']) assert.ok(schemas[name], name);
    assert.deepEqual(Object.keys(schemas['ViewsSnapshot']!.properties ?? {}).sort(), [
      'alerts',
      'generatedAt',
      'store',
      'views',
    ]);
    for (const path of paths) {
      const concrete = path.replace('{name}', 'decline-rate').replace('{file}', 'page.js');
      // HEAD: the event stream answers its headers and ends.
      const answer = await fetch(`${server.url}${concrete}`, { method: 'HEAD', signal: AbortSignal.timeout(10_000) });
      assert.equal(answer.status, 200, `HEAD ${concrete}`);
    }
  });

  it('serves the page with a strict CSP, its script and styles, and uPlot from node_modules', async () => {
    const { server } = await start(createScriptedViewsSource(), {});
    const page = await fetch(`${server.url}/`);
    const html = await page.text();
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.match(html, /data-stale-after-ms="10000"/);
    for (const src of html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)) {
      const asset = await fetch(`${server.url}${src[1]!}`);
      assert.equal(asset.status, 200, src[1]);
      assert.ok((await asset.arrayBuffer()).byteLength > 500, src[1]);
    }
    const uplot = await (await fetch(`${server.url}/assets/uPlot.iife.min.js`)).text();
    assert.match(uplot, /uPlot/);
  });
});

describe('fraud-views server: server-sent events', () => {
  it('sends the snapshot on connect and again when it changes, heartbeats, and forgets a client that leaves', async () => {
    const source = createScriptedViewsSource();
    const { server } = await start(source, { heartbeatMs: 100 });
    const stream = await openStream(server);
    assert.equal(stream.response.statusCode, 200);
    assert.match(stream.response.headers['content-type'] ?? '', /^text\/event-stream/);
    await waitFor(
      'the snapshot on connect',
      Date.now() + 10_000,
      async () => snapshotsOf(stream).length > 0 || 'none',
      {
        intervalMs: 20,
      },
    );
    assert.deepEqual(snapshotsOf(stream)[0]!.views, source.peek().views);
    assert.equal(server.counters.clients, 1);

    const asOf = source.advance(1000);
    await waitFor(
      'a snapshot with the new as-of',
      Date.now() + 10_000,
      async () =>
        snapshotsOf(stream).some((s) => s.views.every((v) => v.age.asOf === asOf)) ||
        `${snapshotsOf(stream).length} snapshots`,
      { intervalMs: 20 },
    );
    await waitFor(
      'a heartbeat',
      Date.now() + 10_000,
      async () => stream.comments.some((c) => c.startsWith(': heartbeat')) || 'none',
      {
        intervalMs: 20,
      },
    );
    // An unchanged snapshot is not sent again: only the first and the advanced one.
    const sent = snapshotsOf(stream).length;
    await new Promise((r) => setTimeout(r, 300)); // ~6 polls of an unchanged source
    assert.equal(snapshotsOf(stream).length, sent);

    stream.close();
    await waitFor(
      'the client forgotten',
      Date.now() + 10_000,
      async () => server.counters.clients === 0 || `${server.counters.clients}`,
      {
        intervalMs: 20,
      },
    );
  });

  it('bounds the number of event-stream clients: the next one gets a 429 naming the limit', async () => {
    const { server } = await start(createScriptedViewsSource(), { maxClients: 2 });
    const streams = [await openStream(server), await openStream(server)];
    const refused = await getJson(server, '/events');
    assert.equal(refused.status, 429);
    assert.match(String(refused.body['error']), /too many event-stream clients \(2\)/);
    assert.equal(refused.headers.get('retry-after'), '5');
    streams.forEach((s) => s.close());
    await waitFor(
      'room again',
      Date.now() + 10_000,
      async () => server.counters.clients === 0 || `${server.counters.clients}`,
      {
        intervalMs: 20,
      },
    );
    const again = await openStream(server);
    assert.equal(again.response.statusCode, 200);
    again.close();
  });
});

describe('fraud-views server: the store cut off (AP)', () => {
  it('serves the last snapshot with store.reachable=false and the as-of left where it was, then recovers', async () => {
    const source = createScriptedViewsSource();
    const { server, log } = await start(source);
    const before = (await getJson(server, '/api/views')).body as unknown as ViewsSnapshot;
    const stream = await openStream(server);

    source.fail('connect ECONNREFUSED 127.0.0.1:5433');
    source.advance(5000); // events the page must not see while the store is unreadable
    await waitFor(
      'the store marked unreachable',
      Date.now() + 10_000,
      async () => !server.current().store.reachable || 'reachable',
      {
        intervalMs: 20,
      },
    );
    for (const path of ['/api/views', '/api/views/decline-rate', '/api/alerts']) {
      assert.equal((await getJson(server, path)).status, 200, path);
    }
    const during = (await getJson(server, '/api/views')).body as unknown as ViewsSnapshot;
    assert.equal(during.store.reachable, false);
    assert.equal(during.store.error, 'connect ECONNREFUSED 127.0.0.1:5433');
    assert.ok(during.store.lastReadAt !== null && during.store.lastReadAt >= before.store.lastReadAt!);
    assert.deepEqual(during.views, before.views, 'the last values, as-ofs unchanged');
    assert.deepEqual(during.alerts, before.alerts);
    await waitFor(
      'the outage pushed to the page',
      Date.now() + 10_000,
      async () => snapshotsOf(stream).some((s) => !s.store.reachable) || 'not yet',
      { intervalMs: 20 },
    );

    source.recover();
    await waitFor(
      'the store readable again',
      Date.now() + 10_000,
      async () => server.current().store.reachable || 'unreachable',
      {
        intervalMs: 20,
      },
    );
    const afterHeal = (await getJson(server, '/api/views')).body as unknown as ViewsSnapshot;
    assert.deepEqual(afterHeal.views, source.peek().views, 'caught up with the store');
    assert.equal(afterHeal.store.error, undefined);
    assert.ok(server.counters.readFailures > 0);
    assert.deepEqual(log.errors, []);
    stream.close();
  });

  it('reads one snapshot at a time from a hanging source, answers meanwhile, marks the hang as an outage, and uses the read when it lands', async () => {
    const source = createScriptedViewsSource();
    const { server } = await start(source, { pollIntervalMs: 20, slowReadMs: 300 });
    const before = server.current().views;
    const release = source.hold();
    await waitFor(
      'a hanging read marked as an outage',
      Date.now() + 10_000,
      async () =>
        (!server.current().store.reachable &&
          /store read in flight for \d+ ms \(more than 300 ms\)/.test(server.current().store.error ?? '')) ||
        JSON.stringify(server.current().store),
      { intervalMs: 20 },
    );
    const readsWhileHanging = source.reads;
    const res = await getJson(server, '/api/views');
    assert.equal(res.status, 200, 'the API does not wait for the store');
    assert.deepEqual((res.body as unknown as ViewsSnapshot).views, before, 'the last values');
    // Absence can only be sampled: ~15 polls pass, and none may start a second read.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(source.reads, readsWhileHanging, 'no read started while one hangs');

    const asOf = source.advance(1000);
    release();
    await waitFor(
      'the hung read landing',
      Date.now() + 10_000,
      async () => server.current().store.reachable || 'unreachable',
      {
        intervalMs: 20,
      },
    );
    assert.equal(source.maxInFlight, 1, 'never two reads at once');
    await waitFor(
      'the advanced snapshot',
      Date.now() + 10_000,
      async () => server.current().views.every((v) => v.age.asOf === asOf) || 'not yet',
      { intervalMs: 20 },
    );
  });

  it('a snapshot that breaks the contract is a store error naming the field, never served', async () => {
    const good = createScriptedViewsSource();
    let broken = false;
    const source: ViewsSource = {
      async snapshot() {
        const s = await good.snapshot();
        return broken ? { ...s, views: [{ ...s.views[0]!, age: { ...s.views[0]!.age, asOf: 'yesterday' } }] } : s;
      },
    };
    const { server } = await start(source);
    const before = server.current().views;
    broken = true;
    await waitFor(
      'the contract failure',
      Date.now() + 10_000,
      async () => !server.current().store.reachable || 'reachable',
      {
        intervalMs: 20,
      },
    );
    assert.match(server.current().store.error ?? '', /snapshot failed its contract: views\.0\.age\.asOf/);
    assert.deepEqual(server.current().views, before);
  });

  it('a source that throws before its first read serves an empty, unreachable snapshot (200, not 5xx)', async () => {
    const log = recordingLogger();
    const server = await createFraudViewsServer({
      source: {
        snapshot: () => {
          throw new Error('risk store not configured');
        },
      },
      pollIntervalMs: 20,
      port: 0,
      host: '127.0.0.1',
      logger: log,
    });
    servers.push(server);
    await waitFor('the failed read', Date.now() + 10_000, async () => server.counters.readFailures > 0 || 'no read', {
      intervalMs: 20,
    });
    const res = await getJson(server, '/api/views');
    assert.equal(res.status, 200);
    assert.deepEqual(res.body['views'], []);
    assert.deepEqual(res.body['store'], { reachable: false, lastReadAt: null, error: 'risk store not configured' });
    assert.equal((await getJson(server, '/api/views/decline-rate')).status, 404);
  });
});

describe('fraud-views server: hostile requests', () => {
  it('a seeded fuzz of paths, encodings, query strings and methods: never a 5xx, never a stall', async () => {
    const { server, log } = await start(createScriptedViewsSource(), { maxClients: 1000 });
    const random = seededRandom(0x13f4);
    const bases = [
      '/',
      '/api/views',
      '/api/views/decline-rate',
      '/api/views/',
      '/api/alerts',
      '/api/openapi.json',
      '/events',
      '/assets/page.js',
      '/assets/',
      '/healthz',
      '',
      '*',
      'http://evil.example/api/views',
    ];
    const pieces = [
      '%00',
      '%',
      '%zz',
      '%C0%AF',
      '%E0%80%AF',
      '%F0%80%80%AF',
      '%FF%FE',
      '%ED%A0%80',
      '%2F',
      '%2e%2e',
      '..',
      '/..',
      '//',
      '/./',
      '\\',
      'é',
      '\u0000',
      '\u202e',
      '💳',
      '<script>alert(1)</script>',
      '"',
      "'",
      ';',
      '{',
      '[]',
      '%u0041',
      '+',
      ' ',
      '#frag',
    ];
    const params = ['rule', 'limit', 'rule[]', 'limit[0]', 'a[b][c][d]', '__proto__', 'constructor', '', '=', '&', 'x'];
    const values = [
      'card-testing',
      '1',
      '500',
      '0',
      '-1',
      '1e3',
      '0x10',
      'NaN',
      'Infinity',
      '١٢',
      '9'.repeat(40),
      '%00',
      '%C0%AF',
      '',
    ];
    const methods = [
      'GET',
      'GET',
      'GET',
      'HEAD',
      'POST',
      'PUT',
      'DELETE',
      'OPTIONS',
      'PATCH',
      'TRACE',
      'CONNECT',
      'PROPFIND',
      'G\u00c9T',
    ];
    const piece = (): string => random.pick(pieces);
    const path = (): string => {
      let p = random.pick(bases);
      const segments = random.int(0, 4);
      for (let i = 0; i < segments; i++) p += random.chance(0.5) ? `/${piece()}` : piece();
      if (random.chance(0.1)) p += `/${'a'.repeat(random.int(100, 6000))}`;
      if (random.chance(0.1)) p += '/x'.repeat(random.int(50, 2000)); // nesting
      if (random.chance(0.6)) {
        const pairs = Array.from({ length: random.int(1, random.chance(0.1) ? 300 : 4) }, () =>
          random.chance(0.1)
            ? random.pick(params)
            : `${random.pick(params)}=${random.chance(0.3) ? piece() : random.pick(values)}`,
        );
        p += `?${pairs.join('&')}`;
      }
      return p;
    };
    const statuses = new Map<number, number>();
    for (let i = 0; i < 400; i++) {
      const method = random.pick(methods);
      const head = Buffer.from(
        `${method} ${path()} HTTP/1.1\r\nHost: 127.0.0.1\r\n${random.chance(0.1) ? 'Content-Length: 5\r\n' : ''}Connection: close\r\n\r\n${'x'.repeat(random.chance(0.1) ? 5 : 0)}`,
        'latin1', // one byte per char: raw bytes ≥ 0x80 (overlong UTF-8 as sent) reach the server as they are
      );
      const status = await rawStatus(server.port, head);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      assert.ok(status < 500, `${status} for ${JSON.stringify(head.toString('latin1').slice(0, 200))}`);
    }
    // The fuzz reached the routes (200s), the refusals (400/404/405) and Node's own parser (400/431).
    for (const status of [200, 400, 404, 405])
      assert.ok(statuses.has(status), `no ${status} in ${JSON.stringify([...statuses])}`);
    assert.deepEqual(log.errors, []);
    const health = await getJson(server, '/healthz');
    assert.equal(health.status, 200, 'still answering');
  });
});

import { readFileSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { join } from 'node:path';
import { describeIssues } from '../../contracts/issues';
import { type Logger, errorMessage } from '../../logger';
import { FRAUD_VIEWS_OPENAPI } from './openapi';
import type { ViewsSnapshot, ViewsSource } from './snapshot';
import { ViewsSnapshotSchema } from './snapshot-schema';

// Serves the fraud views: a JSON API (with its OpenAPI document), server-sent events and the live page.
// It reads the snapshot from a ViewsSource about once a second and serves the last good one. The views
// are AP: when the store cannot be read (it throws, or a read hangs) the last snapshot is served with
// store.reachable=false and its as-ofs left where they were — stale with an honest age, never a 5xx.

export interface FraudViewsServerOptions {
  source: ViewsSource;
  pollIntervalMs: number;
  /** 0 = an ephemeral port (tests). */
  port: number;
  host: string;
  logger: Logger;
  /** The page marks a view STALE when its as-of is this far behind the browser's clock (default 10 s). */
  staleAfterMs?: number;
  /** Event-stream clients at once; the next one gets a 429 (default 100). */
  maxClients?: number;
  /** SSE comment lines that keep idle connections open through proxies (default 15 s). */
  heartbeatMs?: number;
  /** A read still in flight after this long marks the store unreachable (default 5 polls, at least 5 s). */
  slowReadMs?: number;
}

export interface FraudViewsServerCounters {
  reads: number;
  readFailures: number;
  /** Snapshot events written (one per client per change). */
  eventsSent: number;
  clients: number;
  clientsRefused: number;
  /** Clients dropped because they did not read what was sent (a buffer over 1 MB). */
  clientsDropped: number;
}

export interface FraudViewsServer {
  server: Server;
  url: string;
  port: number;
  counters: FraudViewsServerCounters;
  /** What /api/views answers right now. */
  current(): ViewsSnapshot;
  close(): Promise<void>;
}

/** The paths the server answers (the OpenAPI document lists each; a unit test ties the two). */
export const FRAUD_VIEWS_ROUTES = [
  '/',
  '/healthz',
  '/events',
  '/api/views',
  '/api/views/{name}',
  '/api/alerts',
  '/api/openapi.json',
  '/assets/{file}',
] as const;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

const PAGE_DIR = join(__dirname, 'page');
const ALLOW = 'GET, HEAD';
const MAX_CLIENT_BUFFER_BYTES = 1024 * 1024;
const DEFAULT_ALERT_LIMIT = 100;
const MAX_ALERT_LIMIT = 500;
const RULE_PATTERN = /^[A-Za-z0-9._-]{1,100}$/;
const COMMON_HEADERS = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };
// Everything the page loads is served here: no CDN, no inline script.
const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset {
  body: Buffer;
  type: string;
}

function loadAssets(staleAfterMs: number): { page: Asset; assets: Map<string, Asset> } {
  const file = (path: string, type: string): Asset => {
    try {
      return { body: readFileSync(path), type };
    } catch (err) {
      throw new Error(`fraud-views page asset missing: ${path}: ${errorMessage(err)}`);
    }
  };
  const html = readFileSync(join(PAGE_DIR, 'index.html'), 'utf8').replace('__STALE_AFTER_MS__', String(staleAfterMs));
  return {
    page: { body: Buffer.from(html), type: 'text/html; charset=utf-8' },
    assets: new Map([
      ['page.js', file(join(PAGE_DIR, 'page.js'), 'text/javascript; charset=utf-8')],
      ['page.css', file(join(PAGE_DIR, 'page.css'), 'text/css; charset=utf-8')],
      // The chart library from node_modules, never a CDN (the page must work without internet).
      ['uPlot.iife.min.js', file(require.resolve('uplot/dist/uPlot.iife.min.js'), 'text/javascript; charset=utf-8')],
      ['uPlot.min.css', file(require.resolve('uplot/dist/uPlot.min.css'), 'text/css; charset=utf-8')],
    ]),
  };
}

/** The query of an /api path: only `allowed` names, each at most once; anything else is a 400 naming it. */
function queryOf(search: string, allowed: readonly string[]): Map<string, string> {
  const found = new Map<string, string>();
  for (const [name, value] of new URLSearchParams(search)) {
    const shown = JSON.stringify(name.slice(0, 100));
    if (!allowed.includes(name)) {
      throw new HttpError(
        400,
        `unknown query parameter ${shown}: ${allowed.length ? `this path takes ${allowed.join(', ')}` : 'this path takes none'}`,
      );
    }
    if (found.has(name)) throw new HttpError(400, `query parameter ${shown} given more than once`);
    found.set(name, value);
  }
  return found;
}

function alertLimitOf(value: string | undefined): number {
  if (value === undefined) return DEFAULT_ALERT_LIMIT;
  const n = /^[0-9]{1,4}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= MAX_ALERT_LIMIT)) {
    throw new HttpError(
      400,
      `query parameter "limit": expected an integer from 1 to ${MAX_ALERT_LIMIT}, got ${JSON.stringify(value.slice(0, 40))}`,
    );
  }
  return n;
}

function ruleOf(value: string | undefined): string | undefined {
  if (value === undefined || RULE_PATTERN.test(value)) return value;
  throw new HttpError(
    400,
    `query parameter "rule": expected 1–100 of A-Z a-z 0-9 . _ -, got ${JSON.stringify(value.slice(0, 40))}`,
  );
}

function viewNameOf(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `view name ${JSON.stringify(segment.slice(0, 100))} is not valid percent-encoding`);
  }
}

/** The parts of a snapshot whose change is worth an event (not the read's own timestamps). */
function fingerprintOf(snapshot: ViewsSnapshot): string {
  return JSON.stringify([snapshot.views, snapshot.alerts, snapshot.store.reachable, snapshot.store.error]);
}

export async function createFraudViewsServer(options: FraudViewsServerOptions): Promise<FraudViewsServer> {
  const { source, logger: log } = options;
  const staleAfterMs = options.staleAfterMs ?? 10_000;
  const maxClients = options.maxClients ?? 100;
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const slowReadMs = options.slowReadMs ?? Math.max(5 * options.pollIntervalMs, 5_000);
  const { page, assets } = loadAssets(staleAfterMs);
  const counters: FraudViewsServerCounters = {
    reads: 0,
    readFailures: 0,
    eventsSent: 0,
    clients: 0,
    clientsRefused: 0,
    clientsDropped: 0,
  };

  // Before the first read: nothing to show yet, and said so.
  let served: ViewsSnapshot = {
    generatedAt: new Date().toISOString(),
    store: { reachable: false, lastReadAt: null, error: 'not read yet' },
    views: [],
    alerts: [],
  };
  let servedJson = JSON.stringify(served);
  let fingerprint = fingerprintOf(served);
  let eventId = 0;
  let readStartedAt: number | undefined;
  let closed = false;
  const clients = new Set<ServerResponse>();

  const serve = (next: ViewsSnapshot): void => {
    served = next;
    servedJson = JSON.stringify(next);
    const nextFingerprint = fingerprintOf(next);
    if (nextFingerprint === fingerprint) return;
    fingerprint = nextFingerprint;
    eventId += 1;
    const event = `event: snapshot\nid: ${eventId}\ndata: ${servedJson}\n\n`;
    for (const client of clients) if (send(client, event)) counters.eventsSent += 1;
  };

  const storeFailed = (error: string): void => {
    if (served.store.reachable)
      log.warn('degraded: fraud-views store unreadable; serving the last snapshot', { error });
    serve({ ...served, store: { reachable: false, lastReadAt: served.store.lastReadAt, error } });
  };

  const read = async (): Promise<void> => {
    readStartedAt = Date.now();
    counters.reads += 1;
    try {
      const parsed = ViewsSnapshotSchema.safeParse(await source.snapshot());
      if (!parsed.success) throw new Error(`snapshot failed its contract: ${describeIssues(parsed.error)}`);
      if (closed) return;
      const snapshot = parsed.data;
      if (!served.store.reachable && snapshot.store.reachable) log.info('fraud-views store readable');
      serve({
        ...snapshot,
        store: snapshot.store.reachable ? { reachable: true, lastReadAt: new Date().toISOString() } : snapshot.store,
      });
    } catch (err) {
      counters.readFailures += 1;
      if (!closed) storeFailed(errorMessage(err).slice(0, 500));
    } finally {
      readStartedAt = undefined;
    }
  };

  const tick = (): void => {
    if (readStartedAt === undefined) {
      void read();
      return;
    }
    // A read that hangs is an outage too; it is never started twice, and its result is used when it comes.
    const inFlightMs = Date.now() - readStartedAt;
    if (inFlightMs > slowReadMs && served.store.reachable) {
      storeFailed(`store read in flight for ${inFlightMs} ms (more than ${slowReadMs} ms)`);
    }
  };

  /** Writes to an event-stream client; drops one that stopped reading. */
  const send = (client: ServerResponse, text: string): boolean => {
    if (client.writableLength > MAX_CLIENT_BUFFER_BYTES) {
      counters.clientsDropped += 1;
      log.warn('dropped an event-stream client that stopped reading', { buffered: client.writableLength });
      client.destroy();
      return false;
    }
    client.write(text);
    return true;
  };

  const pollTimer = setInterval(tick, options.pollIntervalMs);
  const heartbeatTimer = setInterval(() => {
    for (const client of clients) send(client, `: heartbeat ${new Date().toISOString()}\n\n`);
  }, heartbeatMs);
  tick();

  const reply = (
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    body: string | Buffer,
    type: string,
    headers: Record<string, string> = {},
  ): void => {
    res.writeHead(status, {
      ...COMMON_HEADERS,
      'content-type': type,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      ...headers,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  const replyJson = (
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    body: unknown,
    headers?: Record<string, string>,
  ): void =>
    reply(req, res, status, typeof body === 'string' ? body : JSON.stringify(body), 'application/json', headers);

  const openEventStream = (req: IncomingMessage, res: ServerResponse): void => {
    if (clients.size >= maxClients) {
      counters.clientsRefused += 1;
      throw new HttpError(429, `too many event-stream clients (${maxClients}): retry later`, { 'retry-after': '5' });
    }
    res.writeHead(200, {
      ...COMMON_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no', // a buffering proxy would hold the events back
    });
    if (req.method === 'HEAD') return void res.end();
    req.socket.setTimeout(0);
    req.socket.setNoDelay(true);
    clients.add(res);
    counters.clients = clients.size;
    const forget = (): void => {
      clients.delete(res);
      counters.clients = clients.size;
    };
    res.on('close', forget);
    res.on('error', forget);
    res.write(`retry: 2000\n\nevent: snapshot\nid: ${eventId}\ndata: ${servedJson}\n\n`);
    counters.eventsSent += 1;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const pathname = q === -1 ? target : target.slice(0, q);
    const search = q === -1 ? '' : target.slice(q + 1);
    const route =
      pathname.startsWith('/api/views/') && pathname.indexOf('/', '/api/views/'.length) === -1
        ? '/api/views/{name}'
        : pathname.startsWith('/assets/') && pathname.indexOf('/', '/assets/'.length) === -1
          ? '/assets/{file}'
          : (FRAUD_VIEWS_ROUTES as readonly string[]).includes(pathname)
            ? pathname
            : undefined;
    if (route === undefined) throw new HttpError(404, `no route ${JSON.stringify(pathname.slice(0, 200))}`);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      throw new HttpError(405, `method ${String(req.method).slice(0, 20)} not allowed on ${route}: use GET`, {
        allow: ALLOW,
      });
    }
    switch (route) {
      case '/':
        return reply(req, res, 200, page.body, page.type, {
          'content-security-policy': PAGE_CSP,
          'cache-control': 'no-cache',
        });
      case '/assets/{file}': {
        const asset = assets.get(pathname.slice('/assets/'.length));
        if (!asset) throw new HttpError(404, `no asset ${JSON.stringify(pathname.slice(0, 200))}`);
        return reply(req, res, 200, asset.body, asset.type, { 'cache-control': 'no-cache' });
      }
      case '/healthz':
        return replyJson(req, res, 200, { status: 'ok' });
      case '/events':
        return openEventStream(req, res);
      case '/api/openapi.json':
        queryOf(search, []);
        return replyJson(req, res, 200, FRAUD_VIEWS_OPENAPI);
      case '/api/views':
        queryOf(search, []);
        return replyJson(req, res, 200, servedJson);
      case '/api/views/{name}': {
        queryOf(search, []);
        const name = viewNameOf(pathname.slice('/api/views/'.length));
        const view = served.views.find((v) => v.name === name);
        if (!view) {
          const names = served.views.map((v) => v.name).join(', ') || 'none yet';
          throw new HttpError(404, `no view ${JSON.stringify(name.slice(0, 100))}: the views are ${names}`);
        }
        return replyJson(req, res, 200, { generatedAt: served.generatedAt, store: served.store, view });
      }
      case '/api/alerts': {
        const query = queryOf(search, ['rule', 'limit']);
        const rule = ruleOf(query.get('rule'));
        const limit = alertLimitOf(query.get('limit'));
        const alerts = served.alerts.filter((a) => rule === undefined || a.rule === rule).slice(0, limit);
        return replyJson(req, res, 200, { generatedAt: served.generatedAt, store: served.store, alerts });
      }
    }
  };

  const server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (err) {
      req.resume(); // drain any body so the connection can be reused
      if (res.headersSent) return void res.destroy();
      if (err instanceof HttpError) {
        log.debug('fraud-views request refused', { status: err.status, reason: err.message });
        return replyJson(req, res, err.status, { error: err.message }, err.headers);
      }
      log.error('fraud-views request failed', { error: errorMessage(err), url: (req.url ?? '').slice(0, 200) });
      replyJson(req, res, 500, { error: 'internal error' });
    }
  });
  // CONNECT is not a request this server serves; without a listener Node would drop the socket silently.
  server.on('connect', (_req, socket) => {
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nallow: GET, HEAD\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    clearInterval(pollTimer);
    clearInterval(heartbeatTimer);
    throw err;
  }
  const port = (server.address() as { port: number }).port;
  const url = `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`;

  return {
    server,
    url,
    port,
    counters,
    current: () => served,
    async close() {
      closed = true;
      clearInterval(pollTimer);
      clearInterval(heartbeatTimer);
      for (const client of clients) client.end();
      clients.clear();
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await done;
    },
  };
}

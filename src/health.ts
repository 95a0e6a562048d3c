import { type Server, createServer } from 'node:http';
import type { Logger } from './logger';
import { degradedDependencies } from './resilience';

// A pipeline process's health for probes (PAYLINK_HEALTH_PORT): /healthz answers while the process
// lives; /readyz says `ready` or `degraded: <dependency>, …` from what src/resilience.ts is waiting
// out right now. Both answer 200: a degraded process is waiting correctly, and restarting it would
// not bring Postgres back — the status text is for dashboards and alerts, not for the kill switch.

export function readiness(): { status: string; degraded: ReturnType<typeof degradedDependencies> } {
  const degraded = degradedDependencies();
  return {
    status: degraded.length === 0 ? 'ready' : `degraded: ${degraded.map((d) => d.dependency).join(', ')}`,
    degraded,
  };
}

/** Serves /healthz and /readyz on `port` (127.0.0.1 unless `host`); resolves once listening. */
export async function serveHealth(port: number, log: Logger, host = '127.0.0.1'): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const body =
      req.method === 'GET' && path === '/healthz'
        ? { status: 'ok' }
        : req.method === 'GET' && path === '/readyz'
          ? readiness()
          : undefined;
    res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body ?? { error: `no route ${req.method ?? ''} ${path}` }));
  });
  server.unref(); // never what keeps a process alive
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  log.info('health endpoints', { url: `http://${host}:${(server.address() as { port: number }).port}/readyz` });
  return server;
}

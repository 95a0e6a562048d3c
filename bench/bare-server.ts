import cluster from 'node:cluster';
import { createServer } from 'node:http';
import { availableParallelism } from 'node:os';

// The baseline for the edge benchmark: bare Node http reading the same requests and answering 200,
// with as many processes as the edge runs (WEBHOOK_WORKERS, 0 = one per core), as the edge does.
const workers = Number(process.env.WEBHOOK_WORKERS ?? 0) || availableParallelism();

if (cluster.isPrimary && workers > 1) {
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('message', () => {
      if (++ready === workers) process.stderr.write(`${JSON.stringify({ msg: 'ready', workers })}\n`);
    });
  }
  process.once('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ accepted: 1, bytes: Buffer.concat(chunks).length });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.listen(Number(process.env.WEBHOOK_PORT ?? 0), '127.0.0.1', () => {
    if (cluster.isWorker) process.send?.('listening');
    else process.stderr.write(`${JSON.stringify({ msg: 'ready' })}\n`);
  });
  process.once('SIGTERM', () => server.close(() => process.exit(0)));
}

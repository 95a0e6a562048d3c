import { createServer } from 'node:http';

// The baseline for the edge benchmark: bare Node http reading the same requests and answering 200.
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
  process.stderr.write(`${JSON.stringify({ msg: 'ready' })}\n`);
});
process.once('SIGTERM', () => server.close(() => process.exit(0)));

import { type Server, type Socket, createConnection, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

// A TCP proxy in front of one service, so a test can cut the network link and heal it: the way
// PayLink's tests play partitions (a region's link, a broker, a database) without touching the service.

/**
 * refuse    = stop listening: new connections get ECONNREFUSED (a host down, a firewall reset).
 * blackhole = accept and never answer: clients hang until their own timeout (a silent partition).
 */
export type CutMode = 'refuse' | 'blackhole';

export interface NetcutOptions {
  target: { host: string; port: number };
}

export interface Netcut {
  readonly host: string;
  readonly port: number;
  /** host:port clients should connect to instead of the target. */
  readonly address: string;
  /** Drops every open connection (both sides) and refuses or black-holes new ones until heal(). */
  cut(mode?: CutMode): Promise<void>;
  /** Lets traffic through again; black-holed connections are dropped so their clients reconnect. */
  heal(): Promise<void>;
  close(): Promise<void>;
}

export async function startNetcut(options: NetcutOptions): Promise<Netcut> {
  const host = '127.0.0.1';
  let port = 0; // any free port at first, then kept across cut/heal
  let mode: CutMode | undefined;
  const piped = new Set<Socket>();
  const held = new Set<Socket>();
  let server: Server | undefined;

  const track = (set: Set<Socket>, socket: Socket): void => {
    set.add(socket);
    socket.once('close', () => set.delete(socket));
    socket.on('error', () => socket.destroy()); // a reset peer is what a cut looks like, not a test failure
  };

  const onConnection = (client: Socket): void => {
    if (mode === 'blackhole') {
      track(held, client);
      client.pause(); // read nothing, answer nothing
      return;
    }
    const upstream = createConnection(options.target);
    track(piped, client);
    track(piped, upstream);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  };

  const listen = async (): Promise<void> => {
    const s = createServer(onConnection);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, host, () => resolve());
    });
    port = (s.address() as AddressInfo).port;
    server = s;
  };

  const unlisten = async (): Promise<void> => {
    const s = server;
    if (!s) return;
    server = undefined;
    await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  const destroyAll = (set: Set<Socket>): void => {
    for (const socket of set) socket.destroy();
    set.clear();
  };

  await listen();
  return {
    host,
    get port() {
      return port;
    },
    get address() {
      return `${host}:${port}`;
    },
    async cut(how: CutMode = 'blackhole') {
      mode = how;
      destroyAll(piped);
      destroyAll(held);
      // close() waits for open connections; they were just destroyed, so it returns promptly.
      if (how === 'refuse') await unlisten();
      else if (!server) await listen();
    },
    async heal() {
      mode = undefined;
      destroyAll(held);
      if (!server) await listen();
    },
    async close() {
      mode = 'refuse';
      destroyAll(piped);
      destroyAll(held);
      await unlisten();
    },
  };
}

import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { MonitorConfig } from '../../config/types';
import { ConfigError } from '../../errors';
import { log } from '../../logger';
import type { Snapshot } from '../../monitor/snapshot';
import type { Watch } from '../watch';
import { Pacer } from './pace';
import { handler, type SnapshotSource } from './routes';

/** A client that has not sent its headers by then is dropped (one that connects and says nothing). */
const HEADERS_TIMEOUT_MS = 5_000;
/** The longest one request may take to arrive whole. */
const REQUEST_TIMEOUT_MS = 10_000;
/** An idle keep-alive connection is closed after this. */
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** How often the timeouts above are checked (Node's default is 30 s). */
const CHECK_TIMEOUTS_EVERY_MS = 1_000;
/** Connections beyond this are refused: the daemon's memory stays bounded whatever a client does. */
const MAX_CONNECTIONS = 128;
/** How long stop waits for answers in flight before it cuts their connections. */
const CLOSE_WAIT_MS = 2_000;

export interface HttpServer {
  /** Where it listens, with the real port (BACKUP_HTTP_PORT=0 picks a free one). */
  url: string;
  /** Stops listening, closes idle keep-alive connections at once and the rest within CLOSE_WAIT_MS. */
  close(): Promise<void>;
}

/**
 * The read-only HTTP server (issue 21): /healthz, /metrics and the status page, answered from the
 * Watch's newest snapshot, so a request never lists storage nor waits for a backup; while `busy()`
 * says a backup or drill runs, it answers at most BACKUP_HTTP_BUSY_RATE requests a second. Rejects
 * with a ConfigError naming BACKUP_HTTP_PORT (or _HOST) when it cannot listen.
 */
export async function startHttpServer(
  settings: NonNullable<MonitorConfig['http']>,
  watch: Pick<Watch, 'latest' | 'onSnapshot'>,
  busy: () => boolean,
): Promise<HttpServer> {
  const pacer = settings.busyRate > 0 ? new Pacer(busy, settings.busyRate) : undefined;
  const handle = handler(sourceOf(watch), settings.token, pacer);
  const server = http.createServer(
    {
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      connectionsCheckingInterval: CHECK_TIMEOUTS_EVERY_MS,
    },
    (req, res) => void handle(req, res),
  );
  server.maxConnections = MAX_CONNECTIONS;
  dropSilentClients(server);
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, settings)));
    server.listen(settings.port, settings.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${settings.host.includes(':') ? `[${settings.host}]` : settings.host}:${port}/`;
  log.info(`status page at ${url}, health at ${url}healthz, metrics at ${url}metrics`, { url });
  let closing: Promise<void> | undefined;
  return {
    url,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        const cut = setTimeout(() => server.closeAllConnections(), CLOSE_WAIT_MS);
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
        // what waits its turn is answered now, before its connection is cut
        pacer?.release();
      })),
  };
}

/**
 * A connection that has not sent a whole request head within HEADERS_TIMEOUT_MS is closed: Node's
 * own headersTimeout only runs once a request has begun, so a client that connects and says
 * nothing would otherwise hold a connection until the socket dies.
 */
function dropSilentClients(server: http.Server): void {
  const timers = new WeakMap<Socket, NodeJS.Timeout>();
  server.on('connection', (socket: Socket) => {
    const timer = setTimeout(() => socket.destroy(), HEADERS_TIMEOUT_MS);
    timer.unref();
    timers.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  });
  server.on('request', (req: http.IncomingMessage) => clearTimeout(timers.get(req.socket)));
}

function listenError(err: NodeJS.ErrnoException, s: NonNullable<MonitorConfig['http']>): Error {
  const where = `${s.host}:${s.port}`;
  if (err.code === 'EADDRINUSE')
    return new ConfigError(
      'BACKUP_HTTP_PORT',
      `port ${s.port} on ${s.host} is already in use by another program, so the HTTP server cannot start`,
      `Stop the other program (\`ss -ltnp 'sport = :${s.port}'\` names it), or set BACKUP_HTTP_PORT to a free port, then start the daemon again.`,
    );
  if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN')
    return new ConfigError(
      'BACKUP_HTTP_HOST',
      `"${s.host}" is not an address of this machine`,
      'Set BACKUP_HTTP_HOST to 127.0.0.1, or to an address this machine has.',
    );
  if (err.code === 'EACCES') return new ConfigError('BACKUP_HTTP_PORT', `port ${s.port} needs root to listen on`, 'Use a port above 1023, e.g. 9187.');
  return new ConfigError(
    'BACKUP_HTTP_PORT',
    `cannot listen on ${where}: ${err.message}`,
    'Set BACKUP_HTTP_PORT and BACKUP_HTTP_HOST to a port and address this machine can listen on.',
  );
}

/** The Watch as the routes read it: its newest snapshot, and a bounded wait for the first. */
function sourceOf(watch: Pick<Watch, 'latest' | 'onSnapshot'>): SnapshotSource {
  let arrived: (s: Snapshot) => void = () => undefined;
  const first = new Promise<Snapshot>((resolve) => (arrived = resolve));
  watch.onSnapshot((s) => arrived(s));
  return {
    latest: () => watch.latest(),
    first: async (ms) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
      try {
        return await Promise.race([first, late]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';

export interface Received {
  method: string;
  /** Path without the query. */
  path: string;
  rid: string | null;
  body: string;
  headers: http.IncomingHttpHeaders;
  /** When it arrived whole (Date.now()). */
  at: number;
}

export interface PingServer {
  url: string;
  received: Received[];
  /** Resolves once `n` requests have arrived (whole, body included). */
  waitFor(n: number, timeoutMs?: number): Promise<Received[]>;
  /** Connections accepted so far (also those never answered). */
  connections: number;
}

export interface PingServerOptions {
  /** Never answer: accept the connection and the request, then stay silent. */
  hang?: boolean;
  /** Sent as the Ping-Body-Limit header of every answer. */
  bodyLimit?: number;
  /** Status of every answer (default 200). */
  status?: number;
}

/**
 * A healthchecks-like HTTP server on loopback that records every request. Closed when the test
 * finishes (hung requests included).
 */
export async function startPingServer(opts: PingServerOptions = {}): Promise<PingServer> {
  const received: Received[] = [];
  const waiters: (() => void)[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x');
      received.push({
        method: req.method ?? '',
        path: u.pathname,
        rid: u.searchParams.get('rid'),
        body: Buffer.concat(chunks).toString('utf8'),
        headers: req.headers,
        at: Date.now(),
      });
      for (const w of waiters.splice(0)) w();
      if (opts.hang) return;
      const headers: Record<string, string> = { 'content-type': 'text/plain' };
      if (opts.bodyLimit !== undefined) headers['ping-body-limit'] = String(opts.bodyLimit);
      res.writeHead(opts.status ?? 200, headers).end('OK');
    });
  });
  const state = { connections: 0 };
  server.on('connection', () => state.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/ping/0b5e4f7e-secret-check`,
    received,
    get connections() {
      return state.connections;
    },
    async waitFor(n, timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      while (received.length < n) {
        if (Date.now() > end) throw new Error(`expected ${n} requests, got ${received.length}: ${JSON.stringify(received.map((r) => r.path))}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
      return received;
    },
  };
}

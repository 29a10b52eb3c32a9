/**
 * The HTTP server's tests: the daemon started with BACKUP_HTTP_PORT=0 (its URL read from its log
 * line), and plain requests through node:http without keep-alive.
 */
import http from 'node:http';
import { spawnCli, type Spawned } from './cli';

/** A long random token, as the docs tell operators to make one. */
export const TOKEN = 'test-token-5f0c1e2d9a8b7c6d';

/** A schedule that never fires during a test (and leaves nothing to catch up for a backup taken now). */
export const NEVER = '0 0 1 1 *';

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Starts the daemon and waits for the URL it logs once listening. */
export async function daemonWithHttp(env: Record<string, string>): Promise<{ daemon: Spawned; url: string }> {
  const daemon = spawnCli(['daemon'], { BACKUP_SCHEDULE: NEVER, VERIFY_SCHEDULE: 'off', BACKUP_HTTP_PORT: '0', ...env });
  await daemon.waitForOutput(/status page at http:\/\/\S+\//);
  const url = /status page at (http:\/\/\S+\/),/.exec(daemon.output())![1]!;
  return { daemon, url };
}

/** One request on a connection of its own; rejects after `timeoutMs`. */
export function request(url: string, opts: { method?: string; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 20_000, () => req.destroy(new Error(`no answer from ${url} in time`)));
    req.on('error', reject);
    req.end();
  });
}

export const bearer = (token = TOKEN) => ({ Authorization: `Bearer ${token}` });

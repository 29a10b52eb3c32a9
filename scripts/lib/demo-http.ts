/**
 * The demo's look at the daemon's HTTP server: the daemon started with BACKUP_HTTP_PORT=0 (a free
 * port) and a schedule that does not fire, its page's URL as it logs it, /healthz's answer and the
 * page's title, then the daemon stopped as pm2 stops it (SIGINT).
 */
import { spawn } from 'node:child_process';
import http from 'node:http';

const get = (url: string) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.setTimeout(20_000, () => req.destroy(new Error(`no answer from ${url}`)));
    req.on('error', reject);
  });

export async function showStatusPage(cli: string, env: NodeJS.ProcessEnv, write: (s: string) => void): Promise<void> {
  const daemonEnv = { ...env, BACKUP_HTTP_PORT: '0', BACKUP_SCHEDULE: '0 0 1 1 *', VERIFY_SCHEDULE: 'off' };
  write('$ BACKUP_HTTP_PORT=9187 basement-backup daemon   (here: BACKUP_HTTP_PORT=0, any free port)\n');
  const daemon = spawn(process.execPath, [cli, 'daemon'], { env: daemonEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  daemon.stdout.on('data', (d: Buffer) => (out += d.toString()));
  daemon.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => daemon.once('close', resolve));
  try {
    const deadline = Date.now() + 30_000;
    while (!/status page at (http:\/\/\S+\/),/.test(out)) {
      if (daemon.exitCode !== null || Date.now() > deadline) throw new Error(`the daemon did not start its HTTP server:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const url = /status page at (http:\/\/\S+\/),/.exec(out)![1]!;
    write(`the daemon logs: status page at ${url}\n$ curl ${url}healthz\n`);
    const health = await get(`${url}healthz`);
    write(`HTTP ${health.status}\n${health.body}`);
    const page = await get(url);
    const title = /<title>([^<]*)<\/title>/.exec(page.body)?.[1] ?? '';
    write(`$ curl ${url}   → HTTP ${page.status}, "${title}", ${page.body.length} bytes of HTML with its charts inline (open it in a browser)\n`);
    if (health.status !== 200) throw new Error('/healthz is not 200 after a good backup');
  } finally {
    daemon.kill('SIGINT');
    await exited;
  }
}

/**
 * The HTTP server's effect on a backup (issue 21): the daemon's own catch-up backup, timed by its
 * manifest (duration_ms), without the server, with it under a flood of GET requests to /metrics,
 * /healthz and / (CONCURRENCY at a time, from this process, on loopback) for as long as the backup
 * runs, and with it under a paced load: the three pages once a second (a Prometheus scraping every
 * second, an uptime check and a person on the page; real ones scrape every 15-60 s). Rounds
 * rotate the order. Each ratio is the median of the rounds' with/without.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { load, quantile } from '../scripts/lib/http-load';
import { median } from './report';

export const HTTP_CONCURRENCY = 50;
const PATHS = ['/metrics', '/healthz', '/'];
/** Each batch of the load; batches follow each other until the backup ended. */
const BATCH = 1000;

export interface HttpRound {
  withoutMs: number;
  withMs: number;
  /** Under the paced load. */
  pacedMs: number;
  requests: number;
  p99Ms: number;
}

export interface HttpEffect {
  rounds: HttpRound[];
  ratio: number;
  pacedRatio: number;
}

type Load = 'none' | 'flood' | 'paced';

interface Run {
  cli: string;
  /** The daemon's environment for a backup into `backupDir`. */
  env: (backupDir: string, extra: Record<string, string>) => NodeJS.ProcessEnv;
  dir: string;
  cwd: string;
}

/** Starts the daemon on an empty backup directory (so it catches up at once) and resolves with the backup's duration. */
async function daemonBackup(r: Run, name: string, kind: Load): Promise<{ durationMs: number; requests: number; latencies: number[] }> {
  const withHttp = kind !== 'none';
  const backupDir = path.join(r.dir, name);
  fs.rmSync(backupDir, { recursive: true, force: true });
  fs.mkdirSync(backupDir, { mode: 0o700 });
  const extra: Record<string, string> = { BACKUP_SCHEDULE: '0 0 * * *', VERIFY_SCHEDULE: 'off', BACKUP_DIGEST: 'off' };
  if (withHttp) extra.BACKUP_HTTP_PORT = '0';
  const child = spawn(process.execPath, [r.cli, 'daemon'], { env: r.env(backupDir, extra), cwd: r.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const manifest = () => fs.readdirSync(backupDir).find((n) => n.endsWith('.manifest.json'));
  const until = async (what: string, pred: () => boolean) => {
    const deadline = Date.now() + 30 * 60_000;
    while (!pred()) {
      if (child.exitCode !== null) throw new Error(`the daemon exited before ${what}:\n${out}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((res) => setTimeout(res, 20));
    }
  };
  try {
    let requests = 0;
    const latencies: number[] = [];
    if (withHttp) {
      await until('its URL', () => /status page at http:\/\/\S+\//.test(out));
      const url = /status page at (http:\/\/\S+\/),/.exec(out)![1]!;
      while (!manifest()) {
        const started = Date.now();
        const n = kind === 'flood' ? BATCH : PATHS.length;
        const l = await load(url, PATHS, n, kind === 'flood' ? HTTP_CONCURRENCY : 1);
        if (l.failed > 0) throw new Error(`the HTTP server failed ${l.failed} requests under load: ${l.firstError}`);
        requests += n;
        latencies.push(...l.latenciesMs);
        if (kind === 'paced') await new Promise((res) => setTimeout(res, Math.max(0, 1000 - (Date.now() - started))));
      }
    }
    await until('the backup', () => manifest() !== undefined);
    const m = JSON.parse(fs.readFileSync(path.join(backupDir, manifest()!), 'utf8')) as { duration_ms: number };
    return { durationMs: m.duration_ms, requests, latencies };
  } finally {
    child.kill('SIGINT');
    await exited;
  }
}

/** `rounds` pairs of the daemon's backup of the database `env` names, without and with the server under load. */
export async function httpEffect(r: Run, rounds: number, say: (line: string) => void): Promise<HttpEffect> {
  const done: HttpRound[] = [];
  for (let i = 0; i < rounds; i++) {
    const kinds: Load[] = ['none', 'flood', 'paced'];
    const order = [...kinds.slice(i % 3), ...kinds.slice(0, i % 3)];
    const runs = {} as Record<Load, Awaited<ReturnType<typeof daemonBackup>>>;
    for (const kind of order) runs[kind] = await daemonBackup(r, `http-${kind}`, kind);
    const w = runs.flood;
    const round = {
      withoutMs: runs.none.durationMs,
      withMs: w.durationMs,
      pacedMs: runs.paced.durationMs,
      requests: w.requests,
      p99Ms: quantile(w.latencies, 0.99),
    };
    done.push(round);
    const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    say(
      `  http round ${i + 1}/${rounds}: backup ${s(round.withoutMs)} without the server; ${s(round.withMs)} under a flood (${round.requests} requests sent) ` +
        `(p99 ${round.p99Ms.toFixed(1)} ms): ${(round.withMs / round.withoutMs).toFixed(3)}; ${s(round.pacedMs)} paced: ${(round.pacedMs / round.withoutMs).toFixed(3)}`,
    );
  }
  return { rounds: done, ratio: median(done.map((d) => d.withMs / d.withoutMs)), pacedRatio: median(done.map((d) => d.pacedMs / d.withoutMs)) };
}

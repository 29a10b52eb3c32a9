/**
 * A bounded load on loopback: `total` GET requests, `concurrency` at a time over keep-alive
 * connections, cycling through `paths`. What the load test and the bench share.
 */
import fs from 'node:fs';
import http from 'node:http';

export interface LoadResult {
  statuses: Map<number, number>;
  /** Requests that got no answer (a reset, a timeout), with the first error. */
  failed: number;
  firstError: string | undefined;
  latenciesMs: number[];
}

export async function load(base: string, paths: string[], total: number, concurrency: number, headers: Record<string, string> = {}): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const result: LoadResult = { statuses: new Map(), failed: 0, firstError: undefined, latenciesMs: [] };
  let next = 0;
  const one = (path: string) =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const req = http.get(new URL(path, base), { agent, headers }, (res) => {
        res.resume();
        res.on('end', () => {
          result.latenciesMs.push(performance.now() - started);
          result.statuses.set(res.statusCode!, (result.statuses.get(res.statusCode!) ?? 0) + 1);
          resolve();
        });
      });
      req.setTimeout(30_000, () => req.destroy(new Error('no answer in 30 s')));
      req.on('error', (err) => {
        result.failed++;
        result.firstError ??= err.message;
        resolve();
      });
    });
  const worker = async () => {
    while (next < total) await one(paths[next++ % paths.length]!);
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
  return result;
}

/** The `p` quantile (0..1) of `values`, by the nearest rank. */
export function quantile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN;
}

/** A process's memory from /proc/<pid>/status, in MB: VmRSS now and VmHWM (its peak). */
export function memoryMb(pid: number): { rss: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** The benchmark's report: medians, units and tables. */
import os from 'node:os';
import Table from 'cli-table3';

/** Decimal megabytes, like the rest of basement-backup's output (formatBytes); stricter than MiB against the 120 MB target. */
export const MB = 1_000_000;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export const mb = (bytes: number, digits = 1) => (bytes / MB).toFixed(digits);
export const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
export const secs = (ms: number) => (ms / 1000).toFixed(2);
export const spread = (ms: number[]) => `${secs(median(ms))} s (${secs(Math.min(...ms))}–${secs(Math.max(...ms))})`;
export const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

export function table(head: string[], rows: (string | number)[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map(String));
  return t.toString();
}

export function say(line = ''): void {
  process.stdout.write(line + '\n');
}

import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { renderMetrics } from '../../src/monitor/metrics';
import { observation, snapshot } from '../helpers/snapshot';

const DIR = path.resolve(__dirname, '../../docs/prometheus');

/** Prometheus's own tool (Debian's `prometheus` package; .ci/run installs it): its rule parser, rule engine and metrics linter. */
async function promtool(args: string[], input?: string): Promise<{ code: number; out: string }> {
  const run = promisify(execFile);
  const child = run('promtool', args, { cwd: DIR, timeout: 30_000 });
  if (input !== undefined) {
    child.child.stdin!.end(input);
  }
  try {
    const { stdout, stderr } = await child;
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new Error("promtool not found: install Debian's prometheus package (apt-get install prometheus), as .ci/run does");
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('promtool', () => {
  it('accepts the alert rules, and their unit tests pass in the Prometheus rule engine', async () => {
    const check = await promtool(['check', 'rules', 'basement-backup.rules.yml']);
    expect(check.code, check.out).toBe(0);
    expect(check.out).toMatch(/SUCCESS: 4 rules found/);
    const test = await promtool(['test', 'rules', 'basement-backup.rules.test.yml']);
    expect(test.code, test.out).toBe(0);
  });

  it("finds nothing to lint in the daemon's own metrics (prom-client's Node metrics have three known lints)", async () => {
    const ours = await promtool(['check', 'metrics'], await renderMetrics(snapshot([observation()]), { processMetrics: false }));
    expect(ours.code, ours.out).toBe(0);
    expect(ours.out.trim()).toBe('');
    // prom-client names three gauges nodejs_active_*_total: theirs, under the names every Node dashboard uses
    const all = await promtool(['check', 'metrics'], await renderMetrics(snapshot([observation()])));
    for (const line of all.out.trim().split('\n').filter(Boolean))
      expect(line).toMatch(/^nodejs_active_\w+_total non-counter metrics should not have "_total" suffix$/);
  });
});

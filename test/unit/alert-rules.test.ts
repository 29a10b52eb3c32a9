import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { METRICS } from '../../src/monitor/metric-list';
import { renderMetrics } from '../../src/monitor/metrics';
import type { Observation } from '../../src/monitor/observe';
import { parseMetrics } from '../helpers/prom';
import { evaluate, metricNames, parsePromQL, scraped, type Series } from '../helpers/promql';
import { NOW, observation, point, snapshot } from '../helpers/snapshot';

const RULES = path.resolve(__dirname, '../../docs/prometheus/basement-backup.rules.yml');

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

function rules(): Rule[] {
  const doc = parse(fs.readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

function rule(name: string): Rule {
  return rules().find((r) => r.alert === name)!;
}

/** Two hosts, as Prometheus stores their scrapes: the same database name on each, kept apart by `instance`. */
async function scrape(host1: Observation[], host2: Observation[] = [observation()]): Promise<Series[]> {
  const one = parseMetrics(await renderMetrics(snapshot(host1), { processMetrics: false }));
  const two = parseMetrics(await renderMetrics(snapshot(host2), { processMetrics: false }));
  return [...scraped(one, { instance: 'db1:9187', job: 'basement-backup' }), ...scraped(two, { instance: 'db2:9187', job: 'basement-backup' })];
}

/** The alerts that fire at `at` (seconds), as `alert instance database target` lines. */
function firing(data: Series[], at = NOW.getTime() / 1000): string[] {
  return rules()
    .flatMap((r) => evaluate(r.expr, data, at).map((s) => [r.alert, s.labels.instance, s.labels.database ?? '-', s.labels.target ?? '-'].join(' ')))
    .sort();
}

/** A healthy database: a backup 10 h old, no failure, a disk that does not fill up. */
function healthy(over: Partial<Observation> = {}): Observation {
  const o = observation({ failure_streak: 0, ...over });
  o.targets[0]!.good = [point(10, 1_000), point(34, 1_000), point(58, 1_000)];
  o.targets.pop(); // one target, listed
  return o;
}

describe('the alert rules (docs/prometheus/basement-backup.rules.yml)', () => {
  it("README's three rules are the file's, word for word (expr and for)", () => {
    const readme = fs.readFileSync(path.resolve(__dirname, '../../README.md'), 'utf8');
    const block = /## Monitoring[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block, "README's Monitoring section has a yaml block").toBeDefined();
    const shown = parse(block!) as Rule[];
    expect(shown.map((r) => r.alert)).toEqual(['BasementBackupStale', 'BasementBackupFailing', 'BasementBackupDiskFull']);
    for (const r of shown) expect({ expr: r.expr, for: r.for }, r.alert).toEqual({ expr: rule(r.alert).expr, for: rule(r.alert).for });
  });

  it('parse as Prometheus rules: YAML, PromQL without a syntax error, only metrics the daemon exports', () => {
    const exported = new Set(METRICS.map((m) => m.name));
    expect(rules().map((r) => r.alert)).toEqual(['BasementBackupStale', 'BasementBackupFailing', 'BasementBackupDiskFull', 'BasementBackupChecksStopped']);
    for (const r of rules()) {
      expect(() => parsePromQL(r.expr), r.alert).not.toThrow();
      expect(metricNames(r.expr).length, r.alert).toBeGreaterThan(0);
      for (const n of metricNames(r.expr)) expect(exported.has(n), `${r.alert} uses ${n}`).toBe(true);
      expect(r.annotations?.summary, r.alert).toMatch(/\{\{ \$labels\.instance \}\}/);
    }
  });

  it('none fires for healthy databases on two hosts', async () => {
    expect(firing(await scrape([healthy()]))).toEqual([]);
  });

  it('stale fires for the target whose newest backup is older than its maximum age, on its host only', async () => {
    const o = healthy();
    o.targets[0]!.good = [point(30, 1_000), point(54, 1_000), point(78, 1_000)];
    expect(firing(await scrape([o]))).toEqual(['BasementBackupStale db1:9187 shop local']);
    // the maximum age is the database's own: 36 h makes the same backup recent
    expect(firing(await scrape([{ ...o, max_age_ms: 36 * 3600_000 }]))).toEqual([]);
    expect(rule('BasementBackupStale').expr).not.toMatch(/_since|_ago/);
  });

  it('failing fires while backups fail in a row', async () => {
    const data = await scrape([healthy({ failure_streak: 2 })]);
    expect(firing(data)).toEqual(['BasementBackupFailing db1:9187 shop -']);
    expect(evaluate(rule('BasementBackupFailing').expr, data, NOW.getTime() / 1000)[0]!.value).toBe(2);
  });

  it('disk fires when the projection is within 14 days, not at 20', async () => {
    const soon = healthy();
    soon.targets[0]!.disk = { free_bytes: 5_000, growth_bytes_per_day: 1_000, days_to_full: 5 };
    expect(firing(await scrape([soon]))).toEqual(['BasementBackupDiskFull db1:9187 shop local']);
    const later = healthy();
    later.targets[0]!.disk = { free_bytes: 20_000, growth_bytes_per_day: 1_000, days_to_full: 20 };
    expect(firing(await scrape([later]))).toEqual([]);
  });

  it('a textfile left by a dead daemon: its checks stopped, and its backups go stale as time passes', async () => {
    const data = await scrape([healthy()], [healthy({ name: 'crm' })]);
    expect(firing(data, NOW.getTime() / 1000 + 3600)).toEqual(['BasementBackupChecksStopped db1:9187 - -', 'BasementBackupChecksStopped db2:9187 - -']);
    expect(firing(data, NOW.getTime() / 1000 + 20 * 3600)).toEqual([
      'BasementBackupChecksStopped db1:9187 - -',
      'BasementBackupChecksStopped db2:9187 - -',
      'BasementBackupStale db1:9187 shop local',
      'BasementBackupStale db2:9187 crm local',
    ]);
  });
});

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { METRICS } from '../../src/monitor/metric-list';
import { parsePromQL, selectors } from '../helpers/promql';

const DASHBOARD = path.resolve(__dirname, '../../docs/grafana/basement-backup.json');

interface Panel {
  title: string;
  type: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}

interface Dashboard {
  templating: { list: { name: string; type: string; query?: string | { query: string } }[] };
  panels: Panel[];
}

const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as Dashboard;

/** Every panel, those inside collapsed rows too. */
function panels(list: Panel[]): Panel[] {
  return list.flatMap((p) => [p, ...panels(p.panels ?? [])]);
}

/** Grafana's interval variables, which are not PromQL, as a duration. */
const asPromQL = (expr: string) => expr.replace(/\$__(rate_interval|interval|range)\b/g, '5m');

/** The variables' queries: `label_values(<selector>, <label>)` is Grafana's, the selector inside is PromQL. */
function variableSelectors(): { name: string; selector: string }[] {
  return dashboard.templating.list
    .filter((v) => v.type === 'query')
    .map((v) => {
      const q = typeof v.query === 'string' ? v.query : v.query!.query;
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q);
      if (!m) throw new Error(`variable ${v.name}: ${q} is not label_values(selector, label)`);
      expect(m[2]).toBe(v.name);
      return { name: v.name, selector: m[1]! };
    });
}

describe('the Grafana dashboard (docs/grafana/basement-backup.json)', () => {
  const byName = new Map(METRICS.map((m) => [m.name, m]));

  it('every query parses as PromQL and uses only metrics the daemon exports', () => {
    const queries = panels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ where: p.title, expr: asPromQL(t.expr) })));
    queries.push(...variableSelectors().map((v) => ({ where: `variable ${v.name}`, expr: v.selector })));
    expect(queries.length).toBeGreaterThan(10);
    for (const q of queries) {
      expect(() => parsePromQL(q.expr), q.where).not.toThrow();
      const used = selectors(q.expr);
      expect(used.length, q.where).toBeGreaterThan(0);
      for (const s of used) expect(byName.has(s.name), `${q.where}: ${s.name} is not exported`).toBe(true);
    }
  });

  it('has $instance and $database variables, and every panel keeps to them', () => {
    expect(variableSelectors().map((v) => v.name)).toEqual(['instance', 'database']);
    for (const p of panels(dashboard.panels))
      for (const t of p.targets ?? [])
        for (const s of selectors(asPromQL(t.expr))) {
          expect(s.matchers, `${p.title}: ${s.name}`).toContain('instance=~"$instance"');
          if (byName.get(s.name)!.labels.includes('database')) expect(s.matchers, `${p.title}: ${s.name}`).toContain('database=~"$database"');
        }
  });

  it('shows the metrics an operator looks at first', () => {
    const used = new Set(panels(dashboard.panels).flatMap((p) => (p.targets ?? []).flatMap((t) => selectors(asPromQL(t.expr)).map((s) => s.name))));
    for (const name of [
      'last_success_timestamp_seconds',
      'healthy',
      'failure_streak',
      'warning',
      'last_success_size_bytes',
      'disk_free_bytes',
      'last_drill_restore_seconds',
    ])
      expect(used.has(`basement_backup_${name}`), name).toBe(true);
  });
});

import { describe, expect, it } from 'vitest';
import { healthReport } from '../../src/monitor/health';
import type { Observation } from '../../src/monitor/observe';
import { statusPage } from '../../src/monitor/page';
import type { Snapshot } from '../../src/monitor/snapshot';

const EVIL = '<script>alert("x")</script><img src=//evil.example/x>';
const NOW = '2026-12-06T12:00:00.000Z';

function observation(name: string): Observation {
  const at = (h: number) => new Date(Date.parse(NOW) - h * 3600_000).toISOString();
  return {
    name,
    database: name,
    observed_at: NOW,
    schedule: '0 3 * * *',
    verify_schedule: null,
    max_age_ms: 26 * 3600_000,
    drill_interval_ms: null,
    target_drill_interval_ms: null,
    next_backup_at: at(-15),
    next_drill_at: null,
    last_attempt: { started_at: at(1), finished_at: at(1), ok: true, code: null },
    last_failure: null,
    failure_streak: 0,
    failures_total: 0,
    last_drill: null,
    running: false,
    targets: [
      {
        name: `t${EVIL}`,
        location: `/srv/${EVIL}`,
        error: null,
        good: [1, 25, 49].map((h, i) => ({
          id: `${name}_${i}`,
          created_at: at(h),
          finished_at: at(h),
          duration_ms: 1000 + i,
          size_bytes: i === 0 ? 100 : 1000,
          anomaly: i === 0 ? { id: `${name}_0`, kind: 'small' as const, size_bytes: 100, median_bytes: 1000, ratio: 0.1 } : null,
          drill: null,
        })),
        good_count: 3,
        stored_bytes: 2100,
        damaged: 0,
        disk: { free_bytes: 5e9, growth_bytes_per_day: 10, days_to_full: 400 },
        last_drill: null,
        encrypted: null,
        immutable: 'none',
      },
    ],
  };
}

const snapshot = (findings: Snapshot['findings'] = []): Snapshot => ({
  taken_at: NOW,
  observations: [observation(EVIL)],
  findings,
  daemon: { started_at: NOW, version: '0.1.0' },
});

describe('the status page', () => {
  it('escapes every value: a database, target or location named like HTML stays text', () => {
    const finding = { key: 'k', kind: 'size' as const, name: EVIL, target: null, title: `Size of ${EVIL}`, message: EVIL, fix: EVIL, health: false };
    const html = statusPage(snapshot([finding]));
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
    // only the page's own style: no script element, no external reference of any kind
    const markup = html.replace(/"[^"]*"/g, '""');
    expect(markup).not.toMatch(/<[a-z][^>]*\s(src|href)=|@import|url\(/i);
  });

  it('draws the sizes and durations as inline SVG, the anomaly marked, and the table with one row per backup', () => {
    const html = statusPage(snapshot());
    expect(html.match(/<svg class="chart"/g)).toHaveLength(2);
    expect(html.match(/<circle class="dot mark"/g)).toHaveLength(1);
    expect(html.match(/<tr class="anomaly">/g)).toHaveLength(1);
    expect(html).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
  });

  it('says the daemon is starting before its first check, and /healthz answers 503 "starting"', () => {
    expect(statusPage(undefined)).toMatch(/first check has not ended yet/);
    expect(healthReport(undefined)).toEqual({ status: 503, body: { status: 'starting', checked_at: null, reasons: [] } });
  });
});

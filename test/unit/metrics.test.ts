import { describe, expect, it } from 'vitest';
import { METRICS, WARNING_KINDS } from '../../src/monitor/metric-list';
import { METRICS_CONTENT_TYPE, renderMetrics } from '../../src/monitor/metrics';
import { metricValue, parseMetrics } from '../helpers/prom';
import { NOW, observation, point, snapshot } from '../helpers/snapshot';

const ts = (iso: string) => Date.parse(iso) / 1000;

describe('renderMetrics', () => {
  it('names, types and units follow Prometheus conventions, and every family is in METRICS', async () => {
    const text = await renderMetrics(snapshot([observation()]), { processMetrics: false });
    const families = parseMetrics(text);
    expect([...families.keys()].sort()).toEqual(METRICS.map((m) => m.name).sort());
    for (const def of METRICS) {
      const f = families.get(def.name)!;
      expect(f.type, def.name).toBe(def.type.toUpperCase());
      expect(f.help, def.name).toBe(def.help);
      expect(def.name).toMatch(/^basement_backup_[a-z_]+$/);
      expect(def.name.endsWith('_total'), def.name).toBe(def.type === 'counter');
      // a time is a timestamp, never "seconds since"; durations and sizes carry their base unit
      expect(def.name, def.name).not.toMatch(/_(ago|since|days|hours|minutes|ms|milliseconds|kb|mb|gb)(_|$)/);
      if (/time|duration|restore/.test(def.name)) expect(def.name).toMatch(/_seconds$/);
      if (/size|bytes|free/.test(def.name) && !/anomaly/.test(def.name)) expect(def.name).toMatch(/_bytes$/);
      for (const sample of f.metrics) expect(Object.keys(sample.labels ?? {}).sort()).toEqual([...def.labels].sort());
    }
  });

  it('never uses a backup id, a file name or a time as a label value', async () => {
    const o = observation();
    const text = await renderMetrics(snapshot([o]), { processMetrics: false });
    const allowed = new Set<string>(['shop', 'local', 'offsite', '1.2.3', 'backup', 'drill', ...WARNING_KINDS]);
    const ids = o.targets.flatMap((t) => t.good.map((b) => b.id));
    for (const f of parseMetrics(text).values())
      for (const s of f.metrics)
        for (const v of Object.values(s.labels ?? {})) {
          expect(allowed.has(v), `${f.name} ${v}`).toBe(true);
          expect(ids).not.toContain(v);
          expect(v).not.toMatch(/\d{8}T\d{6}|\d{4}-\d\d-\d\d|\.(dump|sql|zst|gz|age)\b/);
        }
  });

  it('gives the values of the snapshot, and omits what is unknown', async () => {
    const o = observation();
    const m = parseMetrics(await renderMetrics(snapshot([o]), { processMetrics: false }));
    const db = { database: 'shop' };
    const local = { database: 'shop', target: 'local' };
    const offsite = { database: 'shop', target: 'offsite' };
    expect(metricValue(m, 'basement_backup_up')).toBe(1);
    expect(metricValue(m, 'basement_backup_build_info', { version: '1.2.3' })).toBe(1);
    expect(metricValue(m, 'basement_backup_start_time_seconds')).toBe(ts('2026-12-06T11:00:00Z'));
    expect(metricValue(m, 'basement_backup_last_check_timestamp_seconds')).toBe(ts(NOW.toISOString()));
    expect(metricValue(m, 'basement_backup_last_attempt_timestamp_seconds', db)).toBe(ts('2026-12-06T02:00:12.500Z'));
    expect(metricValue(m, 'basement_backup_last_attempt_success', db)).toBe(1);
    expect(metricValue(m, 'basement_backup_last_attempt_duration_seconds', db)).toBe(12.5);
    expect(metricValue(m, 'basement_backup_failures_total', db)).toBe(3);
    expect(metricValue(m, 'basement_backup_failure_streak', db)).toBe(0);
    expect(metricValue(m, 'basement_backup_max_age_seconds', db)).toBe(26 * 3600);
    expect(metricValue(m, 'basement_backup_next_run_timestamp_seconds', { ...db, kind: 'backup' })).toBe(ts(o.next_backup_at));
    expect(metricValue(m, 'basement_backup_next_run_timestamp_seconds', { ...db, kind: 'drill' })).toBe(ts(o.next_drill_at!));
    expect(metricValue(m, 'basement_backup_last_drill_timestamp_seconds', db)).toBe(ts(o.last_drill!.verified_at));
    expect(metricValue(m, 'basement_backup_last_drill_success', db)).toBe(1);
    expect(metricValue(m, 'basement_backup_last_drill_restore_seconds', db)).toBe(95);
    // the newest is a tenth of the median: a size warning; the drill took longer than 1 min; offsite cannot be listed
    expect(metricValue(m, 'basement_backup_warning', { ...db, kind: 'size' })).toBe(1);
    expect(metricValue(m, 'basement_backup_warning', { ...db, kind: 'drill-slow' })).toBe(1);
    expect(metricValue(m, 'basement_backup_warning', { ...db, kind: 'unlisted' })).toBe(1);
    expect(metricValue(m, 'basement_backup_warning', { ...db, kind: 'stale' })).toBe(0);
    expect(m.get('basement_backup_warning')!.metrics).toHaveLength(WARNING_KINDS.length);
    expect(metricValue(m, 'basement_backup_healthy', db)).toBe(1);

    expect(metricValue(m, 'basement_backup_target_up', local)).toBe(1);
    expect(metricValue(m, 'basement_backup_last_success_timestamp_seconds', local)).toBe(ts(o.targets[0]!.good[0]!.created_at));
    expect(metricValue(m, 'basement_backup_last_success_duration_seconds', local)).toBe(12.5);
    expect(metricValue(m, 'basement_backup_last_success_size_bytes', local)).toBe(1_000);
    expect(metricValue(m, 'basement_backup_last_success_size_anomaly', local)).toBe(1);
    expect(metricValue(m, 'basement_backup_good_backups', local)).toBe(3);
    expect(metricValue(m, 'basement_backup_damaged_backups', local)).toBe(1);
    expect(metricValue(m, 'basement_backup_stored_bytes', local)).toBe(20_000);
    expect(metricValue(m, 'basement_backup_disk_free_bytes', local)).toBe(5_000_000);
    expect(metricValue(m, 'basement_backup_disk_seconds_until_full', local)).toBe(5_000 * 86_400);

    // a target that cannot be listed: only target_up 0, never a stale 0 or a made-up count
    expect(metricValue(m, 'basement_backup_target_up', offsite)).toBe(0);
    for (const name of ['last_success_timestamp_seconds', 'good_backups', 'stored_bytes', 'disk_free_bytes'])
      expect(metricValue(m, `basement_backup_${name}`, offsite), name).toBeUndefined();
  });

  it('omits the projection while backups do not grow (no +Inf), a drill never run, an attempt never made', async () => {
    const o = observation({ last_attempt: null, last_drill: null, verify_schedule: null, drill_interval_ms: null, next_drill_at: null });
    o.targets[0]!.disk = { free_bytes: 1_000, growth_bytes_per_day: 0, days_to_full: null };
    const text = await renderMetrics(snapshot([o]), { processMetrics: false });
    expect(text).not.toMatch(/Inf|NaN/);
    const m = parseMetrics(text);
    for (const name of [
      'disk_seconds_until_full',
      'last_attempt_timestamp_seconds',
      'last_attempt_success',
      'last_drill_timestamp_seconds',
      'last_drill_success',
    ])
      expect(m.get(`basement_backup_${name}`)?.metrics ?? [], name).toEqual([]);
    expect(metricValue(m, 'basement_backup_next_run_timestamp_seconds', { database: 'shop', kind: 'drill' })).toBeUndefined();
    expect(metricValue(m, 'basement_backup_disk_free_bytes', { database: 'shop', target: 'local' })).toBe(1_000);
  });

  it('a stale target and a failed drill turn healthy to 0', async () => {
    const o = observation();
    o.targets[0]!.good = [point(40, 1_000)];
    o.last_drill = { ...o.last_drill!, ok: false, error: 'restore failed' };
    const m = parseMetrics(await renderMetrics(snapshot([o]), { processMetrics: false }));
    expect(metricValue(m, 'basement_backup_warning', { database: 'shop', kind: 'stale' })).toBe(1);
    expect(metricValue(m, 'basement_backup_warning', { database: 'shop', kind: 'drill-failed' })).toBe(1);
    expect(metricValue(m, 'basement_backup_last_drill_success', { database: 'shop' })).toBe(0);
    expect(metricValue(m, 'basement_backup_healthy', { database: 'shop' })).toBe(0);
  });

  it('keeps several databases apart by their label', async () => {
    const m = parseMetrics(await renderMetrics(snapshot([observation(), observation({ name: 'crm', failures_total: 7 })]), { processMetrics: false }));
    expect(metricValue(m, 'basement_backup_failures_total', { database: 'shop' })).toBe(3);
    expect(metricValue(m, 'basement_backup_failures_total', { database: 'crm' })).toBe(7);
  });

  it('renders a snapshot once, however often it is scraped (a snapshot is never changed)', async () => {
    const s = snapshot([observation()]);
    const first = await renderMetrics(s, { processMetrics: false });
    s.observations[0]!.failures_total = 99;
    expect(await renderMetrics(s, { processMetrics: false })).toBe(first);
    expect(metricValue(parseMetrics(await renderMetrics(s)), 'basement_backup_failures_total', { database: 'shop' })).toBe(3);
    expect(
      metricValue(parseMetrics(await renderMetrics(snapshot([observation({ failures_total: 4 })]))), 'basement_backup_failures_total', { database: 'shop' }),
    ).toBe(4);
  });

  it('before the first check: up 0 and the version; with process metrics under their usual names', async () => {
    const text = await renderMetrics(undefined);
    const m = parseMetrics(text);
    expect(metricValue(m, 'basement_backup_up')).toBe(0);
    expect(m.get('basement_backup_build_info')!.metrics).toHaveLength(1);
    expect(metricValue(m, 'basement_backup_last_check_timestamp_seconds')).toBeUndefined();
    expect(metricValue(m, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(m.has('nodejs_heap_size_used_bytes')).toBe(true);
    expect(METRICS_CONTENT_TYPE).toMatch(/^text\/plain; version=0\.0\.4/);
    // the textfile leaves them out: node_exporter exports its own process_* and a name both export fails its scrape
    expect(await renderMetrics(undefined, { processMetrics: false })).not.toMatch(/process_|nodejs_/);
  });
});

import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { evaluate, type CheckSettings, type Finding } from '../../src/monitor/findings';
import { composeSummary } from '../../src/monitor/summary';
import { maxAgeMs, type BackupPoint, type Observation, type TargetObservation } from '../../src/monitor/observe';
import type { Manifest } from '../../src/repository/manifest';
import { projectDisk, sizeAnomalies } from '../../src/repository/size-history';
import { longestGapMs } from '../../src/scheduler/cron-time';

const NOW = Date.parse('2026-03-10T12:00:00.000Z');
const H = 3600_000;
const DAY = 24 * H;
const GB = 1e9;

/** Manifests newest first, `hoursAgo` apart as given, with these sizes. */
function history(points: [hoursAgo: number, size: number][]): Manifest[] {
  return points.map(([h, size], i) => ({ id: `b${i}`, created_at: new Date(NOW - h * H).toISOString(), size_bytes: size }) as Manifest);
}

const settings: CheckSettings = { alertAfterFailures: 1, diskAlertDays: 14, maxRestoreMinutes: 30, minFreeBytes: 0 };

function point(hoursAgo: number, size = 100, anomaly: BackupPoint['anomaly'] = null): BackupPoint {
  const at = new Date(NOW - hoursAgo * H);
  return {
    id: `db_${hoursAgo}`,
    created_at: at.toISOString(),
    finished_at: new Date(at.getTime() + 1000).toISOString(),
    duration_ms: 1000,
    size_bytes: size,
    anomaly,
    drill: null,
  };
}

function target(over: Partial<TargetObservation> = {}): TargetObservation {
  return {
    name: 'local',
    location: '/b',
    error: null,
    good: [point(2)],
    good_count: 1,
    stored_bytes: 100,
    damaged: 0,
    disk: null,
    last_drill: null,
    encrypted: null,
    immutable: 'none',
    ...over,
  };
}

function observation(over: Partial<Observation> = {}): Observation {
  return {
    name: 'app',
    database: 'app_db',
    observed_at: new Date(NOW).toISOString(),
    schedule: '0 2 * * *',
    verify_schedule: null,
    max_age_ms: 26 * H,
    drill_interval_ms: null,
    target_drill_interval_ms: null,
    next_backup_at: '',
    next_drill_at: null,
    last_attempt: null,
    last_failure: null,
    failure_streak: 0,
    failures_total: 0,
    last_drill: null,
    running: false,
    targets: [target()],
    ...over,
  };
}

const keys = (fs: Finding[]) => fs.map((f) => f.key);

describe('evaluate', () => {
  it('finds nothing for a fresh backup, no failure, no drill schedule', () => {
    expect(evaluate(observation(), settings)).toEqual([]);
  });

  it('stale per target: older than the maximum age, or none at all; health turns red', () => {
    const o = observation({ targets: [target({ good: [point(27)] }), target({ name: 's3', good: [] })] });
    const found = evaluate(o, settings);
    expect(keys(found)).toEqual(['stale:app:local', 'stale:app:s3']);
    expect(found[0]).toMatchObject({ title: 'No recent backup of app on local', health: true });
    expect(found[0]!.message).toContain('is 27h 0m old; the limit is 26h 0m');
    expect(found[1]!.message).toBe('s3 holds no good backup of app.');
    expect(evaluate(observation({ targets: [target({ good: [point(25.9)] })] }), settings)).toEqual([]);
  });

  it('a target that cannot be listed is unlisted, not stale', () => {
    expect(keys(evaluate(observation({ targets: [target({ error: 'no answer in time', good: [] })] }), settings))).toEqual(['unlisted:app:local']);
  });

  it('failing from BACKUP_ALERT_AFTER_FAILURES in a row', () => {
    const o = observation({ failure_streak: 2, last_failure: { at: '2026-03-10T02:00:00.000Z', code: 'DB_AUTH', message: 'refused' } });
    expect(keys(evaluate(o, settings))).toEqual(['failing:app']);
    expect(keys(evaluate(o, { ...settings, alertAfterFailures: 3 }))).toEqual([]);
  });

  it('size: the newest backup on any target, when it is an anomaly', () => {
    const anomaly = { id: 'db_1', kind: 'small' as const, size_bytes: 10, median_bytes: 100, ratio: 0.1 };
    const found = evaluate(observation({ targets: [target({ good: [point(1, 10, anomaly), point(25)] })] }), settings);
    expect(keys(found)).toEqual(['size:app']);
    expect(found[0]!.message).toContain('0.10 times the median');
    // an older anomaly followed by a normal backup is over
    expect(evaluate(observation({ targets: [target({ good: [point(1), point(25, 10, anomaly)] })] }), settings)).toEqual([]);
  });

  it('disk: too little free for the next backup, else full within BACKUP_DISK_ALERT_DAYS (0: off)', () => {
    const disk = (free: number, days: number | null) =>
      target({ good: [point(1, 10 * GB)], disk: { free_bytes: free, growth_bytes_per_day: GB, days_to_full: days } });
    expect(keys(evaluate(observation({ targets: [disk(5 * GB, 5)] }), settings))).toEqual(['disk-space:app:local']);
    expect(keys(evaluate(observation({ targets: [disk(50 * GB, 13)] }), settings))).toEqual(['disk:app:local']);
    expect(evaluate(observation({ targets: [disk(50 * GB, 15)] }), settings)).toEqual([]);
    expect(evaluate(observation({ targets: [disk(50 * GB, 13)] }), { ...settings, diskAlertDays: 0 })).toEqual([]);
  });

  it('drills: failed, overdue (twice the interval), slower than BACKUP_MAX_RESTORE_MINUTES', () => {
    const drill = (hoursAgo: number, ok: boolean, restoreMin = 1) =>
      ({
        id: 'db_1',
        verified_at: new Date(NOW - hoursAgo * H).toISOString(),
        ok,
        restore_ms: restoreMin * 60_000,
        error: ok ? null : 'rows differ',
      }) as Observation['last_drill'];
    const withDrill = (d: Observation['last_drill']) => observation({ drill_interval_ms: DAY, last_drill: d });
    expect(keys(evaluate(withDrill(drill(2, false)), settings))).toEqual(['drill-failed:app']);
    expect(keys(evaluate(withDrill(drill(49, true)), settings))).toEqual(['drill-overdue:app']);
    expect(evaluate(withDrill(drill(47, true)), settings)).toEqual([]);
    expect(keys(evaluate(withDrill(drill(2, true, 31)), settings))).toEqual(['drill-slow:app']);
    expect(evaluate(withDrill(drill(2, true, 31)), { ...settings, maxRestoreMinutes: undefined })).toEqual([]);
    // no drill yet: overdue once the oldest backup is older than twice the interval
    expect(keys(evaluate(observation({ drill_interval_ms: DAY, targets: [target({ good: [point(2), point(49)] })] }), settings))).toEqual([
      'drill-overdue:app',
    ]);
    expect(evaluate(observation({ drill_interval_ms: DAY }), settings)).toEqual([]);
  });

  it('a target not drilled within twice its own interval (the slots rotating among the targets) is overdue, and turns /healthz red', () => {
    const drill = (hoursAgo: number) =>
      ({ id: 'db_1', verified_at: new Date(NOW - hoursAgo * H).toISOString(), ok: true, restore_ms: 1000, error: null }) as Observation['last_drill'];
    // drills daily, rotating between two targets: each every 2 days, overdue after 4
    const two = (s3: Partial<TargetObservation>) =>
      observation({
        drill_interval_ms: DAY,
        target_drill_interval_ms: 2 * DAY,
        last_drill: drill(1),
        targets: [target({ last_drill: drill(1) }), target({ name: 's3', ...s3 })],
      });
    const found = evaluate(two({ last_drill: drill(97) }), settings);
    expect(keys(found)).toEqual(['target-drill-overdue:app:s3']);
    expect(found[0]).toMatchObject({ target: 's3', health: true, title: 'The copies of app on s3 are not drilled' });
    expect(found[0]!.message).toMatch(/, 4d 1h ago \(expected every 2d 0h\)\.$/);
    expect(found[0]!.fix).toContain('basement-backup verify --target s3');
    expect(evaluate(two({ last_drill: drill(95) }), settings)).toEqual([]);
    // never drilled: counted from its oldest good backup; none, or not listed: nothing to drill
    expect(keys(evaluate(two({ good: [point(2), point(97)] }), settings))).toEqual(['target-drill-overdue:app:s3']);
    expect(evaluate(two({ good: [point(2), point(95)] }), settings)).toEqual([]);
    expect(evaluate(two({ good: [] }), settings).filter((f) => f.kind === 'target-drill-overdue')).toEqual([]);
    expect(evaluate(two({ good: [], error: 'no answer in time', last_drill: drill(200) }), settings).map((f) => f.kind)).toEqual(['unlisted']);
    // one target: drill-overdue says it already
    expect(
      evaluate(
        observation({ drill_interval_ms: DAY, target_drill_interval_ms: DAY, last_drill: drill(1), targets: [target({ last_drill: drill(97) })] }),
        settings,
      ),
    ).toEqual([]);
  });
});

describe('sizeAnomalies', () => {
  it('compares each backup with the median of the up to 7 good ones before it, from 3 on', () => {
    const found = sizeAnomalies(
      history([
        [0, 40],
        [1, 100],
        [2, 300],
        [3, 100],
        [4, 90],
        [5, 110],
      ]),
      0.5,
    );
    expect([...found.keys()]).toEqual(['b0', 'b2']);
    expect(found.get('b0')).toMatchObject({ kind: 'small', median_bytes: 100, ratio: 0.4 });
    expect(found.get('b2')).toMatchObject({ kind: 'large', median_bytes: 100, ratio: 3 });
    // two earlier ones are too few to judge
    expect(
      sizeAnomalies(
        history([
          [0, 1],
          [1, 100],
          [2, 100],
        ]),
        0.5,
      ).size,
    ).toBe(0);
    // within the ratio both ways
    expect(
      sizeAnomalies(
        history([
          [0, 51],
          [1, 100],
          [2, 100],
          [3, 100],
        ]),
        0.5,
      ).size,
    ).toBe(0);
    expect(
      sizeAnomalies(
        history([
          [0, 199],
          [1, 100],
          [2, 100],
          [3, 100],
        ]),
        0.5,
      ).size,
    ).toBe(0);
  });
});

describe('projectDisk', () => {
  it('fits the growth of the newest backups and multiplies it by how many are kept', () => {
    // 1 GB more a day, 3 kept: the kept backups grow by 3 GB a day
    const p = projectDisk(
      history([
        [0, 12 * GB],
        [24, 11 * GB],
        [48, 10 * GB],
      ]),
      30 * GB,
    );
    expect(p.growth_bytes_per_day).toBeCloseTo(3 * GB, -3);
    expect(p.days_to_full).toBeCloseTo(10, 5);
  });

  it('no projection when the backups do not grow, are too few, or all within an hour', () => {
    const none = { growth_bytes_per_day: 0, days_to_full: null };
    expect(
      projectDisk(
        history([
          [0, 10],
          [24, 11],
          [48, 12],
        ]),
        GB,
      ),
    ).toEqual(none);
    expect(
      projectDisk(
        history([
          [0, 12],
          [24, 11],
        ]),
        GB,
      ),
    ).toEqual(none);
    expect(
      projectDisk(
        history([
          [0, 12],
          [0.3, 11],
          [0.6, 10],
        ]),
        GB,
      ),
    ).toEqual(none);
  });
});

describe("projectDisk with PostgreSQL's data directory on the same disk", () => {
  // backups that do not grow, a database that grows 2 GB a day
  const grown = history([
    [0, 10 * GB],
    [24, 10 * GB],
    [48, 10 * GB],
  ]).map((m, i) => ({ ...m, database_size_bytes: (40 - 2 * i) * GB }));

  it("adds the database's own growth, as the backups recorded its size, and says how much of it", () => {
    const p = projectDisk(grown, 20 * GB, true);
    expect(p.growth_bytes_per_day).toBeCloseTo(2 * GB, -3);
    expect(p.database_growth_bytes_per_day).toBeCloseTo(2 * GB, -3);
    expect(p.days_to_full).toBeCloseTo(10, 5);
    const f = evaluate(observation({ targets: [target({ good: [point(1, 10 * GB)], disk: { free_bytes: 20 * GB, ...p } })] }), settings);
    expect(f.find((x) => x.key.startsWith('disk'))?.message).toMatch(
      /At the growth of the last backups \([\d.]+ GB a day, [\d.]+ GB of it PostgreSQL's data directory on the same disk\)/,
    );
  });

  it('leaves it out when the data directory is elsewhere, and with backups that recorded no size', () => {
    expect(projectDisk(grown, 20 * GB, false)).toEqual({ growth_bytes_per_day: 0, days_to_full: null });
    const old = grown.map(({ database_size_bytes: _, ...m }) => m as Manifest);
    expect(projectDisk(old, 20 * GB, true)).toEqual({ growth_bytes_per_day: 0, days_to_full: null, database_growth_bytes_per_day: 0 });
  });
});

describe('longestGapMs and maxAgeMs', () => {
  const from = new Date('2026-03-09T12:00:00.000Z'); // a Monday
  it('the longest wait between two runs of a schedule', () => {
    expect(longestGapMs('0 2 * * *', 'UTC', from)).toBe(DAY);
    expect(longestGapMs('0 2 * * 1-5', 'UTC', from)).toBe(3 * DAY);
    expect(longestGapMs('*/15 * * * *', 'UTC', from)).toBe(15 * 60_000);
  });

  it("BACKUP_MAX_AGE_HOURS, else the schedule's longest gap plus 2 h (26 h for a daily backup)", () => {
    const app = (extra: Record<string, string>) => {
      const env = { DB_NAME: 'app', DB_USER: 'u', BACKUP_DIR: os.tmpdir(), BACKUP_TIMEZONE: 'UTC', ...extra };
      const { config } = loadConfig([], env, os.tmpdir());
      return createApp(config, config.databases[0]!);
    };
    expect(maxAgeMs(app({ BACKUP_SCHEDULE: '0 2 * * *' }), from)).toBe(26 * H);
    expect(maxAgeMs(app({ BACKUP_SCHEDULE: '0 2 * * 1-5' }), from)).toBe(74 * H);
    expect(maxAgeMs(app({ BACKUP_SCHEDULE: '0 2 * * *', BACKUP_MAX_AGE_HOURS: '6.5' }), from)).toBe(6.5 * H);
  });
});

describe('composeSummary', () => {
  const since = new Date(NOW - 7 * DAY);
  const drilled = (hoursAgo: number, size: number, restoreMin: number): BackupPoint => ({
    ...point(hoursAgo, size),
    drill: { verified_at: new Date(NOW - (hoursAgo - 1) * H).toISOString(), ok: true, restore_ms: restoreMin * 60_000 },
  });
  const snapshot = (o: Observation, findings: Finding[] = []) => ({
    taken_at: new Date(NOW).toISOString(),
    observations: [o],
    findings,
    daemon: { started_at: '', version: '' },
  });

  it('per database: backups of the period, the size trend, drills and the slowest restore, free space, open warnings', () => {
    const good = [point(2, 1100), drilled(26, 1050, 3), drilled(50, 1000, 7), point(9 * 24, 1000)];
    const disk = { free_bytes: 50 * GB, growth_bytes_per_day: GB, days_to_full: 50 };
    const o = observation({ verify_schedule: '0 4 * * 0', targets: [target({ good, good_count: 4, stored_bytes: 4150, disk })] });
    const { subject, text } = composeSummary(snapshot(o), since, 'srv1');
    expect(subject).toBe('[basement-backup] SUMMARY: 3 backup(s) since 2026-03-03, all well on srv1');
    expect(text).toContain('Backups taken: 3 (schedule 0 2 * * *');
    expect(text).toContain('Size: newest 1.1 kB, +10.0 % since 2026-03-01 (1 kB).');
    expect(text).toContain('Restore drills: 2 passed.');
    expect(text).toContain('Slowest restore: 7m.');
    expect(text).toContain('Target local: 4 good backup(s), 4.2 kB stored; 50 GB free, full in about 50 days at the present growth (/b).');
    expect(text).toContain('No open warnings.');
  });

  it('counts a backup by when it was complete: one running across the previous summary is in this one, not in neither', () => {
    const across = { ...point(7 * 24 + 0.5, 1000), finished_at: new Date(since.getTime() + 60_000).toISOString() };
    const before = { ...point(7 * 24 + 1, 1000), finished_at: new Date(since.getTime() - 60_000).toISOString() };
    const o = observation({ targets: [target({ good: [across, before], good_count: 2 })] });
    expect(composeSummary(snapshot(o), since, 'srv1').text).toContain('Backups taken: 1 ');
  });

  it('says what is wrong: no backup in the period, a failure, the open findings', () => {
    const o = observation({
      targets: [target({ good: [point(9 * 24)] })],
      failure_streak: 3,
      last_failure: { at: new Date(NOW - H).toISOString(), code: 'DB_AUTH', message: 'refused' },
    });
    const stale = evaluate(o, settings);
    const { subject, text } = composeSummary(snapshot(o, stale), since, 'srv1');
    expect(subject).toBe('[basement-backup] SUMMARY: 0 backup(s) since 2026-03-03, 2 warning(s) open on srv1');
    expect(text).toContain('Backups taken: 0');
    expect(text).toContain('Last failure: 2026-03-10T11:00:00.000Z DB_AUTH, 3 in a row, not yet recovered.');
    expect(text).toContain('OPEN: No recent backup of app on local.');
    expect(text).toContain('Restore drills: off (VERIFY_SCHEDULE).');
    const noneYet = composeSummary(snapshot(observation({ verify_schedule: '0 4 * * 0' })), since, 'srv1').text;
    expect(noneYet).toContain('Restore drills: none has run yet (VERIFY_SCHEDULE 0 4 * * 0).');
  });
});

import { evaluate } from '../../src/monitor/findings';
import type { BackupPoint, Observation } from '../../src/monitor/observe';
import type { PitrObservation } from '../../src/monitor/observe-pitr';
import type { ArchivingStatus } from '../../src/pitr/archiving';
import type { PitrWindowStatus } from '../../src/pitr/window-status';
import type { Snapshot } from '../../src/monitor/snapshot';
import { backupId } from '../../src/repository/manifest';

/** Observations and snapshots to render metrics from (test/unit/metrics.test.ts, alert-rules.test.ts). */
export const NOW = new Date('2026-12-06T12:00:00Z');
export const hoursAgo = (h: number) => new Date(NOW.getTime() - h * 3600_000);

export function point(h: number, size: number, anomaly = false): BackupPoint {
  const at = hoursAgo(h);
  const id = backupId('shop', at);
  return {
    id,
    created_at: at.toISOString(),
    finished_at: new Date(at.getTime() + 12_500).toISOString(),
    duration_ms: 12_500,
    size_bytes: size,
    anomaly: anomaly ? { id, kind: 'small', size_bytes: size, median_bytes: size * 10, ratio: 0.1 } : null,
    drill: null,
  };
}

export function observation(over: Partial<Observation> = {}): Observation {
  return {
    name: 'shop',
    database: 'shop_db',
    observed_at: NOW.toISOString(),
    schedule: '0 2 * * *',
    verify_schedule: '0 4 * * 0',
    max_age_ms: 26 * 3600_000,
    drill_interval_ms: 7 * 86_400_000,
    target_drill_interval_ms: 2 * 7 * 86_400_000,
    next_backup_at: '2026-12-07T02:00:00.000Z',
    next_drill_at: '2026-12-13T04:00:00.000Z',
    last_attempt: { started_at: '2026-12-06T02:00:00.000Z', finished_at: '2026-12-06T02:00:12.500Z', ok: true, code: null },
    last_failure: { at: '2026-12-01T02:00:03.000Z', code: 'CONNECTION', message: 'refused' },
    failure_streak: 0,
    failures_total: 3,
    last_drill: {
      id: backupId('shop', hoursAgo(30)),
      verified_at: '2026-12-05T04:03:00.000Z',
      ok: true,
      restore_ms: 95_000,
      error: null,
      error_code: null,
      content: null,
    },
    running: false,
    targets: [
      {
        name: 'local',
        location: '/var/backups/pg',
        error: null,
        good: [point(10, 1_000, true), point(34, 10_000), point(58, 9_000)],
        good_count: 3,
        stored_bytes: 20_000,
        damaged: 1,
        disk: { free_bytes: 5_000_000, growth_bytes_per_day: 1_000, days_to_full: 5_000 },
        last_drill: {
          id: backupId('shop', hoursAgo(30)),
          verified_at: '2026-12-05T04:03:00.000Z',
          ok: true,
          restore_ms: 95_000,
          error: null,
          error_code: null,
          content: null,
        },
        encrypted: null,
        immutable: 'none',
      },
      {
        name: 'offsite',
        location: 's3://b/p',
        error: 'no answer in time',
        good: [],
        good_count: null,
        stored_bytes: null,
        damaged: null,
        disk: null,
        last_drill: null,
        encrypted: null,
        immutable: 'none',
      },
    ],
    pitr: pitrObservation(),
    ...over,
  };
}

/** A WAL receiver's archiving that keeps up: nothing waits, the slot keeps 1 MB. */
export function archiving(over: Partial<ArchivingStatus> = {}): ArchivingStatus {
  return {
    slot: 'basement_backup',
    spool: '/var/lib/basement-backup/wal-spool/shop',
    receiver: { running: true, pid: 4242, streaming: true, failures_in_a_row: 0, stream_error: null, last_push_error: null },
    last_archived: { wal: '00000001000000000000002A', at: new Date(NOW.getTime() - 40_000).toISOString() },
    queue: { files: 0, bytes: 0, oldest_seconds: 0 },
    server: {
      current_wal: '00000001000000000000002B',
      current_lsn: '0/2B000100',
      segment_size: 16 * 1024 * 1024,
      slot: { active: true, retained_bytes: 1024 * 1024, wal_status: 'reserved' },
    },
    server_error: null,
    behind_segments: 0,
    lag_seconds: 0,
    ...over,
  };
}

/** A target's recovery window: a base backup 2 days old, WAL up to 40 s ago, no gap. */
export function pitrWindow(target: string, over: Partial<PitrWindowStatus> = {}): PitrWindowStatus {
  return {
    target,
    base_backups: 1,
    wal_files: 40,
    earliest: hoursAgo(48).toISOString(),
    latest: new Date(NOW.getTime() - 40_000).toISOString(),
    latest_wal: '00000001000000000000002A',
    gaps: [],
    newest_wal: '00000001000000000000002A',
    newest_wal_at: new Date(NOW.getTime() - 40_000).toISOString(),
    newest_base: '20261204T120000Z-base',
    newest_base_at: hoursAgo(48).toISOString(),
    error: null,
    ...over,
  };
}

/** The point-in-time side of `shop` (WAL_RECEIVE=on): healthy, weekly base backups, WAL_MAX_LAG_MINUTES 15, WAL_QUEUE_MAX_MB 1024. */
export function pitrObservation(over: Partial<PitrObservation> = {}): PitrObservation {
  return {
    archiving: archiving(),
    error: null,
    windows: [pitrWindow('local')],
    max_lag_ms: 15 * 60_000,
    queue_max_bytes: 1024 * 1024 * 1024,
    base_max_age_ms: 7 * 86_400_000 + 6 * 3600_000,
    ...over,
  };
}

export function snapshot(observations: Observation[]): Snapshot {
  const checks = { alertAfterFailures: 1, diskAlertDays: 14, maxRestoreMinutes: 1, minFreeBytes: 0 };
  return {
    taken_at: NOW.toISOString(),
    observations,
    findings: observations.flatMap((o) => evaluate(o, checks, NOW)),
    daemon: { started_at: '2026-12-06T11:00:00.000Z', version: '1.2.3' },
  };
}

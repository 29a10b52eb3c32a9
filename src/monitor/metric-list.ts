import type { FindingKind } from './findings';

/**
 * The Prometheus metrics the daemon exports (issue 21): what /metrics and BACKUP_METRICS_FILE
 * hold, the docs' table and the test that checks the Grafana dashboard and the alert rules. Names
 * and units by Prometheus's conventions: times are Unix timestamps (`_timestamp_seconds`, never
 * "seconds since"), `_seconds`, `_bytes`, `_total`. Labels are only `database` (the
 * configuration entry's name), `target` (a storage target's name) and `kind` from a small fixed
 * set: never a backup id, a file name or a time, which would make a new series every run.
 */
export interface MetricDef {
  name: string;
  type: 'gauge' | 'counter';
  labels: readonly MetricLabel[];
  help: string;
}

export type MetricLabel = 'database' | 'target' | 'kind' | 'version';

/** Every finding kind, as `basement_backup_warning`'s `kind` label (all present, 0 or 1). */
export const WARNING_KINDS = Object.keys({
  stale: 1,
  unlisted: 1,
  failing: 1,
  size: 1,
  disk: 1,
  'disk-space': 1,
  'drill-overdue': 1,
  'target-drill-overdue': 1,
  'drill-failed': 1,
  'drill-slow': 1,
  'wal-lag': 1,
  'wal-queue': 1,
  'wal-slot': 1,
  'wal-gap': 1,
  'base-stale': 1,
} satisfies Record<FindingKind, 1>) as FindingKind[];

/** `basement_backup_next_run_timestamp_seconds`'s `kind` label. */
export const RUN_KINDS = ['backup', 'drill'] as const;

const DB = ['database'] as const;
const TARGET = ['database', 'target'] as const;

const gauge = (name: string, labels: readonly MetricLabel[], help: string): MetricDef => ({ name: `basement_backup_${name}`, type: 'gauge', labels, help });

export const METRICS: readonly MetricDef[] = [
  gauge('build_info', ['version'], 'Always 1; the label `version` is the daemon version.'),
  gauge('start_time_seconds', [], 'When the daemon started (Unix time).'),
  gauge('up', [], '1 once the daemon has checked every database (0 until its first check ended).'),
  gauge('last_check_timestamp_seconds', [], 'When the daemon last checked every database and target (every BACKUP_CHECK_MINUTES and after every run).'),

  gauge('last_attempt_timestamp_seconds', DB, 'When the last backup attempt ended (a run refused by the lock is no attempt). Absent before the first.'),
  gauge('last_attempt_success', DB, '1 when the last backup attempt succeeded, 0 when it failed.'),
  gauge('last_attempt_duration_seconds', DB, 'How long the last backup attempt took.'),
  { name: 'basement_backup_failures_total', type: 'counter', labels: DB, help: 'Failed backups ever (kept in the state: a restart does not reset it).' },
  gauge('failure_streak', DB, 'Failed backups since the last good one.'),
  gauge('running', DB, '1 while a backup of the database runs.'),
  gauge('max_age_seconds', DB, 'How old the newest good backup on a target may be before it is stale (BACKUP_MAX_AGE_HOURS, or from the schedule).'),
  gauge(
    'next_run_timestamp_seconds',
    ['database', 'kind'],
    'When the next scheduled run starts (Unix time); `kind` is `backup` or `drill` (absent with VERIFY_SCHEDULE=off).',
  ),
  gauge('last_drill_timestamp_seconds', DB, 'When the newest restore drill ran (Unix time). Absent before the first.'),
  gauge('last_drill_success', DB, '1 when the newest restore drill passed, 0 when it failed.'),
  gauge('last_drill_restore_seconds', DB, 'How long the newest restore drill took to restore (the measured recovery time).'),
  gauge('warning', ['database', 'kind'], '1 while an early warning of that kind is open (on any target), else 0: one series per kind.'),
  gauge('healthy', DB, '1 when /healthz counts the database healthy: a recent good backup on every target, the last drill passed and is not overdue.'),

  gauge('target_up', TARGET, '1 when the target could be listed at the last check; when 0, the series below are absent for it.'),
  gauge('last_success_timestamp_seconds', TARGET, 'When the newest good backup on the target was taken (Unix time). Absent when it holds none.'),
  gauge('last_success_duration_seconds', TARGET, 'How long the newest good backup took.'),
  gauge('last_success_size_bytes', TARGET, 'Size of the newest good backup as stored.'),
  gauge('last_success_size_anomaly', TARGET, "1 when the newest good backup's size is far from the median of the ones before it (BACKUP_SIZE_ALERT_RATIO)."),
  gauge('good_backups', TARGET, 'Good backups on the target.'),
  gauge('damaged_backups', TARGET, 'Backups on the target that cannot be trusted (never counted as good).'),
  gauge('stored_bytes', TARGET, 'What the good backups occupy on the target.'),
  gauge('target_drill_timestamp_seconds', TARGET, 'When the newest restore drill of a backup read from the target ran (Unix time). Absent before the first.'),
  gauge('target_drill_success', TARGET, "1 when the target's newest restore drill passed, 0 when it failed."),
  gauge('target_drill_restore_seconds', TARGET, "How long the target's newest restore drill took to restore."),
  gauge('disk_free_bytes', TARGET, "Free space of a local target's filesystem (absent for S3)."),
  gauge('disk_seconds_until_full', TARGET, 'When the free space is used up at the growth of the last backups, from now. Absent while they do not grow.'),

  // point-in-time recovery (WAL_RECEIVE=on): on the entry whose WAL a receiver archives
  gauge('wal_receiver_up', DB, '1 while a WAL receiver holds the spool and pg_receivewal streams.'),
  gauge('wal_receiver_failure_streak', DB, 'pg_receivewal runs that failed in a row (0 while it streams, or when no receiver runs).'),
  gauge('wal_last_archived_timestamp_seconds', DB, 'When the newest WAL file was stored on every required target (Unix time). Absent before the first.'),
  gauge('wal_queue_files', DB, "Completed WAL files waiting in the receiver's spool (not yet on every required target)."),
  gauge('wal_queue_bytes', DB, "What those files occupy in the receiver's spool."),
  gauge('wal_queue_oldest_seconds', DB, 'How long the oldest file in the spool has waited (0 when none).'),
  gauge('wal_slot_retained_bytes', DB, "WAL the server keeps in pg_wal for the receiver's replication slot. Absent without the slot."),
  gauge('wal_lag_seconds', DB, 'How long the oldest WAL the server completed has waited unarchived (0: nothing waits; an idle server is not behind).'),
  gauge(
    'recovery_window_start_timestamp_seconds',
    TARGET,
    'The earliest point recovery from the target can reach (Unix time). Absent while nothing is recoverable.',
  ),
  gauge(
    'recovery_window_end_timestamp_seconds',
    TARGET,
    'The newest point recovery from the target can reach (Unix time). Absent while nothing is recoverable.',
  ),
  gauge('recovery_window_gaps', TARGET, "Runs of WAL segments missing in the target's archive after its oldest base backup."),
  gauge('base_backup_last_good_timestamp_seconds', TARGET, 'When the newest good base backup on the target ended (Unix time). Absent when it holds none.'),
];

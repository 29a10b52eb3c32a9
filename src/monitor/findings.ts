import { formatAge, formatBytes } from '../util/format';
import type { Observation } from './observe';
import type { DiskProjection } from '../repository/size-history';
import { pitrFindings, type PitrFindingKind } from './pitr-findings';

/** The early warnings (issue 21), each with a stable title per database (and target). */
export type FindingKind =
  | 'stale'
  | 'unlisted'
  | 'failing'
  | 'size'
  | 'disk'
  | 'disk-space'
  | 'drill-overdue'
  | 'target-drill-overdue'
  | 'drill-failed'
  | 'drill-slow'
  | PitrFindingKind;

/** Something wrong now. It is alerted once when it appears and once when it clears (see src/daemon/). */
export interface Finding {
  /** Stable while the condition lasts: `kind:name[:target]`. */
  key: string;
  kind: FindingKind;
  /** The configuration entry's name. */
  name: string;
  target: string | null;
  /** Stable: the alert's subject, the page's line. */
  title: string;
  /** What is wrong now, with figures. */
  message: string;
  /** What to do. */
  fix: string;
  /** It turns /healthz to 503: no good backup younger than the maximum age on a target, a failed or overdue drill. */
  health: boolean;
}

/** What the checks are given besides the observation. */
export interface CheckSettings {
  alertAfterFailures: number;
  diskAlertDays: number;
  maxRestoreMinutes: number | undefined;
  /** BACKUP_MIN_FREE_MB in bytes: a backup is refused when it would leave less. */
  minFreeBytes: number;
}

/** Every finding about one database now. Pure: the same observation gives the same findings. */
export function evaluate(o: Observation, s: CheckSettings, now = new Date(Date.parse(o.observed_at))): Finding[] {
  const found: Finding[] = [];
  const add: Add = (kind, target, title, message, fix, health) =>
    found.push({ key: [kind, o.name, ...(target === null ? [] : [target])].join(':'), kind, name: o.name, target, title, message, fix, health });
  targetFindings(o, s, now.getTime(), add);
  backupFindings(o, s, add);
  if (o.drill_interval_ms !== null) drillFindings(o, o.drill_interval_ms, s, now.getTime(), add);
  if (o.target_drill_interval_ms !== null && o.targets.length > 1) targetDrillFindings(o, o.target_drill_interval_ms, now.getTime(), add);
  if (o.pitr) pitrFindings(o.name, o.pitr, now.getTime(), add);
  return found;
}

type Add = (kind: FindingKind, target: string | null, title: string, message: string, fix: string, health: boolean) => void;

/** Per target: cannot be listed, stale, the disk. */
function targetFindings(o: Observation, s: CheckSettings, at: number, add: Add): void {
  for (const t of o.targets) {
    if (t.error !== null) {
      add(
        'unlisted',
        t.name,
        `Storage target ${t.name} of ${o.name} cannot be listed`,
        t.error,
        'Check that the target is reachable and its credentials still work: `basement-backup status`.',
        false,
      );
      continue;
    }
    const newest = t.good[0];
    const age = newest ? at - Date.parse(newest.created_at) : undefined;
    if (age === undefined || age > o.max_age_ms) {
      add(
        'stale',
        t.name,
        `No recent backup of ${o.name} on ${t.name}`,
        newest
          ? `The newest good backup on ${t.name} (${newest.id}) is ${formatAge(age!)} old; the limit is ${formatAge(o.max_age_ms)}.`
          : `${t.name} holds no good backup of ${o.name}.`,
        'Check that the daemon runs (`pm2 status`), that backups are not refused (`pm2 logs basement-backup`, `basement-backup status`), then run `basement-backup backup` by hand.',
        true,
      );
    }
    const disk = t.disk;
    if (disk && newest && disk.free_bytes < newest.size_bytes + s.minFreeBytes) {
      add(
        'disk-space',
        t.name,
        `The next backup of ${o.name} will not fit on ${t.name}`,
        `${formatBytes(disk.free_bytes)} free at ${t.location}; a backup needs about ${formatBytes(newest.size_bytes)} plus BACKUP_MIN_FREE_MB.`,
        `Free space at ${t.location}, or keep fewer backups (BACKUP_RETENTION_DAYS), or move BACKUP_DIR to a larger disk.`,
        false,
      );
    } else if (disk && s.diskAlertDays > 0 && disk.days_to_full !== null && disk.days_to_full <= s.diskAlertDays) {
      add(
        'disk',
        t.name,
        `The disk of ${t.name} fills up within ${s.diskAlertDays} days`,
        `At the growth of the last backups (${formatBytes(disk.growth_bytes_per_day)} a day${growthOfDatabase(disk)}), the ${formatBytes(disk.free_bytes)} free at ${t.location} last about ${Math.floor(disk.days_to_full)} days.`,
        'Free space or add disk before then, or keep fewer backups (BACKUP_RETENTION_DAYS); a sudden growth may be a table that grows without bound.',
        false,
      );
    }
  }
}

/** Says that the database's own growth is counted, when its data directory shares the disk. */
function growthOfDatabase(disk: DiskProjection): string {
  const d = disk.database_growth_bytes_per_day;
  return d === undefined ? '' : `, ${formatBytes(d)} of it PostgreSQL's data directory on the same disk`;
}

/** Failing in a row, and the newest backup's size. */
function backupFindings(o: Observation, s: CheckSettings, add: Add): void {
  if (o.failure_streak >= s.alertAfterFailures && o.last_failure) {
    add(
      'failing',
      null,
      `Backups of ${o.name} are failing`,
      `${o.failure_streak} failed in a row; the last at ${o.last_failure.at}: ${o.last_failure.message}`,
      'Read the failure alert, or run `basement-backup backup` by hand to see the error.',
      false,
    );
  }

  const newestAnywhere = o.targets.flatMap((t) => t.good.slice(0, 1)).sort((a, b) => b.created_at.localeCompare(a.created_at))[0];
  if (newestAnywhere?.anomaly) {
    const a = newestAnywhere.anomaly;
    add(
      'size',
      null,
      `Backup size of ${o.name} is unusual`,
      `Backup ${a.id} is ${formatBytes(a.size_bytes)}, ${a.ratio.toFixed(2)} times the median (${formatBytes(a.median_bytes)}) of the backups before it. It is kept.`,
      a.kind === 'small'
        ? 'Check that no table was emptied or dropped by mistake (`basement-backup list`, the tables in its manifest); the backups before it are kept by retention as usual.'
        : 'Check what grew (a log or audit table?); if expected, nothing to do: the next backups set the new usual size.',
      false,
    );
  }
}

/** Drills: failed, overdue (none in twice the schedule's longest gap), slower than the objective. */
function drillFindings(o: Observation, interval: number, s: CheckSettings, at: number, add: Add): void {
  const d = o.last_drill;
  const limit = 2 * interval;
  const oldest = o.targets.flatMap((t) => t.good).reduce((m, b) => Math.min(m, Date.parse(b.created_at)), Infinity);
  if (d && !d.ok) {
    add(
      'drill-failed',
      null,
      `The restore drill of ${o.name} failed`,
      `Drill of ${d.id} at ${d.verified_at}: ${d.error ?? 'failed'}`,
      'Run `basement-backup verify` by hand to see the failure, and read docs/restoring.md.',
      true,
    );
  } else if (d ? at - Date.parse(d.verified_at) > limit : at - oldest > limit) {
    add(
      'drill-overdue',
      null,
      `Restore drills of ${o.name} are overdue`,
      d
        ? `The last drill was at ${d.verified_at}, ${formatAge(at - Date.parse(d.verified_at))} ago (expected every ${formatAge(interval)}).`
        : 'No restore drill has run yet.',
      'Check that the daemon runs and VERIFY_SCHEDULE is right; run `basement-backup verify` by hand.',
      true,
    );
  }
  if (d && d.ok && d.restore_ms !== null && s.maxRestoreMinutes !== undefined && d.restore_ms > s.maxRestoreMinutes * 60_000) {
    add(
      'drill-slow',
      null,
      `Restoring ${o.name} takes longer than BACKUP_MAX_RESTORE_MINUTES`,
      `The drill of ${d.id} restored in ${formatAge(d.restore_ms)}; the objective is ${s.maxRestoreMinutes} min.`,
      'Restore with more jobs (BACKUP_RESTORE_JOBS), a faster disk, or raise the objective; docs/restoring.md.',
      false,
    );
  }
}

/**
 * With several targets: a target whose copies have not been drilled within twice its own drill
 * interval (the slots rotate among the targets: see Observation.target_drill_interval_ms). A
 * target with no drill yet counts from its oldest good backup; one that holds none, or cannot be
 * listed, has nothing to drill (the stale and unlisted findings tell of it).
 */
function targetDrillFindings(o: Observation, interval: number, at: number, add: Add): void {
  const limit = 2 * interval;
  for (const t of o.targets) {
    if (t.error !== null || t.good.length === 0) continue;
    const d = t.last_drill;
    const since = d ? Date.parse(d.verified_at) : t.good.reduce((m, b) => Math.min(m, Date.parse(b.created_at)), Infinity);
    if (at - since <= limit) continue;
    add(
      'target-drill-overdue',
      t.name,
      `The copies of ${o.name} on ${t.name} are not drilled`,
      d
        ? `The last restore drill of a backup read from ${t.name} was at ${d.verified_at}, ${formatAge(at - since)} ago (expected every ${formatAge(interval)}).`
        : `No backup read from ${t.name} has been drilled yet; the oldest there is ${formatAge(at - since)} old (expected every ${formatAge(interval)}).`,
      `Check that the daemon runs, that VERIFY_SCHEDULE is not off and that ${t.name} can be read (\`basement-backup status\`); run \`basement-backup verify --target ${t.name}\` by hand.`,
      true,
    );
  }
}

import type { App } from '../app';
import { listEveryTarget, type TargetListing } from '../backup/every-target';
import { backupLockPurpose } from '../backup/run-backup';
import { immutableOf, lastDrill, type Status, type TargetStatus } from '../backup/status';
import { asBackupError } from '../errors';
import { dataDirSharesDisk } from './data-dir';
import type { PitrObservation } from './observe-pitr';
import { lockHolder } from '../lock/file-lock';
import type { Manifest } from '../repository/manifest';
import { isGood } from '../repository/repository';
import { projectDisk, sizeAnomalies, type DiskProjection, type SizeAnomaly } from '../repository/size-history';
import { longestGapMs, nextRun } from '../scheduler/cron-time';
import type { DbState } from '../state/store';

/** How many of the newest good backups per target an observation carries (the page's chart, the summary). */
export const HISTORY = 30;
/** How much longer than the longest wait between two scheduled backups the newest may be before it is stale. */
const STALE_SLACK_MS = 2 * 3600_000;

/** One good backup as the monitor sees it. */
export interface BackupPoint {
  id: string;
  created_at: string;
  /** When it was complete (and listed from then on): what the summary counts a period's backups by. */
  finished_at: string;
  duration_ms: number;
  size_bytes: number;
  /** Set when its size is far from the median of the good ones before it (BACKUP_SIZE_ALERT_RATIO). */
  anomaly: SizeAnomaly | null;
  /** Its last restore drill (a checksum-only check is not one); a backup whose drill failed is damaged, so not here. */
  drill: { verified_at: string; ok: boolean; restore_ms: number | null } | null;
}

export interface TargetObservation {
  name: string;
  /** Where it is (a directory, s3://bucket/prefix): never a secret. */
  location: string;
  /** Why it cannot be listed now; null when it could. Then the counts below are null and `good` empty. */
  error: string | null;
  /** The newest good backups, newest first, at most HISTORY. */
  good: BackupPoint[];
  good_count: number | null;
  /** What the good backups occupy there. */
  stored_bytes: number | null;
  damaged: number | null;
  /** Free space of a local target's filesystem and its projection; null for S3 or when unknown. */
  disk: (DiskProjection & { free_bytes: number }) | null;
  /** The newest restore drill recorded on this target (of a backup read from it alone); null: never, or not listed. */
  last_drill: Status['last_drill'];
  /** Whether its newest good backup is encrypted; null: none, or not listed. */
  encrypted: boolean | null;
  /** Its S3 Object Lock mode, or "none". */
  immutable: TargetStatus['immutable'];
}

/** One database at one moment: what every check, metric, the page and the summary are computed from. */
export interface Observation {
  /** The configuration entry's name (`--db`). */
  name: string;
  database: string;
  observed_at: string;
  schedule: string;
  verify_schedule: string | null;
  /** The newest good backup on a target must be younger than this (BACKUP_MAX_AGE_HOURS, or the schedule's longest gap + 2 h). */
  max_age_ms: number;
  /** How often drills run at most apart (the drill schedule's longest gap); null when drills are off. */
  drill_interval_ms: number | null;
  /**
   * How often each target is drilled at most apart: the drill interval, times the number of
   * targets when the slots rotate among them (VERIFY_TARGETS=rotate); null when drills are off.
   */
  target_drill_interval_ms: number | null;
  next_backup_at: string;
  next_drill_at: string | null;
  last_attempt: NonNullable<DbState['last_attempt']> | null;
  last_failure: DbState['last_failure'];
  failure_streak: number;
  /** Failed backups ever recorded for this database (DbState.failures_total). */
  failures_total: number;
  /** The newest restore drill recorded on any target. */
  last_drill: Status['last_drill'];
  /** A backup runs now (holds the lock; not sync, prune or the start-up clean-up, which hold it too). */
  running: boolean;
  targets: TargetObservation[];
  /** With WAL_RECEIVE=on, on the entry whose WAL a receiver archives: the archiving and the recovery windows (./observe-pitr.ts). */
  pitr?: PitrObservation;
}

/** The newest good backup must be younger than this for `entry` (see Observation.max_age_ms). */
export function maxAgeMs(app: App, now = new Date()): number {
  const hours = app.config.monitor.maxAgeHours;
  if (hours !== undefined) return Math.round(hours * 3600_000);
  return longestGapMs(app.database.schedule, app.config.timezone, now) + STALE_SLACK_MS;
}

/**
 * Looks at one database now: every target listed at once (each within `deadlineMs`, never
 * thrown), its state file, its lock, local targets' free space. Reads only.
 */
export async function observe(app: App, opts: { now?: Date; deadlineMs?: number; signal?: AbortSignal } = {}): Promise<Observation> {
  const now = opts.now ?? new Date();
  const { config } = app;
  const database = app.database.db.database;
  const listings = await listEveryTarget(app, database, { deadlineMs: opts.deadlineMs ?? 60_000, ...(opts.signal ? { signal: opts.signal } : {}) });
  const targets = await Promise.all(
    listings.map((l) => targetObservation(l, config.monitor.sizeAlertRatio, immutableOf(app, l.target.name), app.database.db.host)),
  );
  const manifests = listings.flatMap((l) => (l.state === 'done' ? l.value.flatMap((b) => (b.manifest ? [b.manifest] : [])) : []));
  const state = app.state.read(database);
  const verify = app.database.verifySchedule;
  const interval = verify ? longestGapMs(verify, config.timezone, now) : null;
  const turns = app.database.verifyTargets === 'rotate' ? app.targets.length : 1;
  return {
    name: app.database.name,
    database,
    observed_at: now.toISOString(),
    schedule: app.database.schedule,
    verify_schedule: verify ?? null,
    max_age_ms: maxAgeMs(app, now),
    drill_interval_ms: interval,
    target_drill_interval_ms: interval === null ? null : interval * turns,
    next_backup_at: nextRun(app.database.schedule, config.timezone, now).toISOString(),
    next_drill_at: verify ? nextRun(verify, config.timezone, now).toISOString() : null,
    last_attempt: state.last_attempt ?? null,
    last_failure: state.last_failure,
    failure_streak: state.failure_streak,
    failures_total: state.failures_total ?? 0,
    last_drill: lastDrill(manifests),
    // the lock is also held by sync, prune, pins and the start-up clean-up: only a backup's counts
    running: lockHolder(app.lockFile(database))?.purpose === backupLockPurpose(database),
    targets,
  };
}

async function targetObservation(l: TargetListing, ratio: number, immutable: TargetStatus['immutable'], dbHost: string): Promise<TargetObservation> {
  const base = { name: l.target.name, location: l.target.repo.location, immutable };
  if (l.state !== 'done') {
    const error = l.state === 'failed' ? asBackupError(l.error).message : l.state === 'timed out' ? 'no answer in time' : `listing ${l.state}`;
    return { ...base, error, good: [], good_count: null, stored_bytes: null, damaged: null, disk: null, last_drill: null, encrypted: null };
  }
  const good: Manifest[] = l.value.filter(isGood).map((b) => b.manifest);
  const anomalies = sizeAnomalies(good, ratio);
  let free: number | undefined;
  try {
    free = await l.target.repo.freeBytes();
  } catch {
    free = undefined;
  }
  return {
    ...base,
    error: null,
    good: good.slice(0, HISTORY).map((m) => ({
      id: m.id,
      created_at: m.created_at,
      finished_at: m.finished_at,
      duration_ms: m.duration_ms,
      size_bytes: m.size_bytes,
      anomaly: anomalies.get(m.id) ?? null,
      drill: drillOf(m),
    })),
    good_count: good.length,
    stored_bytes: good.reduce((s, m) => s + m.size_bytes, 0),
    damaged: l.value.length - good.length,
    disk: free === undefined ? null : { free_bytes: free, ...projectDisk(good, free, dataDirSharesDisk(dbHost, good[0]?.data_directory, base.location)) },
    last_drill: lastDrill(l.value.flatMap((b) => (b.manifest ? [b.manifest] : []))),
    encrypted: good[0] ? Boolean(good[0].encryption) : null,
  };
}

function drillOf(m: Manifest): BackupPoint['drill'] {
  const v = m.verification;
  if (!v || v.kind === 'checksum' || v.content) return null;
  return { verified_at: v.verified_at, ok: v.ok, restore_ms: v.restore_ms };
}

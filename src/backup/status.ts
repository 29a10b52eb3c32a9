import type { App } from '../app';
import { asBackupError, BackupError } from '../errors';
import { lockHolder, type LockInfo } from '../lock/file-lock';
import { nextRun } from '../scheduler/cron-time';
import { isFutureDated, type Manifest } from '../repository/manifest';
import { isGood } from '../repository/repository';
import { listEveryTarget, newestGood, type TargetListing } from './every-target';
import { findLeftovers, NO_LEFTOVERS, type Leftovers } from './leftovers';
import { anomaliesOf, sizeField } from './listing';
import { measureArchiving, type ArchivingStatus } from '../pitr/archiving';
import { pitrWindows, type PitrWindowStatus } from '../pitr/window-status';
import { lastPitrDrill, type PitrDrillRecord } from '../pitr/drill-record';

export interface Status {
  /** The configuration entry's name (`--db`): the database's own unless BACKUP_CONFIG_FILE names it. */
  name: string;
  database: string;
  backup_dir: string;
  /**
   * The newest good backup (by sequence number) on any target, or on the target asked for, and
   * the target holding it. Its age is null when it is dated in the future.
   */
  newest: {
    id: string;
    file: string;
    target: string;
    created_at: string;
    age_seconds: number | null;
    future_dated: boolean;
    size_bytes: number;
    /** Set when its size is far from the median of the good backups before it on its target (BACKUP_SIZE_ALERT_RATIO); it is kept. */
    size_anomaly: ReturnType<typeof sizeField>;
  } | null;
  /** Good backups on the target reported on; null when it cannot be listed (then `error` says why). */
  count: number | null;
  total_bytes: number | null;
  /** Why the target reported on cannot be listed; null when it can. */
  error: string | null;
  last_failure: { at: string; code: string; message: string } | null;
  failure_streak: number;
  /** Failed backups ever recorded (the metrics' basement_backup_failures_total). */
  failures_total: number;
  next_scheduled_run: string;
  schedule: string;
  timezone: string;
  free_bytes: number | null;
  running: LockInfo | null;
  last_drill: {
    id: string;
    verified_at: string;
    ok: boolean;
    restore_ms: number | null;
    error: string | null;
    error_code: string | null;
    /** Set when only the checksum was checked (an encrypted backup, no identity here). */
    content: string | null;
  } | null;
  next_drill: string | null;
  /** Backups that cannot be trusted, and why: never counted as good. */
  damaged: { id: string; reason: string }[];
  /** Good backups dated more than a few minutes ahead of the clock. */
  future_dated: string[];
  targets: TargetStatus[];
  /** What killed or crashed runs left (and what running ones use now): see Leftovers. */
  leftovers: Leftovers;
  /** Point-in-time recovery: the recovery window of each target that has an archive (docs/pitr.md); empty without one. */
  recovery_window: PitrWindowStatus[];
  /** WAL archiving by the receiver of this entry (WAL_RECEIVE=on, or a spool `wal-receive` made): measured now; null otherwise. */
  archiving: ArchivingStatus | null;
  /** The last point-in-time recovery drill run here (`verify --pitr`, PITR_VERIFY_SCHEDULE); null: none. */
  last_pitr_drill: PitrDrillRecord | null;
}

export interface TargetStatus {
  name: string;
  location: string;
  count: number | null;
  total_bytes: number | null;
  newest: string | null;
  error: string | null;
  /** The newest restore drill recorded on this target (of a backup read from it alone); null: never, or not listed. */
  last_drill: Status['last_drill'];
  /** Whether its newest good backup is encrypted (BACKUP_AGE_RECIPIENTS when it was taken); null: no backup, or not listed. */
  encrypted: boolean | null;
  /** Its S3 Object Lock mode (`object_lock`), or "none": whether its copies can be deleted with the server's key. */
  immutable: 'compliance' | 'governance' | 'none';
}

/**
 * Status as seen on target `from` (default: the first), with a line for every target. Without
 * `from`, the newest good backup is the newest on any target, and an unreachable first target
 * only fails the status when no target can be listed.
 */
export async function getStatus(app: App, now = new Date(), from?: string, opts: { archiving?: boolean } = {}): Promise<Status> {
  const { config } = app;
  const reported = app.target(from);
  const repo = reported.repo;
  const database = app.database.db.database;
  const leftovers = findLeftovers(app).catch((err: unknown): Leftovers => ({ ...NO_LEFTOVERS, unchecked: [asBackupError(err).message] }));
  const windows = pitrWindows(app);
  const archiving = opts.archiving ? measureArchiving(app, windows, now) : undefined;
  const listings = await listEveryTarget(app, database);
  const mine = listings.find((l) => l.target === reported)!;
  if (mine.state !== 'done' && (from !== undefined || listings.every((l) => l.state !== 'done')))
    throw mine.state === 'failed' ? mine.error : new BackupError('STORAGE', listingError(mine));
  const all = mine.state === 'done' ? mine.value : [];
  const good: Manifest[] = all.filter(isGood).map((b) => b.manifest);
  const newest = from === undefined ? newestGood(listings) : good[0] && { manifest: good[0], target: reported };
  const state = app.state.read(database);
  let free: number | undefined;
  try {
    free = await repo.freeBytes();
  } catch {
    free = undefined;
  }
  return {
    name: app.database.name,
    database,
    backup_dir: repo.location,
    newest: newest ? { ...newestOf(newest.manifest, newest.target.name, now), size_anomaly: anomalyOf(listings, newest, config.monitor.sizeAlertRatio) } : null,
    count: mine.state === 'done' ? good.length : null,
    total_bytes: mine.state === 'done' ? good.reduce((s, m) => s + m.size_bytes, 0) : null,
    error: mine.state === 'done' ? null : listingError(mine),
    last_failure: state.last_failure,
    failure_streak: state.failure_streak,
    failures_total: state.failures_total ?? 0,
    next_scheduled_run: nextRun(app.database.schedule, config.timezone, now).toISOString(),
    schedule: app.database.schedule,
    timezone: config.timezone,
    free_bytes: free ?? null,
    running: lockHolder(app.lockFile(database)) ?? null,
    last_drill: lastDrill(all.flatMap((b) => (b.manifest ? [b.manifest] : []))),
    next_drill: app.database.verifySchedule ? nextRun(app.database.verifySchedule, config.timezone, now).toISOString() : null,
    targets: listings.map((l) => targetStatus(l, app)),
    damaged: all.filter((b) => !isGood(b)).map((b) => ({ id: b.id, reason: b.damage! })),
    future_dated: good.filter((m) => isFutureDated(m, now)).map((m) => m.id),
    leftovers: await leftovers,
    recovery_window: await windows,
    archiving: (await archiving) ?? null,
    last_pitr_drill: lastPitrDrill(app),
  };
}

/** The size anomaly of the newest good backup among the good ones on its own target. */
function anomalyOf(listings: TargetListing[], newest: { manifest: Manifest; target: { name: string } }, ratio: number): ReturnType<typeof sizeField> {
  const l = listings.find((x) => x.target.name === newest.target.name);
  return l?.state === 'done' ? sizeField(anomaliesOf(l.value, ratio).get(newest.manifest.id)) : null;
}

function newestOf(m: Manifest, target: string, now: Date): Omit<NonNullable<Status['newest']>, 'size_anomaly'> {
  const future = isFutureDated(m, now);
  return {
    id: m.id,
    file: m.file,
    target,
    created_at: m.created_at,
    age_seconds: future ? null : Math.max(0, Math.round((now.getTime() - Date.parse(m.created_at)) / 1000)),
    future_dated: future,
    size_bytes: m.size_bytes,
  };
}

function listingError(l: TargetListing): string {
  return l.state === 'failed' ? asBackupError(l.error).message : `listing ${l.state}`;
}

export function lastDrill(manifests: Manifest[]): Status['last_drill'] {
  let best: Status['last_drill'] = null;
  for (const m of manifests) {
    const v = m.verification;
    if (v && (v.kind !== 'checksum' || v.content) && (!best || v.verified_at > best.verified_at))
      best = {
        id: m.id,
        verified_at: v.verified_at,
        ok: v.ok,
        restore_ms: v.restore_ms,
        error: v.error,
        error_code: v.error_code ?? null,
        content: v.content ?? null,
      };
  }
  return best;
}

/** A target's S3 Object Lock mode (`object_lock`), or "none". */
export function immutableOf(app: App, target: string): TargetStatus['immutable'] {
  const config = app.database.targets.find((t) => t.name === target);
  return (config?.type === 's3' && config.objectLock?.mode) || 'none';
}

function targetStatus(l: TargetListing, app: App): TargetStatus {
  const location = l.target.repo.location;
  const base = { name: l.target.name, location, immutable: immutableOf(app, l.target.name) };
  if (l.state !== 'done') return { ...base, count: null, total_bytes: null, newest: null, error: listingError(l), last_drill: null, encrypted: null };
  const good = l.value.filter(isGood).map((b) => b.manifest);
  return {
    ...base,
    count: good.length,
    total_bytes: good.reduce((s, m) => s + m.size_bytes, 0),
    newest: good[0]?.created_at ?? null,
    error: null,
    last_drill: lastDrill(l.value.flatMap((b) => (b.manifest ? [b.manifest] : []))),
    encrypted: good[0] ? Boolean(good[0].encryption) : null,
  };
}

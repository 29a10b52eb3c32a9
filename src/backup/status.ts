import type { App, Target } from '../app';
import { asBackupError } from '../errors';
import { lockHolder, type LockInfo } from '../lock/file-lock';
import { nextRun } from '../scheduler/cron-time';
import { isFutureDated, type Manifest } from '../storage/manifest';
import { isGood } from '../storage/repository';

export interface Status {
  database: string;
  backup_dir: string;
  /** The newest good backup (by sequence number). Its age is null when it is dated in the future. */
  newest: { id: string; file: string; created_at: string; age_seconds: number | null; future_dated: boolean; size_bytes: number } | null;
  count: number;
  total_bytes: number;
  last_failure: { at: string; code: string; message: string } | null;
  failure_streak: number;
  next_scheduled_run: string;
  schedule: string;
  timezone: string;
  free_bytes: number | null;
  running: LockInfo | null;
  last_drill: { id: string; verified_at: string; ok: boolean; restore_ms: number | null; error: string | null; error_code: string | null } | null;
  next_drill: string | null;
  /** Backups that cannot be trusted, and why: never counted as good. */
  damaged: { id: string; reason: string }[];
  /** Good backups dated more than a few minutes ahead of the clock. */
  future_dated: string[];
  targets: TargetStatus[];
}

export interface TargetStatus {
  name: string;
  location: string;
  count: number | null;
  total_bytes: number | null;
  newest: string | null;
  error: string | null;
}

/** Status as seen on target `from` (default: the first), with a line for every target. */
export async function getStatus(app: App, now = new Date(), from?: string): Promise<Status> {
  const { config } = app;
  const repo = app.target(from).repo;
  const database = config.db.database;
  const all = await repo.list(database);
  const good: Manifest[] = all.filter(isGood).map((b) => b.manifest);
  const newest = good[0];
  const newestFuture = newest !== undefined && isFutureDated(newest, now);
  const state = app.state.read(database);
  let free: number | undefined;
  try {
    free = await repo.storage.freeBytes();
  } catch {
    free = undefined;
  }
  return {
    database,
    backup_dir: repo.storage.location,
    newest: newest
      ? {
          id: newest.id,
          file: newest.file,
          created_at: newest.created_at,
          age_seconds: newestFuture ? null : Math.max(0, Math.round((now.getTime() - Date.parse(newest.created_at)) / 1000)),
          future_dated: newestFuture,
          size_bytes: newest.size_bytes,
        }
      : null,
    count: good.length,
    total_bytes: good.reduce((s, m) => s + m.size_bytes, 0),
    last_failure: state.last_failure,
    failure_streak: state.failure_streak,
    next_scheduled_run: nextRun(config.schedule, config.timezone, now).toISOString(),
    schedule: config.schedule,
    timezone: config.timezone,
    free_bytes: free ?? null,
    running: lockHolder(app.lockFile(database)) ?? null,
    last_drill: lastDrill(all.flatMap((b) => (b.manifest ? [b.manifest] : []))),
    next_drill: config.verifySchedule ? nextRun(config.verifySchedule, config.timezone, now).toISOString() : null,
    targets: await Promise.all(app.targets.map((t) => targetStatus(t, database))),
    damaged: all.filter((b) => !isGood(b)).map((b) => ({ id: b.id, reason: b.damage! })),
    future_dated: good.filter((m) => isFutureDated(m, now)).map((m) => m.id),
  };
}

function lastDrill(manifests: Manifest[]): Status['last_drill'] {
  let best: Status['last_drill'] = null;
  for (const m of manifests) {
    const v = m.verification;
    if (v && v.kind !== 'checksum' && (!best || v.verified_at > best.verified_at))
      best = { id: m.id, verified_at: v.verified_at, ok: v.ok, restore_ms: v.restore_ms, error: v.error, error_code: v.error_code ?? null };
  }
  return best;
}

async function targetStatus(t: Target, database: string): Promise<TargetStatus> {
  try {
    const good = await t.repo.listGood(database);
    return {
      name: t.name,
      location: t.repo.storage.location,
      count: good.length,
      total_bytes: good.reduce((s, m) => s + m.size_bytes, 0),
      newest: good[0]?.created_at ?? null,
      error: null,
    };
  } catch (err) {
    return { name: t.name, location: t.repo.storage.location, count: null, total_bytes: null, newest: null, error: asBackupError(err).message };
  }
}

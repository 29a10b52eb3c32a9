import type { App, Target } from '../app';
import { BackupError } from '../errors';
import { log } from '../logger';
import { deletedBackups, type DeletedBackups } from '../repository/deleted';
import type { Manifest } from '../repository/manifest';
import { isGood } from '../repository/repository';

/** Where sync may copy backups from: a target, or the backups deleted on one, read from their versions. */
export interface SyncSource {
  /** How the copies name it: the target's name, or "<target> (deleted)". */
  key: string;
  /** The target, or one whose repository reads the deleted backups' versions. */
  target: Target;
}

/**
 * `sync --deleted`: the good backups deleted on each S3 target whose bucket keeps versions, as
 * sources beside the targets. A target that keeps none is skipped with a log line; when no target
 * keeps any, a CONFIG error naming the fix.
 */
export async function deletedSources(app: App, database: string): Promise<{ source: SyncSource; good: Map<string, Manifest> }[]> {
  const out: { source: SyncSource; good: Map<string, Manifest> }[] = [];
  let refusal: BackupError | undefined;
  for (const t of app.targets) {
    if (!t.repo.storage.history) continue;
    let hidden: DeletedBackups;
    try {
      hidden = await deletedBackups(t.repo, database);
    } catch (err) {
      if (!(err instanceof BackupError && err.code === 'CONFIG')) throw err;
      refusal ??= err;
      log.info(`sync --deleted: ${err.message}; skipping it`, { target: t.name });
      continue;
    }
    const good = new Map((await hidden.repo.list(database)).filter(isGood).map((b) => [b.id, b.manifest]));
    out.push({ source: { key: `${t.name} (deleted)`, target: { ...t, repo: hidden.repo } }, good });
  }
  if (out.length === 0) {
    throw new BackupError('CONFIG', refusal?.message ?? 'sync --deleted: no target is an S3 bucket that keeps versions', {
      hint: refusal?.hint ?? 'Deleted backups are read from the versions an S3 bucket with versioning keeps: see docs/offsite.md#versioned-buckets.',
    });
  }
  return out;
}

import { log } from '../logger';
import type { Repository } from '../storage/repository';
import { applyRetention, type RetentionDecision, type RetentionRules } from './policy';

/**
 * Applies the retention policy to one database's good backups in `repo`. Deletes the manifest
 * first, then the data, so an interrupted delete never leaves a listed backup without data.
 * Call it only while holding the database's backup lock.
 */
export async function expireBackups(
  repo: Repository,
  database: string,
  rules: RetentionRules,
  opts: { now?: Date; dryRun?: boolean } = {},
): Promise<RetentionDecision[]> {
  const now = opts.now ?? new Date();
  const decisions = applyRetention(await repo.listGood(database), rules, now);
  if (opts.dryRun) return decisions;
  for (const d of decisions) {
    if (d.action !== 'delete') continue;
    await repo.remove(d.manifest);
    log.info('retention deleted a backup', { id: d.manifest.id, created_at: d.manifest.created_at, reason: d.reason });
  }
  return decisions;
}

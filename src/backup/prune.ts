import type { App } from '../app';
import { acquireLock } from '../lock/file-lock';
import { expireBackups } from '../retention/expire';
import type { RetentionDecision } from '../retention/policy';

/** `basement-backup prune`: the retention step on its own, under the backup lock. */
export async function prune(app: App, opts: { dryRun: boolean }): Promise<RetentionDecision[]> {
  const database = app.config.db.database;
  if (opts.dryRun) return expireBackups(app.repo, database, app.config.retention, { dryRun: true });
  const lock = acquireLock(app.lockFile(database), `prune of ${database}`);
  try {
    return await expireBackups(app.repo, database, app.config.retention);
  } finally {
    lock.release();
  }
}

import type { App, Target } from '../app';
import { acquireLock } from '../lock/file-lock';
import { expireBackups } from '../retention/expire';
import type { RetentionDecision } from '../retention/policy';

/** `basement-backup prune`: each target's retention on its own, under the backup lock. */
export async function prune(app: App, opts: { dryRun: boolean; target?: string | undefined }): Promise<{ target: string; decisions: RetentionDecision[] }[]> {
  const database = app.config.db.database;
  const targets: Target[] = opts.target ? [app.target(opts.target)] : app.targets;
  const lock = opts.dryRun ? undefined : acquireLock(app.lockFile(database), `prune of ${database}`);
  try {
    const out = [];
    for (const t of targets) {
      out.push({ target: t.name, decisions: await expireBackups(t.repo, database, t.retention, { dryRun: opts.dryRun }) });
    }
    return out;
  } finally {
    lock?.release();
  }
}

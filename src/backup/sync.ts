import type { App, Target } from '../app';
import { asBackupError, BackupError } from '../errors';
import { acquireLock } from '../lock/file-lock';
import { log } from '../logger';
import { isKept, newestFirst, type Manifest } from '../storage/manifest';
import { isGood } from '../storage/repository';

export interface SyncCopy {
  id: string;
  from: string;
  to: string;
  ok: boolean;
  error?: string;
}

/**
 * Would `target`'s retention keep this backup: pinned, younger than its days, or among the newest
 * `minCount` good backups anywhere? Others are not copied back, or retention would delete them again.
 */
function wanted(target: Target, m: Manifest, now: Date, newest: string[]): boolean {
  return (
    isKept(m, now) || Date.parse(m.created_at) >= now.getTime() - target.retention.days * 86400_000 || newest.slice(0, target.retention.minCount).includes(m.id)
  );
}

/**
 * Copies good backups that are missing from a target (it was down during the backup, or was
 * added later) from a target that has them, within the receiving target's retention window.
 * The copy streams through sha256 and is committed only when it matches the manifest; the
 * manifest is written last, as in a backup. Takes the backup lock. A target that cannot be
 * listed is skipped, and after copying what it can between the others, sync fails with a
 * STORAGE error naming it (it cannot tell what that target is missing).
 */
export async function syncTargets(app: App): Promise<SyncCopy[]> {
  const database = app.config.db.database;
  if (app.targets.length < 2) return [];
  const lock = acquireLock(app.lockFile(database), `sync of ${database}`);
  const copies: SyncCopy[] = [];
  try {
    const now = new Date();
    const have = new Map<string, Map<string, Manifest>>();
    // a damaged copy is not overwritten: it stays, DAMAGED, until the operator removes it (prune --damaged)
    const present = new Map<string, Set<string>>();
    const unreachable: { name: string; error: BackupError }[] = [];
    for (const t of app.targets) {
      try {
        const listed = await t.repo.list(database);
        have.set(t.name, new Map(listed.filter(isGood).map((b) => [b.id, b.manifest])));
        present.set(t.name, new Set(listed.map((b) => b.id)));
      } catch (err) {
        const error = asBackupError(err);
        unreachable.push({ name: t.name, error });
        log.warn(`sync: cannot list target ${t.name}; skipping it`, { error: error.message });
      }
    }
    const all = new Map<string, Manifest>();
    for (const ms of have.values()) for (const m of ms.values()) all.set(m.id, m);
    const newest = [...all.values()].sort(newestFirst).map((m) => m.id);
    for (const dest of app.targets) {
      const destHas = have.get(dest.name);
      if (!destHas) continue;
      for (const source of app.targets) {
        const sourceHas = have.get(source.name);
        if (source === dest || !sourceHas) continue;
        for (const m of sourceHas.values()) {
          if (present.get(dest.name)!.has(m.id) || !wanted(dest, m, now, newest)) continue;
          try {
            await source.repo.copyTo(dest.repo, m);
            destHas.set(m.id, m);
            present.get(dest.name)!.add(m.id);
            copies.push({ id: m.id, from: source.name, to: dest.name, ok: true });
            log.info('sync: copied a backup', { id: m.id, from: source.name, to: dest.name });
          } catch (err) {
            const e = asBackupError(err);
            copies.push({ id: m.id, from: source.name, to: dest.name, ok: false, error: e.message });
            log.warn('sync: copy failed', { id: m.id, from: source.name, to: dest.name, error: e.message });
          }
        }
      }
    }
    if (unreachable.length > 0) {
      const names = unreachable.map((u) => u.name).join(', ');
      const first = unreachable[0]!.error;
      throw new BackupError('STORAGE', `sync cannot reach ${names}: ${first.message}`, {
        hint: `${copies.filter((c) => c.ok).length} backup(s) were copied between the other targets; run sync again once ${names} works. ${first.hint ?? ''}`.trim(),
        cause: first,
      });
    }
  } finally {
    lock.release();
  }
  return copies;
}

import os from 'node:os';
import type { App, Target } from '../app';
import { asBackupError, BackupError, ConfigError } from '../errors';
import { holdLock } from '../lock/file-lock';
import { log } from '../logger';
import type { Pin } from '../repository/manifest';
import { isGood } from '../repository/repository';
import { withReleasers } from '../util/releasers';
import { listEveryTarget } from './every-target';

export interface PinRequest {
  id: string;
  /** An ISO date or "forever"; null unpins. */
  keepUntil: string | null;
  note?: string | undefined;
  /** Only this target; else every target (the pin then travels with the backup when sync copies it). */
  target?: string | undefined;
}

export interface PinOutcome {
  target: string;
  result: 'pinned' | 'unpinned' | 'not there' | 'unreachable';
  error?: BackupError;
}

/**
 * `pin` and `unpin`: writes <id>.pin.json beside the backup's manifest on each target that holds
 * it (the manifest itself stays as written). Under the backup lock, so retention never decides on
 * a listing older than the pin. Nothing is written unless the backup exists on a target asked for:
 * an unknown id is NOT_FOUND, naming the newest ids. A target that cannot be reached does not stop
 * the others; the command then fails with STORAGE naming it, after pinning where it could.
 */
export async function setPin(app: App, req: PinRequest): Promise<PinOutcome[]> {
  const database = app.database.db.database;
  const targets: Target[] = req.target !== undefined ? [app.target(req.target)] : app.targets;
  return withReleasers(async (releasers) => {
    holdLock(releasers, app.lockFile(database), `${req.keepUntil === null ? 'unpin' : 'pin'} of ${database}`);
    const listings = (await listEveryTarget(app, database)).filter((l) => targets.includes(l.target));
    const holders = listings.flatMap((l) => (l.state === 'done' && l.value.some((b) => b.id === req.id && b.manifest) ? [l.target] : []));
    const unreachable = listings.flatMap((l) =>
      l.state === 'done' ? [] : [{ target: l.target, error: asBackupError(l.state === 'failed' ? l.error : undefined) }],
    );
    if (holders.length === 0 && unreachable.length === 0) {
      const newest = listings.flatMap((l) => (l.state === 'done' ? l.value.filter(isGood).map((b) => b.id) : []));
      const shown = [...new Set(newest)].sort().reverse().slice(0, 5);
      throw new BackupError('NOT_FOUND', `no backup "${req.id}" of ${database} on ${targets.map((t) => t.name).join(', ')}; nothing was changed`, {
        hint:
          shown.length > 0
            ? `\`basement-backup list\` shows the backups; the newest: ${shown.join(', ')}.`
            : 'There are no backups yet: take one with `basement-backup backup`.',
      });
    }
    if (req.keepUntil === null && req.target !== undefined) {
      const current = listings[0]?.state === 'done' ? listings[0].value.find((b) => b.id === req.id)?.manifest?.pin : undefined;
      if (current?.scope === 'all' && current.keep_until !== null) {
        // sync would copy it back from the targets where the pin stands: one target cannot leave a pin made for all
        throw new ConfigError(
          '--target',
          `${req.id} is pinned on every target (until ${current.keep_until}); unpinning it on ${req.target} alone would not hold (sync copies it back), nothing was changed`,
          `Unpin it everywhere (\`basement-backup unpin ${req.id}\`), then pin it with --target on the targets that should keep it.`,
        );
      }
    }
    const pin: Pin = {
      keep_until: req.keepUntil,
      note: req.note ?? null,
      pinned_at: new Date().toISOString(),
      scope: req.target !== undefined ? 'target' : 'all',
      host: os.hostname(),
    };
    const out: PinOutcome[] = [];
    for (const l of listings) {
      const t = l.target;
      const problem = unreachable.find((u) => u.target === t);
      if (problem) {
        out.push({ target: t.name, result: 'unreachable', error: problem.error });
        continue;
      }
      if (!holders.includes(t)) {
        out.push({ target: t.name, result: 'not there' });
        continue;
      }
      try {
        await t.repo.writePin(req.id, pin);
        out.push({ target: t.name, result: req.keepUntil === null ? 'unpinned' : 'pinned' });
        log.info(req.keepUntil === null ? 'unpinned a backup' : 'pinned a backup', { id: req.id, target: t.name, keep_until: req.keepUntil, note: req.note });
      } catch (err) {
        out.push({ target: t.name, result: 'unreachable', error: asBackupError(err) });
      }
    }
    const failed = out.filter((o) => o.result === 'unreachable');
    if (failed.length > 0) {
      const done = out.filter((o) => o.result === 'pinned' || o.result === 'unpinned').map((o) => o.target);
      throw new BackupError(
        'STORAGE',
        `could not ${req.keepUntil === null ? 'unpin' : 'pin'} ${req.id} on ${failed.map((f) => f.target).join(', ')}: ${failed[0]!.error!.message}`,
        {
          hint: `${done.length > 0 ? `Done on ${done.join(', ')}. ` : 'Nothing was changed. '}Run the same command again once ${failed.map((f) => f.target).join(', ')} answers. ${failed[0]!.error!.hint ?? ''}`.trim(),
          cause: failed[0]!.error,
        },
      );
    }
    return out;
  });
}

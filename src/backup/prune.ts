import type { App, Target } from '../app';
import { asBackupError } from '../errors';
import { holdLock } from '../lock/file-lock';
import { log } from '../logger';
import { readServerClock, TRUSTED_CLOCK } from '../retention/clock-check';
import { expireBackups } from '../retention/expire';
import type { RetentionDecision } from '../retention/policy';
import type { Manifest } from '../repository/manifest';
import { isGood, type ListedBackup } from '../repository/repository';
import type { StoredObject } from '../storage/types';
import { withReleasers } from '../util/releasers';
import { alertDamaged } from './damage';

export interface PruneResult {
  target: string;
  decisions: RetentionDecision[];
  /** Damaged backups: kept by retention; removed (or, dry run, would be) with `damaged`. */
  damaged: ListedBackup[];
  /** Objects no manifest owns: removed (or, dry run, would be). */
  orphans: StoredObject[];
  /** Temporary objects an interrupted write (a killed backup, sync or reencrypt) left: removed (or, dry run, would be). */
  temporaries: string[];
  /** Backups retention let go that S3 Object Lock still holds: left, for a later prune. */
  locked: { manifest: Manifest; until: Date }[];
  /** The target never deletes (`delete: false`): what retention, orphans and temporaries would remove is left to the bucket's lifecycle rules. */
  byLifecycle?: boolean;
}

/**
 * `basement-backup prune`: each target's retention on its own, under the backup lock; temporary
 * objects interrupted writes left and objects no manifest owns are removed first, and with
 * `damaged` the damaged backups too. The database server's clock is read once, before anything
 * is removed, as retention's second opinion on this machine's (`trustClock`: the operator has
 * checked the clock; it is not asked). An append-only target (`delete: false`) deletes nothing:
 * its result says what retention would remove, left to the bucket's lifecycle rules; unfinished
 * uploads are still aborted (not a delete of data).
 */
export async function prune(app: App, opts: { dryRun: boolean; target?: string | undefined; damaged?: boolean; trustClock?: boolean }): Promise<PruneResult[]> {
  const database = app.database.db.database;
  const targets: Target[] = opts.target ? [app.target(opts.target)] : app.targets;
  return withReleasers(async (releasers) => {
    if (!opts.dryRun) holdLock(releasers, app.lockFile(database), `prune of ${database}`);
    const clock = opts.trustClock ? TRUSTED_CLOCK : await readServerClock(app.database.db);
    const out: PruneResult[] = [];
    for (const t of targets) {
      const listing = await t.repo.scan(database);
      const orphans = listing.orphans;
      const temporaries = opts.dryRun
        ? (await t.repo.temporaries(database)).filter((x) => !x.inUse).map((x) => x.name)
        : await t.repo.removeLeftovers(database);
      if (!opts.dryRun) await t.repo.removeOrphans(database, listing, new Date());
      let damaged = listing.backups.filter((b) => !isGood(b));
      if (opts.damaged && !opts.dryRun && t.repo.storage.appendOnly) {
        log.info("prune --damaged leaves damaged backups to the bucket's lifecycle rules (delete: false)", { target: t.name, count: damaged.length });
      } else if (opts.damaged && !opts.dryRun) {
        for (const b of damaged) {
          const left = await t.repo.removeBackup(database, b.id);
          if (left) log.warn('left a damaged backup for its Object Lock to pass', { id: b.id, target: t.name, locked_until: left.lockedUntil.toISOString() });
          else log.warn('removed a damaged backup', { id: b.id, target: t.name, damage: b.damage });
        }
      } else if (!opts.damaged) {
        await alertDamaged(app, [{ target: t.name, damaged }]);
      }
      try {
        const outcome = await expireBackups(t.repo, database, t.retention, { clock, dryRun: opts.dryRun, timeZone: app.config.timezone });
        if (!opts.damaged) damaged = outcome.damaged;
        out.push({ target: t.name, decisions: outcome.decisions, damaged, orphans, temporaries, locked: outcome.locked, byLifecycle: outcome.byLifecycle });
      } catch (err) {
        const e = asBackupError(err);
        // a dry run that would be refused says so on the terminal; the real run alerts
        if (!(opts.dryRun && e.code === 'CLOCK'))
          await app.alerter.send({ kind: 'problem', what: `Retention of ${app.database.name} on ${t.name} refused to delete`, error: e });
        throw e;
      }
    }
    return out;
  });
}

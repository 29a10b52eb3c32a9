import type { RetentionRules } from '../config/types';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import type { Manifest, Verification } from '../repository/manifest';
import { isGood, type ListedBackup, type Repository } from '../repository/repository';
import { clockDoubt, clockRefusal, type ClockReading } from './clock-check';
import { applyRetention, type RetentionDecision } from './policy';

export interface RetentionOutcome {
  decisions: RetentionDecision[];
  /** Damaged backups: never counted as good, never deleted by retention. */
  damaged: ListedBackup[];
  /** Backups retention let go that S3 Object Lock still holds: left until the lock passes, deleted by a later prune. */
  locked: { manifest: Manifest; until: Date }[];
  /** The target never deletes (`delete: false`): the backups marked delete are left for the bucket's lifecycle rules. */
  byLifecycle?: boolean;
}

/**
 * Applies the retention policy to one database's good backups in `repo`. Call it only while
 * holding the database's backup lock. Before deleting anything it refuses to go on when
 * - the clock is in doubt (`clockDoubt` with `clock`: it disagrees with the database server's,
 *   the server could not be asked, or it reads earlier than a backup's date): ages cannot be
 *   trusted, and a pin may look run out (CLOCK; a dry run refuses as the real one would). A clock
 *   in doubt that would delete nothing is only logged;
 * - a backup it relies on (the newest `minCount` good unpinned ones) is not intact now: that backup is
 *   recorded as damaged, so it no longer counts, and nothing is deleted (DAMAGED).
 * Deletes the manifest first, then the data, so an interrupted delete never leaves a listed
 * backup without data. On an append-only target (`delete: false`) it deletes nothing and says
 * what it would have deleted (`byLifecycle`): the bucket's lifecycle rules expire them.
 */
export async function expireBackups(
  repo: Repository,
  database: string,
  rules: RetentionRules,
  opts: { clock: ClockReading; dryRun?: boolean; timeZone?: string },
): Promise<RetentionOutcome> {
  const now = new Date();
  const all = await repo.list(database);
  const good = all.filter(isGood).map((b) => b.manifest);
  const damaged = all.filter((b) => !isGood(b));
  const decisions = applyRetention(good, rules, now, opts.timeZone);
  const deletes = decisions.filter((d) => d.action === 'delete');
  if (repo.storage.appendOnly) return leftToLifecycle(repo, decisions, damaged);
  const doubt = clockDoubt(
    opts.clock,
    all.flatMap((b) => (b.manifest ? [b.manifest] : [])),
    now,
    repo.name,
  );
  if (doubt && deletes.length > 0)
    throw clockRefusal(
      doubt,
      repo.name,
      deletes.map((d) => d.manifest),
      opts.dryRun === true,
    );
  if (doubt) log.warn(`retention on ${repo.name} cannot trust the clock: ${doubt.cause}; nothing was due`, { hint: doubt.hint });
  if (deletes.length === 0) return { decisions, damaged, locked: [] };
  if (opts.dryRun) return { decisions, damaged, locked: await stillLocked(repo, deletes) };

  // the backups the minimum count keeps: the ones that make it safe to let the others go
  const reliedOn = decisions.filter((d) => d.keptBy.some((k) => k.rule === 'min-count')).map((d) => d.manifest);
  const problems: { id: string; problem: string }[] = [];
  for (const m of reliedOn) {
    let problem: string | undefined;
    try {
      problem = await repo.confirmIntact(m);
    } catch (err) {
      throw new BackupError('STORAGE', `retention could not confirm backup ${m.id} on ${repo.name}: ${asBackupError(err).message}; nothing was deleted`, {
        hint: asBackupError(err).hint,
        cause: err,
      });
    }
    if (problem === undefined) continue;
    problems.push({ id: m.id, problem });
    const record: Verification = {
      kind: 'checksum',
      verified_at: now.toISOString(),
      ok: false,
      checksum_ok: false,
      restore_ms: null,
      tables_checked: 0,
      rows_checked: 0,
      mismatches: [],
      error: problem,
      error_code: 'DAMAGED',
      server: repo.name,
    };
    await repo.writeVerification(m.id, record);
    log.error('a backup retention relies on is damaged; it no longer counts as good', { id: m.id, target: repo.name, problem });
  }
  if (problems.length > 0) {
    throw new BackupError(
      'DAMAGED',
      `retention deleted nothing on ${repo.name}: ${problems.length === 1 ? 'a backup it relies on is' : `${problems.length} backups it relies on are`} damaged: ${problems.map((p) => `${p.id}: ${p.problem}`).join('; ')}`,
      {
        hint: 'They are now marked DAMAGED (`basement-backup list`) and no longer count as good, so the next run keeps older good backups in their place. Check the disk or the bucket, and take a new backup.',
      },
    );
  }

  const locked: RetentionOutcome['locked'] = [];
  for (const d of deletes) {
    const left = await repo.remove(d.manifest);
    if (left) {
      locked.push({ manifest: d.manifest, until: left.lockedUntil });
      log.info('retention left a backup for its Object Lock to pass', { id: d.manifest.id, locked_until: left.lockedUntil.toISOString(), target: repo.name });
      continue;
    }
    log.info('retention deleted a backup', { id: d.manifest.id, created_at: d.manifest.created_at, reason: d.reason, target: repo.name });
  }
  return { decisions, damaged, locked };
}

/** An append-only target (delete: false) deletes nothing: what retention lets go is left to the bucket's lifecycle rules. */
function leftToLifecycle(repo: Repository, decisions: RetentionDecision[], damaged: ListedBackup[]): RetentionOutcome {
  const ids = decisions.filter((d) => d.action === 'delete').map((d) => d.manifest.id);
  if (ids.length > 0)
    log.info("retention leaves the backups it would delete to the bucket's lifecycle rules (delete: false)", { target: repo.name, ids: ids.join(',') });
  return { decisions, damaged, locked: [], byLifecycle: true };
}

/** What a dry run would leave for its lock to pass: the backups going whose objects a lock still holds. */
async function stillLocked(repo: Repository, deletes: RetentionDecision[]): Promise<RetentionOutcome['locked']> {
  const out: RetentionOutcome['locked'] = [];
  for (const d of deletes) {
    const until = await repo.lockedUntil(d.manifest.id);
    if (until) out.push({ manifest: d.manifest, until });
  }
  return out;
}

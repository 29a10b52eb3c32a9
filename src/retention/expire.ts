import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import type { Verification } from '../storage/manifest';
import { isGood, type ListedBackup, type Repository } from '../storage/repository';
import { applyRetention, type RetentionDecision, type RetentionRules } from './policy';

export interface RetentionOutcome {
  decisions: RetentionDecision[];
  /** Damaged backups: never counted as good, never deleted by retention. */
  damaged: ListedBackup[];
}

/**
 * Applies the retention policy to one database's good backups in `repo`. Call it only while
 * holding the database's backup lock. Before deleting anything it refuses to go on when
 * - the clock reads earlier than a backup's date (the clock went backwards, or was ahead when
 *   that backup was taken): ages cannot be trusted (CLOCK), unless `trustClock`;
 * - a backup it relies on (the newest `minCount` good unpinned ones) is not intact now: that backup is
 *   recorded as damaged, so it no longer counts, and nothing is deleted (DAMAGED).
 * Deletes the manifest first, then the data, so an interrupted delete never leaves a listed
 * backup without data.
 */
export async function expireBackups(
  repo: Repository,
  database: string,
  rules: RetentionRules,
  opts: { now?: Date; dryRun?: boolean; trustClock?: boolean; timeZone?: string } = {},
): Promise<RetentionOutcome> {
  const now = opts.now ?? new Date();
  const all = await repo.list(database);
  const good = all.filter(isGood).map((b) => b.manifest);
  const damaged = all.filter((b) => !isGood(b));
  const decisions = applyRetention(good, rules, now, opts.timeZone);
  const deletes = decisions.filter((d) => d.action === 'delete');
  if (opts.dryRun || deletes.length === 0) return { decisions, damaged };

  const latest = all
    .map((b) => b.manifest)
    .filter((m) => m !== undefined && !Number.isNaN(Date.parse(m.created_at)))
    .sort((a, b) => Date.parse(b!.created_at) - Date.parse(a!.created_at))[0];
  if (latest && Date.parse(latest.created_at) > now.getTime() && !opts.trustClock) {
    throw new BackupError(
      'CLOCK',
      `the clock reads ${now.toISOString()}, earlier than backup ${latest.id} taken at ${latest.created_at} on ${repo.name}: the clock went backwards, or was ahead when that backup was taken; retention deleted nothing`,
      {
        hint: `Check the clock (timedatectl; is NTP on?). Retention resumes by itself once the clock passes ${latest.created_at}. If the clock is right now and that backup's date is wrong, \`basement-backup prune --trust-clock\` applies retention anyway (future-dated backups are then kept).`,
      },
    );
  }

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

  for (const d of deletes) {
    await repo.remove(d.manifest);
    log.info('retention deleted a backup', { id: d.manifest.id, created_at: d.manifest.created_at, reason: d.reason, target: repo.name });
  }
  return { decisions, damaged };
}

import type { App } from '../app';
import { asBackupError, BackupError, ERROR_CODES } from '../errors';
import { backupLogLine, log } from '../logger';
import { failureLines, PingRun } from '../notify/ping';
import { shouldAlertFailure, shouldAlertRecovery } from '../notify/policy';
import { nextRun } from '../scheduler/cron-time';
import { formatBytes } from '../util/format';
import { alertDamaged } from './damage';
import { listEveryTarget, newestGood } from './every-target';
import { runBackup, type BackupRequest, type BackupResult } from './run-backup';

/**
 * A backup as the daemon and the CLI both run it: the backup itself, then the record of it
 * (state, backup.log) and the one alert path. Throws the BackupError on failure. `gate` (the
 * CLI's `--verify`, `--require-all-targets`) runs on the stored backup before the last ping, so
 * the ping says how the command ends: a gate that fails pings its exit code (37, 23), not success.
 */
export async function performBackup(app: App, req: BackupRequest, gate?: (result: BackupResult) => Promise<void>): Promise<BackupResult> {
  const url = app.database.ping.backup;
  if (url === undefined) {
    const result = await backupAndRecord(app, req);
    await gate?.(result);
    return result;
  }
  const ping = new PingRun(url, app.config.notify.timeoutMs);
  let finished: Promise<void> | undefined;
  let held: { code: number; body: string } | undefined;
  const finish: Finish = (code, body) => {
    if (gate && code === 0) held = { code, body };
    else finished = ping.finish(code, body);
  };
  try {
    // the start ping once this run holds the lock: a run refused by it (LOCKED) pings nothing,
    // neither a start left without its end nor a failure (the process holding the lock pings)
    const result = await backupAndRecord(app, { ...req, onLocked: () => ping.start() }, finish);
    try {
      await gate?.(result);
    } catch (thrown) {
      const e = asBackupError(thrown);
      held = { code: ERROR_CODES[e.code].exit, body: `${held?.body ?? ''}${failureLines('Backup gate', e)}` };
      throw thrown;
    }
    return result;
  } finally {
    if (held) finished = ping.finish(held.code, held.body);
    // the last ping has its own deadline
    await finished;
  }
}

type Finish = (exitCode: number, body: string) => void;

async function backupAndRecord(app: App, req: BackupRequest, finish: Finish = () => undefined): Promise<BackupResult> {
  const database = app.database.db.database;
  const startedAt = new Date().toISOString();
  const attempt = (ok: boolean, code: string | null) =>
    app.state.update(database, (s) => ({ ...s, last_attempt: { started_at: startedAt, finished_at: new Date().toISOString(), ok, code } }));
  let result: BackupResult;
  try {
    result = await runBackup(app, req);
  } catch (thrown) {
    const err = asBackupError(thrown);
    if (err.code === 'LOCKED') throw err; // another process is doing the work; nothing failed
    attempt(false, err.code);
    backupLogLine(false, `Backup failed: ${err.message}`);
    finish(ERROR_CODES[err.code].exit, failureLines('Backup', err));
    if (err.code === 'ABORTED') {
      log.warn('backup interrupted', { database, error: err.message });
      throw err;
    }
    log.error('backup failed', {
      database,
      code: err.code,
      error: err.message,
      hint: err.hint,
      stack: err.code === 'INTERNAL' ? (thrown as Error).stack : undefined,
    });
    await recordFailure(app, err);
    throw err;
  }

  const m = result.manifest;
  attempt(true, null);
  backupLogLine(true, `Backup completed - ${m.file} (${formatBytes(m.size_bytes)})`);
  finish(0, `Backup completed: ${m.file} (${formatBytes(m.size_bytes)}, sha256 ${m.sha256}), stored on ${result.stored.join(', ')}.\n`);
  const previous = app.state.read(database);
  app.state.update(database, (s) => ({
    ...s,
    last_seq: Math.max(s.last_seq ?? 0, m.seq ?? 0),
    failure_streak: 0,
    last_alert_at: null,
  }));
  if (shouldAlertRecovery(previous)) {
    await app.alerter.send({
      kind: 'backup-recovered',
      database,
      name: app.database.name,
      manifest: m,
      failedAttempts: previous.failure_streak,
      failingSince: previous.last_failure?.at,
    });
  }
  await alertDamaged(app, result.retention);
  for (const { target, error } of result.retentionErrors) {
    await app.alerter.send({ kind: 'problem', what: `Retention on ${target} for ${app.database.name} failed after a good backup`, error });
  }
  if (result.failedTargets.length > 0) {
    const names = result.failedTargets.map((f) => f.name).join(', ');
    backupLogLine(false, `Backup ${m.file} not stored on ${names}: ${result.failedTargets[0]!.error.message}`);
    await app.alerter.send({
      kind: 'problem',
      what: `Backup ${m.id} of ${app.database.name} is safe on ${result.stored.join(', ')} but could not be stored on ${names}`,
      error: new BackupError(result.failedTargets[0]!.error.code, result.failedTargets.map((f) => `${f.name}: ${f.error.message}`).join('\n'), {
        hint: `The copy on ${result.stored.join(', ')} is complete and checked. \`basement-backup sync\` (run by the daemon after every backup) copies it to ${names} once that works again; ${result.failedTargets[0]!.error.hint ?? ''}`,
      }),
    });
  }
  return result;
}

async function recordFailure(app: App, err: BackupError): Promise<void> {
  const { config } = app;
  const database = app.database.db.database;
  const now = new Date();
  const state = app.state.update(database, (s) => ({
    ...s,
    last_failure: { at: now.toISOString(), code: err.code, message: err.message },
    failure_streak: s.failure_streak + 1,
    failures_total: (s.failures_total ?? 0) + 1,
  }));
  const after = config.monitor.alertAfterFailures;
  if (!shouldAlertFailure(state, now, config.alert.repeatMinutes, after)) {
    const why = state.failure_streak < after ? `BACKUP_ALERT_AFTER_FAILURES is ${after}` : 'a failure alert went out recently';
    log.info(`failure alert suppressed (${why})`, { failure_streak: state.failure_streak, last_alert_at: state.last_alert_at });
    return;
  }
  const listings = await listEveryTarget(app, database);
  const newest = newestGood(listings);
  const sent = await app.alerter.send({
    kind: 'backup-failed',
    database,
    name: app.database.name,
    error: err,
    newestGood: newest?.manifest,
    newestOn: app.targets.length > 1 ? newest?.target.name : undefined,
    nextAttempt: nextRun(app.database.schedule, config.timezone, now),
    failureStreak: state.failure_streak,
    backupDir: listings.flatMap((l) => (l.state === 'done' ? [l.target.repo.location] : [])).join(', '),
    unlisted: listings.flatMap((l) => (l.state === 'done' ? [] : [l.target.name])),
  });
  if (sent) app.state.update(database, (s) => ({ ...s, last_alert_at: now.toISOString() }));
}

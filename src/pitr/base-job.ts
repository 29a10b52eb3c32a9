/**
 * A base backup as the CLI (and later the daemon's schedule) runs it: the backup, its log lines,
 * and the one alert path: a failure alerts (a run refused by the lock or stopped on request does
 * not), and so does a target that could not take a backup the others hold.
 */
import type { App } from '../app';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import { runBaseBackup, type BaseBackupResult } from './base-backup';

export async function performBaseBackup(app: App, opts: { signal?: AbortSignal } = {}): Promise<BaseBackupResult> {
  const name = app.database.name;
  let result: BaseBackupResult;
  try {
    result = await runBaseBackup(app, opts);
  } catch (thrown) {
    const err = asBackupError(thrown);
    if (err.code === 'LOCKED') throw err; // another process is taking it
    if (err.code === 'ABORTED') {
      log.warn('base backup interrupted', { database: name, error: err.message });
      throw err;
    }
    log.error('base backup failed', {
      database: name,
      code: err.code,
      error: err.message,
      hint: err.hint,
      stack: err.code === 'INTERNAL' ? (thrown as Error).stack : undefined,
    });
    await app.alerter.send({ kind: 'problem', what: `Base backup of ${name} failed`, error: err });
    throw err;
  }
  if (result.failedTargets.length > 0) {
    const names = result.failedTargets.map((f) => f.name).join(', ');
    const first = result.failedTargets[0]!.error;
    await app.alerter.send({
      kind: 'problem',
      what: `Base backup ${result.manifest.id} of ${name} is good on ${result.stored.join(', ')} but not on ${names}`,
      error: new BackupError(first.code, result.failedTargets.map((f) => `${f.name}: ${f.error.message}`).join('\n'), {
        hint: `Point-in-time recovery can use the copy on ${result.stored.join(', ')}. The next basebackup writes ${names} again once it works; ${first.hint ?? ''}`,
      }),
    });
  }
  return result;
}

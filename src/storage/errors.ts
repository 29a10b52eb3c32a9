import { BackupError } from '../errors';

/** A file-system or stream error as a BackupError that says what to do (a full disk is NO_SPACE). */
export function storageError(op: string, target: string, err: unknown): BackupError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') {
    return new BackupError('NO_SPACE', `the disk filled up while ${op} ${target}`, {
      hint: 'Free disk space or point BACKUP_DIR at a larger disk.',
      cause: err,
    });
  }
  const hint =
    code === 'EACCES' || code === 'EPERM' ? 'Make BACKUP_DIR writable by the user basement-backup runs as.' : 'Check BACKUP_DIR and the disk it is on.';
  return new BackupError('STORAGE', `${op} ${target} failed: ${code ?? String(err)}`, { hint, cause: err });
}

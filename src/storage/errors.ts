import { BackupError } from '../errors';
import { describeFsError } from '../util/dirs';

/** The local directory a storage error happened in, and the setting that names it. */
export interface StorageDir {
  setting: string;
  dir: string;
}

const DIR_ERRORS = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOTDIR']);

/**
 * A file-system or stream error as a BackupError that says what to do: a full disk is NO_SPACE;
 * a read-only file system, a missing permission or a file in the way names the directory, its
 * setting and the fix (STORAGE).
 */
export function storageError(op: string, target: string, err: unknown, where?: StorageDir): BackupError {
  const code = (err as NodeJS.ErrnoException).code;
  const setting = where?.setting ?? 'BACKUP_DIR';
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new BackupError('NO_SPACE', `the disk filled up while ${op} ${target}`, {
      hint: `Free disk space or point ${setting} at a larger disk.`,
      cause: err,
    });
  }
  if (where && code && DIR_ERRORS.has(code)) {
    const problem = describeFsError(err, where.setting, where.dir, target);
    return new BackupError('STORAGE', `${op} ${target} failed: ${problem.message}`, { hint: problem.hint, cause: err });
  }
  const hint =
    code === 'EACCES' || code === 'EPERM' ? `Make ${setting} writable by the user basement-backup runs as.` : `Check ${setting} and the disk it is on.`;
  return new BackupError('STORAGE', `${op} ${target} failed: ${code ?? String(err)}`, { hint, cause: err });
}

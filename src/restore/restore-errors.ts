import { BackupError } from '../errors';
import { classifyLibpqStderr } from '../pg/libpq';
import type { Program, ProgramExit } from '../pg/program';
import { notAsRecorded, type ChecksumResult } from '../pipeline/checksum';
import { redact } from '../redact';
import type { Manifest } from '../repository/manifest';
import type { RestoreArchiveOptions } from './archive-options';
import { recordedOf, storedChecksum } from './read-back';

/** The DAMAGED error for backup `m`'s stored bytes that do not match its manifest. */
export function damaged(m: Manifest, r: ChecksumResult): BackupError {
  return notAsRecorded(m.file, recordedOf(m), r);
}

export function aborted(): BackupError {
  return new BackupError('ABORTED', 'the restore was stopped', { hint: 'Run it again.' });
}

/**
 * A failed read of the stored object: what it proves of the backup (DAMAGED), or a storage
 * problem. A stream that cannot be decrypted or decompressed stopped the read early: the stored
 * bytes are then read to the end, so that a changed file is named as such (its checksum).
 */
export async function readProblem(o: RestoreArchiveOptions, readError: unknown): Promise<BackupError> {
  const undecodable = (readError as { code?: string }).code?.startsWith('Z_') || (readError instanceof BackupError && readError.code === 'DAMAGED');
  if (undecodable) {
    const whole = await storedChecksum(o).catch(() => undefined);
    if (whole && !whole.ok) return damaged(o.manifest, whole);
    if (readError instanceof BackupError) return readError;
    return new BackupError('DAMAGED', `${o.manifest.file} cannot be decompressed (${(readError as Error).message}), though its checksum matches`, {
      hint: 'It was written damaged. Use another backup.',
    });
  }
  if (readError instanceof BackupError && ['NO_KEY', 'KEY_FILE', 'CONFIG'].includes(readError.code)) return readError;
  return readFailed(o.repo.name, o.manifest.file, readError);
}

/** The program failed: the environment (refused, unreachable) or the restore itself. */
export function restoreFailed(o: RestoreArchiveOptions, run: Program, exit: ProgramExit): BackupError {
  const tool = o.manifest.format === 'custom' ? 'pg_restore' : 'psql';
  const tail = run.tail.join('\n');
  const first = run.withoutName(run.firstError() ?? `${tool} exited with ${exit.error ? -1 : exit.code}`);
  // Refused or unreachable: the environment failed, which says nothing about the backup.
  const environment = classifyLibpqStderr(tail);
  if (environment) {
    return new BackupError(environment, `${tool} could not restore into "${o.target}" on ${o.db.host}:${o.db.port}: ${first}`, {
      detail: tail,
      hint:
        environment === 'PRIVILEGE'
          ? `${o.db.user} needs that privilege on ${o.db.host}:${o.db.port}: grant it, or restore as the database's owner or a superuser (README: Database privileges).`
          : 'Check the database server and the settings for it (DB_* for restore, VERIFY_DB_* for drills).',
    });
  }
  return new BackupError('RESTORE_FAILED', `${tool} failed restoring into "${o.target}": ${first}`, {
    detail: tail,
    hint: /role .* does not exist/.test(tail)
      ? 'The dump refers to roles this server lacks: add --with-roles to recreate them first.'
      : `Read ${tool}'s messages above.`,
  });
}

/** The stored object could not be read: a storage problem (STORAGE, or ABORTED), which says nothing about the backup. */
export function readFailed(storage: string, file: string, err: unknown): BackupError {
  const code = err instanceof BackupError && err.code === 'ABORTED' ? 'ABORTED' : 'STORAGE';
  return new BackupError(code, `reading ${file} from ${storage} failed: ${redact((err as Error).message)}`, {
    hint: `Check the storage target ${storage}, then run it again.`,
    cause: err,
  });
}

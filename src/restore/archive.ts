import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BackupError } from '../errors';
import { stopSessions } from '../pg/activity';
import type { Program } from '../pg/program';
import type { ChecksumResult } from '../pipeline/checksum';
import { chainOf } from '../pipeline/names';
import type { RestoreArchiveOptions, RestoreArchiveResult } from './archive-options';
import { feed } from './feed';
import { aborted, damaged, readProblem, restoreFailed } from './restore-errors';
import { restoreTool } from './restore-tool';
import { decompressedCopy } from './seekable-copy';
import { writeTableList } from './table-list';
import { privateTempDir } from './temp-dirs';

/**
 * Restores a stored dump into the existing, empty database `target`, stopping at the first
 * error. What becomes of `target` after an error is the caller's to do and to say. The object
 * streams from its storage (local or remote) through sha256, decryption and decompression into
 * pg_restore (custom) or psql (plain); a checksum that does not match the manifest fails the
 * restore even when the restore tool did not notice.
 *
 * With `jobs` above 1 (custom format), pg_restore --jobs needs a file it can seek in: a local
 * archive it reads itself, or else a decompressed copy written first to a private temporary
 * directory (BACKUP_TEMP_DIR) when its free space allows; the copy's checksums are checked before
 * pg_restore starts, and the directory is removed afterwards, on failure and when stopped too.
 * Without room, the restore streams single-job, with a `note`.
 */
export async function restoreArchive(o: RestoreArchiveOptions): Promise<RestoreArchiveResult> {
  const m = o.manifest;
  const tool = m.format === 'custom' ? 'pg_restore' : 'psql';
  const appName = `basement-backup ${tool} ${process.pid}`;
  const wanted = m.format === 'custom' ? Math.max(1, o.jobs ?? 1) : 1;
  // Single-job, a custom archive on local disk is read by pg_restore itself (as fast as a plain
  // pg_restore), while a second read of the same (cached) file checks its sha256; anything else
  // streams in. With jobs, even such a file is copied: pg_dump wrote it to a pipe, without the
  // data offsets the jobs need to seek (see decompressedCopy).
  const plainArchive = m.format === 'custom' && chainOf(m.file).length === 0;
  const direct = plainArchive && wanted === 1 ? o.repo.localPath(m.file) : undefined;
  const scratch = privateTempDir(o.temp?.dir ?? os.tmpdir(), o.temp?.command ?? 'restore', m.database);
  try {
    const listFile = m.format === 'custom' && o.tables && o.tables.length > 0 ? await writeTableList(o, scratch) : undefined;
    let copy: { file: string; checksum: ChecksumResult } | undefined;
    let note: string | undefined;
    if (wanted > 1) {
      const made = await decompressedCopy(o, path.join(scratch, 'archive.dump'));
      if ('note' in made) note = made.note;
      else copy = made;
    }
    const file = direct ?? copy?.file;
    const jobs = file ? wanted : 1;
    const program = restoreTool(o, appName, { listFile, file, jobs });
    let run: Program;
    let fed: { checksum: ChecksumResult; readError: unknown };
    if (copy) {
      run = program();
      run.stdin.end();
      fed = { checksum: copy.checksum, readError: undefined };
    } else {
      ({ run, fed } = await feed(o, program, direct));
    }
    const { checksum, readError } = fed;
    const exit = await run.exited;
    if (o.signal?.aborted) throw aborted();
    if (!readError && !checksum.ok) throw damaged(m, checksum);
    if (exit.stalled) {
      await stopSessions(o.db, o.target, appName);
      throw new BackupError('STALLED', exit.stalled.message, { hint: exit.stalled.hint, detail: run.tail.join('\n') || undefined });
    }
    if (readError) throw await readProblem(o, readError);
    if (exit.code !== 0) throw restoreFailed(o, run, exit);
    return { checksum, jobs, note };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * restoreArchive, with `digest` run as soon as every table's data is loaded: beside pg_restore's
 * index and constraint builds, or after the restore when that moment cannot be told (psql,
 * `onDataLoaded` not called). `digest` must read each table in its own statement (autocommit):
 * a transaction holding its tables' locks could wait on a post-data build that waits on it. Not
 * run when the restore failed first; the restore's error wins over the digest's, which
 * `digested()` throws (so the caller may first record what the restore proved).
 */
export async function restoreAndDigest<T>(
  o: RestoreArchiveOptions,
  digest: () => Promise<T>,
): Promise<{ restored: RestoreArchiveResult; restoreMs: number; digested: () => T | undefined }> {
  const started = Date.now();
  let restoreMs = 0;
  let startDigest!: () => void;
  const dataLoaded = new Promise<void>((resolve) => (startDigest = resolve));
  let restoreFailed = false;
  const restoring = restoreArchive({
    ...o,
    onDataLoaded: () => {
      o.onDataLoaded?.();
      startDigest();
    },
  }).then(
    (r) => {
      restoreMs = Date.now() - started;
      startDigest();
      return r;
    },
    (err: unknown) => {
      restoreFailed = true;
      startDigest();
      throw err;
    },
  );
  const digesting = dataLoaded.then(() => (restoreFailed ? undefined : digest()));
  const [restored, digested] = await Promise.allSettled([restoring, digesting]);
  if (restored.status === 'rejected') throw restored.reason;
  return {
    restored: restored.value,
    restoreMs,
    digested: () => {
      if (digested.status === 'rejected') throw digested.reason;
      return digested.value;
    },
  };
}

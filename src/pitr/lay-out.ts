/**
 * Lays a stored base backup out as a data directory: its tar stream read back through the
 * pipeline (decrypted, decompressed, its stored checksum checked) into `tar -x`, then checked
 * against the backup_manifest pg_basebackup put in it (pg_verifybackup, when it is here).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Target } from '../app';
import { BackupError } from '../errors';
import type { PgBinaries } from '../pg/binaries';
import { findExecutable, outputOf, runProgram } from '../pg/program';
import type { DecodeContext } from '../pipeline/codecs';
import { innermost, unpack } from '../pipeline/read';
import { discard } from '../util/streams';
import type { BaseManifest } from '../wal/base-manifest';

/** Extracts base backup `b` of target `t` into the (empty) directory `dir`. */
export async function layOut(t: Target, b: BaseManifest, dir: string, ctx: DecodeContext, env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<void> {
  const tarBin = findExecutable('tar', env);
  if (!tarBin) throw new BackupError('CONFIG', 'tar is not on PATH', { hint: 'Install it (apt-get install tar).' });
  const storage = t.pitr().root;
  const o = {
    file: b.file,
    where: `${b.file} on ${t.name}`,
    open: () => storage.openRead(b.file),
    recorded: { sha256: b.sha256, size: b.size_bytes, plainSha256: b.plain_sha256 },
  };
  // the zstd program's output goes to tar directly (`zstd -dc | tar -x`): the data directory's
  // bytes never pass through this process, as with pg_restore (restore/feed.ts)
  const handOff = innermost(b.file)?.decodeForProgram?.(ctx, o);
  const unpacked = unpack(o, ctx, { leave: handOff ? 1 : 0 });
  let tar: ReturnType<typeof runProgram> | undefined;
  try {
    const stages = await unpacked.stages();
    const last = handOff?.();
    // started in the same turn as the zstd program, before a byte reaches it
    tar = runProgram({
      name: 'tar',
      file: tarBin,
      args: ['-x', '-f', '-', '-C', dir, '--no-same-owner'],
      env: { PATH: env.PATH ?? '' },
      ...(last ? { inputFrom: last.output } : { input: true }),
      signal,
    });
    await pipeline([...stages, ...(last ? [last.stage, discard()] : [tar.stdin])] as never, { signal });
  } catch (err) {
    if (!tar) throw err;
    tar.stop();
    await tar.exited;
    throw err instanceof BackupError
      ? err
      : new BackupError('DAMAGED', `${b.file} on ${t.name} cannot be read back: ${(err as Error).message}`, { cause: err });
  }
  const exit = await tar.exited;
  // the stored bytes first: damage explains whatever tar made of them
  const { checksum, problem } = unpacked.result();
  if (!checksum.ok) {
    throw new BackupError(
      'DAMAGED',
      `${b.file} on ${t.name} is damaged: its sha256 is ${checksum.sha256.slice(0, 12)}…, ${checksum.sizeBytes} bytes; the record says ${b.sha256.slice(0, 12)}…, ${b.size_bytes}`,
      { hint: 'Recover from another target (--target), or from an older base backup.' },
    );
  }
  if (exit.code !== 0)
    throw new BackupError('RESTORE_FAILED', `tar could not extract ${b.file}: ${tar.firstError() ?? `exit ${exit.code}`}`, {
      hint: 'Is the directory on a disk with room for the whole cluster?',
    });
  if (problem) throw problem;
  await fsp.chmod(dir, 0o700);
}

/** Checks the laid-out files against pg_basebackup's backup_manifest (file sizes and checksums), when pg_verifybackup is here. */
export async function verifyLaidOut(bins: PgBinaries, dir: string): Promise<'verified' | 'no pg_verifybackup'> {
  const file = path.join(bins.dir, 'pg_verifybackup');
  try {
    await fsp.access(file);
  } catch {
    return 'no pg_verifybackup';
  }
  // -n: the WAL is not in the directory (it comes from the archive during recovery)
  const p = runProgram({ name: 'pg_verifybackup', file, args: ['-n', '-q', dir], env: { PATH: bins.env.PATH ?? '' }, timeoutMs: 30 * 60_000 });
  const out = await outputOf(p);
  if (out.code !== 0) {
    throw new BackupError('DAMAGED', `the laid-out base backup does not match its backup_manifest: ${p.firstError() ?? `exit ${out.code}`}`, {
      hint: 'Recover from another target (--target), or from an older base backup.',
    });
  }
  return 'verified';
}

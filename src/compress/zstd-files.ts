/**
 * The zstd codec over several whole files in one run of the program: each file compressed by the
 * program itself into a directory, read back, and removed. For many files at once (the WAL
 * segments the receiver pushes when it is behind): one program start for all of them, and none
 * of their bytes through this process's pipes, where a start and two pipes per 16 MB segment cost
 * more than the compression itself (docs/pitr.md, "What can be lost"). The frames are those the stream
 * stage writes: the same program, level and threads.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { BackupError } from '../errors';
import { outputOf, runProgram, type FilterProgram } from '../pg/program';
import { zstdArgs } from './compression';

/**
 * Compresses each of `files` (absolute paths, distinct base names) into `dir` (which must exist and
 * be ours); returns each file's compressed bytes, by path. Throws when the program fails or passes
 * `timeoutMs`; nothing is left in `dir` either way.
 */
export async function zstdCompressFiles(
  zstd: FilterProgram,
  level: number | undefined,
  files: readonly string[],
  dir: string,
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<Map<string, Buffer>> {
  const outputs = files.map((f) => path.join(dir, `${path.basename(f)}.zst`));
  try {
    const p = runProgram({
      name: zstd.name,
      file: zstd.file,
      // -f: an output left by a run that was stopped is written over
      args: [...zstdArgs(level).filter((a) => a !== '-c'), '-f', '--output-dir-flat', dir, '--', ...files],
      env: zstd.env,
      timeoutMs: opts.timeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const exit = await outputOf(p);
    if (exit.code !== 0 || exit.error) {
      throw new BackupError(
        'STORAGE',
        `${zstd.file} could not compress ${files.length} file(s): ${p.firstError() ?? exit.error?.message ?? `exit ${exit.code ?? exit.signal}`}`,
        {
          hint: 'Check the zstd program (BACKUP_ZSTD_PROGRAM; 1.4.1 or later for --output-dir-flat).',
        },
      );
    }
    const out = new Map<string, Buffer>();
    for (const [i, f] of files.entries()) out.set(f, await fsp.readFile(outputs[i]!));
    return out;
  } finally {
    await Promise.all(outputs.map((o) => fsp.rm(o, { force: true })));
  }
}

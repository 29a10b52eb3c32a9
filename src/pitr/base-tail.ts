/**
 * The tar watch of a base backup that pg_basebackup compressed itself: the zstd program
 * decompresses a side branch of the stream and `tail` keeps only its last 256 KB, where
 * backup_manifest ends (its WAL-Ranges, its checksum) before the end-of-archive blocks. The
 * decompressed bytes pass between the two programs, never through this process; zstd -v says
 * how many there were.
 */
import type { Writable } from 'node:stream';
import { BackupError } from '../errors';
import { findExecutable, runProgram, type FilterProgram } from '../pg/program';
import type { TarFacts } from '../wal/base-tar';

const TAIL_BYTES = 256 * 1024;

export interface TailCheck {
  /** Write the compressed stream here. */
  stream: Writable;
  /** What the end of the tar showed, and the tar's size; once both programs have ended. */
  done: Promise<{ facts: TarFacts; bytes: number }>;
}

export function tarTailCheck(zstd: FilterProgram): TailCheck {
  const tailFile = findExecutable('tail', zstd.env) ?? '/usr/bin/tail';
  let bytes = 0;
  const unzstd = runProgram({
    name: zstd.name,
    file: zstd.file,
    args: ['-dc', '-v'],
    env: zstd.env,
    input: true,
    onStderr: (line) => {
      const m = /:\s*(\d+) bytes\s*$/.exec(line);
      if (m) bytes = Number(m[1]);
    },
  });
  const tail = runProgram({ name: 'tail', file: tailFile, args: ['-c', String(TAIL_BYTES)], env: { PATH: zstd.env.PATH ?? '' }, inputFrom: unzstd.stdout });
  const done = (async () => {
    const [end, unzstdExit] = await Promise.all([outputOfBytes(tail), unzstd.exited]);
    if (unzstdExit.code !== 0) {
      throw new BackupError(
        'BASEBACKUP_FAILED',
        `zstd could not read pg_basebackup's compressed stream back: ${unzstd.firstError() ?? `it exited with ${unzstdExit.signal ?? unzstdExit.code}`}`,
      );
    }
    const ended = end.length >= 1024 && end.subarray(end.length - 1024).every((b) => b === 0);
    const facts: TarFacts = { label: undefined, manifestTail: end.toString('latin1'), systemIdentifier: undefined, members: 0, ended };
    return { facts, bytes };
  })();
  done.catch(() => undefined);
  return { stream: unzstd.stdin, done };
}

async function outputOfBytes(program: ReturnType<typeof runProgram>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  program.stdout.on('data', (c: Buffer) => chunks.push(c));
  const exit = await program.exited;
  if (exit.code !== 0 || exit.error) {
    throw new BackupError(
      'BASEBACKUP_FAILED',
      `tail could not read the end of the base backup's tar: ${exit.error?.message ?? program.firstError() ?? exit.code}`,
    );
  }
  return Buffer.concat(chunks);
}

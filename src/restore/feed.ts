import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Program } from '../pg/program';
import type { ChecksumResult } from '../pipeline/checksum';
import { innermost, unpack } from '../pipeline/read';
import { discard } from '../util/streams';
import type { RestoreArchiveOptions } from './archive-options';
import { decodeContext, storedObject } from './read-back';

/**
 * Starts the program (`program`) and streams the stored object through the stored checksum (and
 * the read stages: decryption, decompression) into it, or, when it reads the file itself, reads
 * it alongside to check its sha256. A program that undoes the last codec (the zstd program) hands
 * its output to the program directly, as `zstd -dc | pg_restore` does. A failed read stops the program.
 */
export async function feed(
  o: RestoreArchiveOptions,
  program: (inputFrom?: Readable) => Program,
  direct: string | undefined,
): Promise<{ run: Program; fed: { checksum: ChecksumResult; readError: unknown } }> {
  const m = o.manifest;
  let fed = 0;
  // the program starts once the stages are ready; the bytes it is fed count as its progress
  const started: { run?: Program } = {};
  const stored = storedObject(o.repo, m);
  const ctx = decodeContext(o);
  const handOff = direct === undefined ? innermost(m.file)?.decodeForProgram?.(ctx, stored) : undefined;
  const unpacked = unpack(stored, ctx, {
    onBytes: direct
      ? undefined
      : (n) => {
          started.run?.progress(n - fed);
          fed = n;
          o.onProgress?.(n, m.size_bytes, 'bytes');
        },
    leave: handOff ? 1 : 0,
  });
  const stages = await unpacked.stages();
  const last = handOff?.();
  // started in the same turn as the last codec's program, before a byte reaches it: its output is the program's alone
  const run = (started.run = program(last?.output));
  if (last) stages.push(last.stage, discard());
  else if (direct) {
    run.stdin.end();
    stages.push(discard());
  } else {
    stages.push(run.stdin);
  }
  let readError: unknown;
  try {
    await pipeline(stages, { signal: o.signal });
  } catch (err) {
    readError = err;
    run.stop();
  }
  const { checksum, problem } = unpacked.result();
  return { run, fed: { checksum, readError: readError ?? problem } };
}

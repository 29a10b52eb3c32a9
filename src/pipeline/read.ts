import { pipeline as pipelineStreams, type Readable } from 'node:stream';
import type { BackupError } from '../errors';
import { hashTap } from '../util/streams';
import type { Codec, DecodeContext, StoredName } from './codecs';
import { checkStored, plainMismatch, storedTap, type ChecksumResult, type StoredDigest } from './checksum';
import { chainOf } from './names';

/** A stored object to read back: its name (its codecs), how to open it, and what was recorded of it. */
export interface StoredObject extends StoredName {
  /** The stored checksum recorded when it was written, and the sha256 of what its keyed codec was given. */
  recorded: StoredDigest & { plainSha256?: string | undefined };
}

export type Stage = NodeJS.ReadableStream | NodeJS.WritableStream;

/** The stored object as stages to run (see `unpack`), and afterwards what its checksums say. */
export interface Unpacked {
  /** The stages, from the stored bytes on; a key that does not fit fails here, before any byte is delivered. */
  stages(): Promise<Stage[]>;
  /**
   * After the stages ran: the stored checksum against the record, a DAMAGED `problem` when the keyed
   * codec undone gave other bytes than it was given, and the sha256 of those bytes (the stored
   * bytes' when there is no keyed codec).
   */
  result(): { checksum: ChecksumResult; problem: BackupError | undefined; plainSha256: string };
}

/**
 * The read side: the stored bytes through the stored checksum (reporting `onBytes`), then the
 * chain's read stages in reverse order, the sha256 of what a keyed codec gave taken behind it.
 * `leave` innermost codecs are left for the caller (a program that undoes the last one itself).
 */
export function unpack(o: StoredObject, ctx: DecodeContext, opts: { onBytes?: ((n: number) => void) | undefined; leave?: number } = {}): Unpacked {
  const undone = chainOf(o.file)
    .slice(opts.leave ?? 0)
    .reverse();
  const stored = storedTap(opts.onBytes);
  const plain = undone.some((c) => c.keyed) ? hashTap() : undefined;
  let result: ReturnType<Unpacked['result']> | undefined;
  return {
    stages: () => decodeAll(o, ctx, undone, [o.open(), stored.stage], plain?.stage),
    result() {
      if (result) return result;
      const checksum = checkStored(o.recorded, stored.result());
      const plainSha256 = plain ? plain.result().sha256 : checksum.sha256;
      const problem = plain && o.recorded.plainSha256 && plainSha256 !== o.recorded.plainSha256 ? plainMismatch(o.file) : undefined;
      return (result = { checksum, problem, plainSha256 });
    },
  };
}

/** The object's bytes with every codec undone, as one stream (no checksums: a table of contents read from its start). */
export async function openDecoded(o: StoredName, ctx: DecodeContext): Promise<Readable> {
  const stages = await decodeAll(o, ctx, chainOf(o.file).reverse(), [o.open()]);
  return stages.length === 1 ? (stages[0] as Readable) : (pipelineStreams(stages as never, () => undefined) as unknown as Readable);
}

/** Checks, before anything is created, that this machine can undo every codec of the object (a program, a key). */
export async function canDecode(o: StoredName, ctx: DecodeContext): Promise<void> {
  for (const c of chainOf(o.file)) await c.ready?.(ctx, o);
}

/** How many of the object's codecs, innermost first, are not keyed: what is left once the keyed ones are undone (`leave`). */
export function unkeyed(file: string): number {
  const chain = chainOf(file);
  const keyed = chain.findIndex((c) => c.keyed);
  return keyed === -1 ? chain.length : keyed;
}

/** The innermost codec of the object, the one undone last (zstd in "x.dump.zst.age"). */
export function innermost(file: string): Codec | undefined {
  return chainOf(file)[0];
}

/** `start` followed by the read stage of each of `codecs`, `plainTap` behind the keyed one; on failure, the stream so far is destroyed. */
async function decodeAll(o: StoredName, ctx: DecodeContext, codecs: readonly Codec[], start: Stage[], plainTap?: Stage): Promise<Stage[]> {
  let stages = start;
  try {
    for (const c of codecs) {
      if ('stage' in c.decode) {
        stages.push(c.decode.stage(ctx, o));
      } else {
        const source = stages.length === 1 ? (stages[0] as Readable) : (pipelineStreams(stages as never, () => undefined) as unknown as Readable);
        stages = [await c.decode.open(source, ctx, o)];
      }
      if (c.keyed && plainTap) stages.push(plainTap);
    }
    return stages;
  } catch (err) {
    (stages[0] as Readable).destroy(); // the stream so far: the stored bytes, or what the keyed codec gave
    throw err;
  }
}

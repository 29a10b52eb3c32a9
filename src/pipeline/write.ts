import { Transform, type Duplex, type Writable } from 'node:stream';
import { hashTap } from '../util/streams';
import type { Codec, EncodeContext } from './codecs';
import type { StoredDigest } from './checksum';
import { throughStages } from './stages';

/** A byte stream on its way through a chain of codecs into storage. */
export interface Packed {
  /** Write the bytes here. */
  readonly input: Writable;
  /** Resolves once the destination has finished; rejects with the first stage's or the destination's error. Await it after the producer. */
  readonly done: Promise<void>;
  /** How many bytes were written into `input` (after `done`). */
  inputSize(): number;
  /** The stored checksum: the sha256 and size of what reached the destination (after `done`). */
  stored(): StoredDigest;
  /** The sha256 of what the keyed codec was given (the manifest's `plain_sha256`); undefined without one. */
  plainSha256(): string | undefined;
}

/**
 * The write side: what is written into `input` passes through the write stages of `chain`, in
 * order, into `out`; its size is counted on the way in, the stored checksum taken on the way out,
 * and the sha256 of what a keyed codec (encryption) is given in front of it. With no codec, the
 * stored checksum's tap is the only stage and counts the bytes too.
 */
export async function pack(chain: readonly Codec[], ctx: EncodeContext, out: Writable): Promise<Packed> {
  const counted = chain.length > 0 ? sizeTap() : undefined;
  const stages: Duplex[] = counted ? [counted.stage] : [];
  let plain: ReturnType<typeof hashTap> | undefined;
  try {
    for (const codec of chain) {
      if (codec.keyed && !plain) {
        plain = hashTap();
        stages.push(plain.stage);
      }
      stages.push(await codec.encode(ctx));
    }
  } catch (err) {
    for (const s of stages) s.destroy(); // a program stage started already stops
    throw err;
  }
  const staged = throughStages(stages, out, { checksum: true });
  let plainSha256: string | undefined;
  return {
    input: staged.stream,
    done: staged.done,
    inputSize: () => counted?.size() ?? staged.digest()!.size,
    stored: () => staged.digest()!,
    plainSha256: () => (plainSha256 ??= plain?.result().sha256),
  };
}

/** A pass-through stage that counts the bytes (and touches none of them). */
function sizeTap(): { stage: Transform; size(): number } {
  let size = 0;
  const stage = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      cb(null, chunk);
    },
  });
  return { stage, size: () => size };
}

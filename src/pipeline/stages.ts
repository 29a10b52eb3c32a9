import type { Duplex, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { storedTap, type StoredDigest } from './checksum';

/** Where a producer writes so that its bytes pass through some stages into a destination. */
export interface Staged {
  /** Write here: the first stage, or the destination itself when there are no stages. */
  readonly stream: Writable;
  /** Resolves when the destination has finished; rejects with the first stage's or the destination's error. */
  readonly done: Promise<void>;
  /** The sha256 and size of what reached the destination (after `done`); undefined when there are no stages. */
  digest(): StoredDigest | undefined;
}

/**
 * `stages` (compression, encryption …) in front of `out`, in order, the stored checksum taken
 * behind the last. With no stages the producer writes into `out` directly, and pays nothing,
 * unless `checksum` asks for the digest anyway: the tap is then the one stage. An error anywhere
 * destroys the whole chain; the producer may have finished writing before the destination fails,
 * so await `done` after it.
 */
export function throughStages(stages: Duplex[], out: Writable, opts: { checksum?: boolean } = {}): Staged {
  if (stages.length === 0 && !opts.checksum) return { stream: out, done: Promise.resolve(), digest: () => undefined };
  const tap = storedTap();
  const chain = [...stages, tap.stage];
  const done = pipeline([...chain, out]);
  done.catch(() => undefined); // awaited after the producer; a failure of the producer comes first
  let sum: StoredDigest | undefined;
  return { stream: chain[0]!, done, digest: () => (sum ??= tap.result()) };
}

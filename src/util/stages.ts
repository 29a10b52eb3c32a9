import type { Duplex, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { hashTap } from './streams';

/** Where a producer writes so that its bytes pass through some stages into a destination. */
export interface Staged {
  /** Write here: the first stage, or the destination itself when there are no stages. */
  readonly stream: Writable;
  /** Resolves when the destination has finished; rejects with the first stage's or the destination's error. */
  readonly done: Promise<void>;
  /** The sha256 and size of what reached the destination (after `done`); undefined when there are no stages. */
  digest(): { sha256: string; size: number } | undefined;
}

/**
 * `stages` (compression, encryption …) in front of `out`, in order. With no stages the producer
 * writes into `out` directly, and pays nothing. An error anywhere destroys the whole chain; the
 * producer may have finished writing before the destination fails, so await `done` after it.
 */
export function throughStages(stages: Duplex[], out: Writable): Staged {
  if (stages.length === 0) return { stream: out, done: Promise.resolve(), digest: () => undefined };
  const tap = hashTap();
  const done = pipeline([...stages, tap.stage, out]);
  done.catch(() => undefined); // awaited after the producer; a failure of the producer comes first
  let sum: { sha256: string; size: number } | undefined;
  return { stream: stages[0]!, done, digest: () => (sum ??= tap.result()) };
}

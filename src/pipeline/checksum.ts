/**
 * The stored object's checksum: the sha256 and size of its bytes exactly as stored, after the
 * last codec. Taken here on the way in (`storedTap` behind the write stages), and checked here on
 * the way out (`storedTap` in front of the read stages, `checkStored` against the record); a copy
 * or a check of the bytes alone (`readStoredDigest`) needs no key.
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupError } from '../errors';
import { discard, hashTap } from '../util/streams';

/** The sha256 and size of a stored object's bytes. */
export interface StoredDigest {
  sha256: string;
  size: number;
}

/** A stored object's bytes, checked against what was recorded when it was written. */
export interface ChecksumResult {
  ok: boolean;
  sha256: string;
  sizeBytes: number;
}

/** A pass-through stage that takes the sha256 and size of what flows through it; `result()` once, at the end. */
export function storedTap(onBytes?: (total: number) => void): ReturnType<typeof hashTap> {
  return hashTap(onBytes);
}

/** `actual` against `recorded`: both the sha256 and the size must match. */
export function checkStored(recorded: StoredDigest, actual: StoredDigest): ChecksumResult {
  return { ok: actual.sha256 === recorded.sha256 && actual.size === recorded.size, sha256: actual.sha256, sizeBytes: actual.size };
}

/** The digest of everything `source` delivers, read through once. */
export async function readStoredDigest(source: Readable, signal?: AbortSignal): Promise<StoredDigest> {
  const tap = storedTap();
  await pipeline(source, tap.stage, discard(), { signal });
  return tap.result();
}

/** The DAMAGED error for stored bytes that do not match their record. */
export function notAsRecorded(file: string, recorded: StoredDigest, r: ChecksumResult): BackupError {
  return new BackupError(
    'DAMAGED',
    `${file} does not match its manifest (sha256 ${r.sha256.slice(0, 16)}…, ${r.sizeBytes} bytes; recorded ${recorded.sha256.slice(0, 16)}…, ${recorded.size} bytes)`,
    { hint: 'The file was changed or damaged after the backup (bit rot, truncation, tampering). Use another backup and check the disk.' },
  );
}

/** The DAMAGED error for an object whose keyed codec, undone, gave other bytes than it was given. */
export function plainMismatch(file: string): BackupError {
  return new BackupError('DAMAGED', `${file} decrypts to other bytes than the backup wrote (sha256 of the plaintext differs)`, {
    hint: 'The manifest or the file was changed after the backup. Use another backup.',
  });
}

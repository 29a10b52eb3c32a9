import { BLK_BLOBS, BLK_DATA, K_OFFSET_POS_NOT_SET, K_OFFSET_POS_SET, type ArchiveSummary } from './archive-format';

/**
 * The writes that give an archive pg_dump wrote to a pipe the data offsets it writes when it can
 * seek in its output (pg_backup_custom.c: _WriteExtraToc, rewritten at _CloseArchive): for each
 * entry whose offset is "not set", the flag "set" and the position of its data block, in the
 * offset field of the same size. pg_restore --jobs needs them: without, each job scans the file
 * for its data, slower than one job. Each write is `bytes` at position `at`.
 */
export function seekableOffsets(summary: ArchiveSummary): { at: number; bytes: Buffer }[] {
  return unsetOffsets(summary).map(([at, pos]) => ({ at, bytes: offsetField(summary.offSize, pos) }));
}

/** [offset field position, data block position] of each entry with data whose offset is "not set". */
function unsetOffsets(summary: ArchiveSummary): [number, number][] {
  const out: [number, number][] = [];
  for (const e of summary.entries) {
    if (!e.hasData || e.dataPos === undefined || e.offsetField.flag !== K_OFFSET_POS_NOT_SET) continue;
    out.push([e.offsetField.at, e.dataPos]);
  }
  return out;
}

/** An offset field saying "set" to `pos`: the flag, then `size` bytes little-endian. */
function offsetField(size: number, pos: number): Buffer {
  const bytes = Buffer.alloc(1 + size);
  bytes[0] = K_OFFSET_POS_SET;
  let v = BigInt(pos);
  for (let i = 1; i <= size; i++, v >>= 8n) bytes[i] = Number(v & 0xffn);
  return bytes;
}

/**
 * The data offsets of an archive as a backup's manifest records them (`data_offsets`): the
 * offsets' size and, for each entry that has data, [its offset field's position, its data block's
 * position]. Undefined when there is nothing to record, or more than `max` entries (a manifest stays small).
 */
export function recordedOffsets(summary: ArchiveSummary, max = 100_000): DataOffsets | undefined {
  const at = unsetOffsets(summary);
  if (at.length === 0 || at.length > max) return undefined;
  return { size: summary.offSize, at };
}

/** Where an archive's data blocks are: see recordedOffsets. */
export interface DataOffsets {
  size: number;
  at: [number, number][];
}

/**
 * The writes of seekableOffsets from recorded offsets, each checked against the archive `file`
 * first: its offset field says "not set" and its data block's first byte is a data block's type.
 * Undefined when one does not fit (the caller then reads the archive instead).
 */
export async function offsetWrites(
  fh: { read(buf: Buffer, off: number, len: number, pos: number): Promise<{ bytesRead: number }> },
  fileSize: number,
  rec: DataOffsets,
): Promise<{ at: number; bytes: Buffer }[] | undefined> {
  if (!Number.isInteger(rec.size) || rec.size < 1 || rec.size > 8 || !Array.isArray(rec.at)) return undefined;
  const one = Buffer.alloc(1);
  const byteAt = async (pos: number) => ((await fh.read(one, 0, 1, pos)).bytesRead === 1 ? one[0] : undefined);
  const out: { at: number; bytes: Buffer }[] = [];
  for (const pair of rec.at) {
    if (!Array.isArray(pair) || pair.length !== 2) return undefined;
    const [at, pos] = pair;
    if (!Number.isSafeInteger(at) || !Number.isSafeInteger(pos) || at < 0 || pos <= at || at + 1 + rec.size > fileSize || pos >= fileSize) return undefined;
    if ((await byteAt(at)) !== K_OFFSET_POS_NOT_SET) return undefined;
    const type = await byteAt(pos);
    if (type !== BLK_DATA && type !== BLK_BLOBS) return undefined;
    out.push({ at, bytes: offsetField(rec.size, pos) });
  }
  return out;
}

import fs from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ArchiveSummary } from '../dump/archive-format';
import { offsetWrites, seekableOffsets } from '../dump/archive-offsets';
import { CustomArchiveReader } from '../dump/custom-archive';
import { BackupError } from '../errors';
import { log } from '../logger';
import type { ChecksumResult } from '../pipeline/checksum';
import { streamCompressionOf } from '../pipeline/names';
import { innermost, unpack } from '../pipeline/read';
import type { Manifest } from '../repository/manifest';
import { formatBytes } from '../util/format';
import { discard } from '../util/streams';
import type { RestoreArchiveOptions } from './archive-options';
import { decodeContext, storedObject } from './read-back';
import { aborted, damaged, readProblem } from './restore-errors';

/**
 * The archive pg_restore --jobs can read: the stored object decrypted and decompressed into
 * `file` (0600, in a 0700 directory), its checksums checked. Returns a note instead when the
 * temporary directory has no room for it (its size plus BACKUP_MIN_FREE_MB), or filled up meanwhile.
 */
export async function decompressedCopy(o: RestoreArchiveOptions, file: string): Promise<{ file: string; checksum: ChecksumResult } | { note: string }> {
  const m = o.manifest;
  const dir = path.dirname(file);
  // pg_dump's output size; before it was recorded, an archive not compressed in the stream is about its stored size
  const needed = m.dump_size_bytes ?? (streamCompressionOf(m.file) === undefined ? m.size_bytes : undefined);
  const reserve = o.temp?.reserveBytes ?? 0;
  const free = await fs.promises.statfs(dir).then(
    (st) => st.bavail * st.bsize,
    () => undefined,
  );
  const single = (why: string) => {
    const note = `restored single-job: ${why} (pg_restore --jobs needs a file it can seek in; set BACKUP_TEMP_DIR to a disk with room)`;
    log.info(note); // the result carries it to the operator
    return { note };
  };
  if (needed === undefined) return single("the backup's decompressed size is not recorded");
  if (free !== undefined && free < needed + reserve) {
    return single(
      `${path.dirname(dir)} has ${formatBytes(free)} free, and a decompressed copy needs ${formatBytes(needed)} plus the ${formatBytes(reserve)} reserve`,
    );
  }
  // a program that undoes the last codec (zstd) writes the file itself; else it is written from here
  const stored = storedObject(o.repo, m);
  const ctx = decodeContext(o);
  const fd = fs.openSync(file, 'wx', 0o600);
  let toFile: Duplex | undefined;
  try {
    toFile = innermost(m.file)?.decodeToFile?.(ctx, fd, stored);
  } finally {
    fs.closeSync(fd); // a started program has its own copy of it; else the file is written from here
  }
  const unpacked = unpack(stored, ctx, { onBytes: (n) => o.onProgress?.(n, m.size_bytes, 'bytes'), leave: toFile ? 1 : 0 });
  let readError: unknown;
  try {
    const stages = await unpacked.stages();
    await pipeline([...stages, ...(toFile ? [toFile, discard()] : [fs.createWriteStream(file, { flags: 'w' })])], { signal: o.signal });
  } catch (err) {
    toFile?.destroy();
    readError = err;
  }
  if (o.signal?.aborted) throw aborted();
  const full = (readError as NodeJS.ErrnoException | undefined)?.code;
  if (full === 'ENOSPC' || full === 'NO_SPACE') {
    fs.rmSync(file, { force: true });
    return single(`${path.dirname(dir)} filled up while the decompressed copy was written`);
  }
  const { checksum, problem } = unpacked.result();
  if (readError) throw await readProblem(o, readError);
  if (!checksum.ok) throw damaged(m, checksum);
  if (problem) throw problem;
  await addOffsets(file, m);
  return { file, checksum };
}

/**
 * Writes into the copy the data offsets pg_dump leaves out when it writes to a pipe, so that
 * pg_restore's jobs seek straight to their tables' data (see seekableOffsets): those the manifest
 * recorded (data_offsets), each checked against the copy; else, or when one does not fit, the
 * archive is read once through one buffer to find them, data skipped by its chunk lengths.
 */
async function addOffsets(file: string, m: Manifest): Promise<void> {
  const fh = await fs.promises.open(file, 'r+');
  try {
    const recorded = m.data_offsets ? await offsetWrites(fh, (await fh.stat()).size, m.data_offsets) : undefined;
    if (!recorded && m.data_offsets) log.info('the data offsets the manifest records do not fit the archive: reading it to find them', { id: m.id });
    for (const { at, bytes } of recorded ?? (await readOffsets(fh, m))) await fh.write(bytes, 0, bytes.length, at);
  } finally {
    await fh.close();
  }
}

/** The data offsets of the archive open as `fh`, read from its start (seekableOffsets). */
async function readOffsets(fh: fs.promises.FileHandle, m: Manifest): Promise<{ at: number; bytes: Buffer }[]> {
  const archive = new CustomArchiveReader();
  const buf = Buffer.allocUnsafe(1024 * 1024);
  for (let pos = 0; ;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) break;
    pos += bytesRead;
    archive.write(buf.subarray(0, bytesRead));
  }
  let summary: ArchiveSummary;
  try {
    summary = archive.end();
  } catch (err) {
    throw new BackupError('DAMAGED', `${m.file} does not hold a complete archive: ${(err as Error).message}`, {
      hint: 'Its checksum matches, so it was written so. Use another backup.',
    });
  }
  return seekableOffsets(summary);
}

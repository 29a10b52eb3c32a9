/**
 * `wal-push`: stores one WAL file PostgreSQL has completed on the targets, through the pipeline,
 * and succeeds only when every required target holds it. A second push of the same content is a
 * success; a different content under an archived name, or a segment of another cluster, is
 * refused (WAL_REFUSED); nothing archived is ever overwritten.
 */
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { App, Target } from '../app';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import { putOptionsNow } from '../repository/locking';
import { foreignProblem, identityOf, WalArchive, walObjectName } from '../wal/archive';
import { readSegmentHeader, walKind, type SegmentHeader } from '../wal/segment';
import { encodeWhole, pitrChain } from './encode';

export interface PushOutcome {
  wal: string;
  /** Targets that stored it now. */
  stored: string[];
  /** Targets that held the same content already. */
  already: string[];
  /** Targets that failed, with why. */
  failed: { target: string; error: BackupError }[];
}

/** The targets a WAL file must reach (WAL_REQUIRED_TARGETS; every one when unset). */
export function requiredTargets(app: App): Target[] {
  const names = app.config.pitr.requiredTargets;
  if (!names) return app.targets;
  return names.map((n) => app.target(n));
}

/**
 * Stores WAL file `file` on every target; throws when a required target does not hold it
 * afterwards. `compressing`: the file through the chain's compression codec, coming (zstd over a
 * batch of files, spool-pusher.ts; undefined when that failed), while the file is hashed here;
 * the rest of the chain (encryption) is applied to it here.
 */
export async function pushWal(app: App, file: string, compressing?: Promise<Buffer | undefined>): Promise<PushOutcome> {
  const wal = path.basename(file);
  const kind = walKind(wal);
  if (!kind) {
    throw new BackupError('CONFIG', `"${wal}" is not the name of a WAL file`, {
      hint: "Set archive_command to 'basement-backup wal-push %p' (PostgreSQL puts the file's path in place of %p).",
    });
  }
  // being compressed: the file is only hashed, meanwhile, a piece at a time (no 16 MB buffer per push)
  const hashing = compressing ? hashWal(file) : undefined;
  hashing?.catch(() => undefined); // awaited below, or not needed when the compression failed
  const compressed = await compressing;
  const read: WalRead = compressed && hashing ? await hashing : await readWal(file);
  const { sha256, size, head } = read;
  const header = kind === 'segment' || kind === 'partial' ? readSegmentHeader(head) : undefined;
  if ((kind === 'segment' || kind === 'partial') && (!header || header.segmentSize !== size)) {
    throw new BackupError(
      'WAL_REFUSED',
      `${wal} is not a complete WAL segment (${size} bytes${header ? `, the header says ${header.segmentSize}` : ', no segment header'})`,
      {
        hint: 'Only PostgreSQL (archive_command) or the WAL receiver should push WAL files.',
      },
    );
  }
  const { chain, ctx } = pitrChain(app);
  let encoded: Promise<Buffer> | undefined;
  const encode = () =>
    (encoded ??= compressed
      ? encodeWhole(
          chain.filter((c) => c.role !== 'compression'),
          ctx,
          compressed,
        )
      : encodeWhole(chain, ctx, read.data!));
  const outcome: PushOutcome = { wal, stored: [], already: [], failed: [] };
  await Promise.all(
    app.targets.map(async (t) => {
      try {
        const archive = new WalArchive(t.name, t.pitr());
        if (header) await checkIdentity(archive, header, wal);
        const copies = await archive.find(wal);
        if (copies.some((c) => c.sha256 === sha256)) {
          outcome.already.push(t.name);
          return;
        }
        if (copies.length > 0) {
          throw new BackupError(
            'WAL_REFUSED',
            `a different ${wal} is archived on ${t.name} already (sha256 ${copies[0]!.sha256.slice(0, 12)}…, this one ${sha256.slice(0, 12)}…)`,
            {
              hint: 'Nothing was overwritten. Two clusters may be archiving to one place, or this server was restored without a new timeline: check archive_command on every server, and see docs/pitr.md.',
            },
          );
        }
        await storeObject(t, walObjectName(wal, sha256, chain), await encode());
        outcome.stored.push(t.name);
      } catch (err) {
        outcome.failed.push({ target: t.name, error: asBackupError(err) });
      }
    }),
  );
  const required = new Set(requiredTargets(app).map((t) => t.name));
  const missing = outcome.failed.filter((f) => required.has(f.target));
  for (const f of outcome.failed) log.warn('WAL file not stored', { wal, target: f.target, error: f.error.message });
  if (missing.length > 0) throw missing.find((f) => f.error.code === 'WAL_REFUSED')?.error ?? missing[0]!.error;
  log.info('WAL file archived', { wal, stored: outcome.stored.join(',') || undefined, already: outcome.already.join(',') || undefined });
  return outcome;
}

/** A WAL file's content hash, its size and its first bytes (the segment header); `data`, the whole file, when it was read whole. */
interface WalRead {
  sha256: string;
  size: number;
  head: Buffer;
  data?: Buffer;
}

/** The whole file, for the pipeline to compress. */
async function readWal(file: string): Promise<WalRead> {
  const data = await readable(file, () => fsp.readFile(file));
  return { data, sha256: createHash('sha256').update(data).digest('hex'), size: data.length, head: data };
}

const HASH_CHUNK = 1 << 20;

/** The file hashed 1 MB at a time. */
async function hashWal(file: string): Promise<WalRead> {
  return readable(file, async () => {
    const fh = await fsp.open(file, 'r');
    try {
      const hash = createHash('sha256');
      const buf = Buffer.allocUnsafe(HASH_CHUNK);
      let head = Buffer.alloc(0);
      let size = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, HASH_CHUNK, size);
        if (bytesRead === 0) break;
        if (size === 0) head = Buffer.from(buf.subarray(0, Math.min(bytesRead, 512)));
        hash.update(buf.subarray(0, bytesRead));
        size += bytesRead;
      }
      return { sha256: hash.digest('hex'), size, head };
    } finally {
      await fh.close();
    }
  });
}

async function readable<T>(file: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    throw new BackupError('NOT_FOUND', `cannot read ${file}: ${(err as Error).message}`, {
      hint: 'wal-push runs as the user PostgreSQL runs as (or the WAL receiver); that user must be able to read the file.',
    });
  }
}

/** Records the cluster on the first push; refuses a segment of another one afterwards. */
async function checkIdentity(archive: WalArchive, h: SegmentHeader, wal: string): Promise<void> {
  const id = await archive.identity();
  if (!id) {
    await archive.setIdentity(identityOf(h, new Date()));
    return;
  }
  const problem = foreignProblem(h, id);
  if (problem) {
    throw new BackupError('WAL_REFUSED', `${wal} does not belong in the archive on ${archive.target}: ${problem}`, {
      hint: 'Two clusters point at one archive. Give each configured database its own entry (its own pitr/NAME/), or archive this cluster with its own --db.',
    });
  }
}

/** Writes `bytes` as object `name` of the target's WAL storage: invisible until committed, durable after. */
async function storeObject(t: Target, name: string, bytes: Buffer): Promise<void> {
  const wal = t.pitr().wal;
  // on a target with Object Lock, a WAL file is locked like a backup taken now: the key on this server cannot delete it
  const writer = await wal.createWriter(name, putOptionsNow(t.repo.lock, wal.locks));
  try {
    await new Promise<void>((resolve, reject) => {
      writer.stream.once('error', reject);
      writer.stream.end(bytes, () => resolve());
    });
    await writer.commit();
  } catch (err) {
    await writer.abort().catch(() => undefined);
    throw err;
  }
}

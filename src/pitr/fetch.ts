/**
 * `wal-fetch`: delivers one archived WAL file to PostgreSQL's recovery (restore_command), checked
 * against the sha256 in its name. "absent" only when every target answered and none holds it:
 * PostgreSQL then takes the file as not archived (which may end recovery there). Any other
 * failure, after a few tries, is an error, for which the command exits so that recovery stops
 * instead of ending early at the wrong point.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { App, Target } from '../app';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import type { DecodeContext } from '../pipeline/codecs';
import { chainOf } from '../pipeline/names';
import { unpack } from '../pipeline/read';
import { WalArchive, type ArchivedWal } from '../wal/archive';
import { walKind } from '../wal/segment';
import { pitrDecodeContext } from './encode';

export type FetchOutcome = { delivered: true; target: string } | { delivered: false };

const TRIES = 3;

/** Fetches WAL file `wal` into `dest` (written whole, then renamed), from the first target that has it. */
export async function fetchWal(app: App, wal: string, dest: string, opts: { retryDelayMs?: number } = {}): Promise<FetchOutcome> {
  if (!walKind(wal))
    throw new BackupError('CONFIG', `"${wal}" is not the name of a WAL file`, { hint: "Set restore_command to 'basement-backup wal-fetch %f %p'." });
  const errors: BackupError[] = [];
  const ctx = pitrDecodeContext(app, wal);
  for (const t of app.targets) {
    const got = await withTries(() => fetchFrom(t, wal, dest, ctx), opts.retryDelayMs ?? 1000);
    if (got === 'delivered') return { delivered: true, target: t.name };
    if (got instanceof BackupError) errors.push(got);
  }
  if (errors.length === 0) {
    const later = walKind(wal) === 'segment' ? await laterOnTimeline(app.targets, wal) : undefined;
    if (later) {
      // "absent" would end recovery here, before WAL that is archived: a gap, which must stop it
      throw new BackupError('NOT_FOUND', `${wal} is missing from the archive, but later WAL of its timeline is there (${later}): a gap`, {
        hint: 'Recovery stops here rather than end early. Another target may hold it (--target); otherwise recover to a point before the gap, or from a base backup taken after it (docs/pitr.md).',
      });
    }
    return { delivered: false };
  }
  const first = errors[0]!;
  throw new BackupError(first.code, `${wal} could not be fetched: ${first.message}`, { hint: first.hint, cause: first });
}

/** The first archived segment of `wal`'s timeline after it, on any target (same log, or the next): undefined when there is none. */
async function laterOnTimeline(targets: readonly Target[], wal: string): Promise<string | undefined> {
  const nextLog = (parseInt(wal.slice(8, 16), 16) + 1).toString(16).toUpperCase().padStart(8, '0');
  for (const t of targets) {
    const archive = new WalArchive(t.name, t.pitr());
    for (const prefix of [wal.slice(0, 16), wal.slice(0, 8) + nextLog]) {
      const later = (await archive.listPrefix(prefix)).find((a) => walKind(a.wal) === 'segment' && a.wal > wal);
      if (later) return later.wal;
    }
  }
  return undefined;
}

/** Runs `attempt` up to TRIES times while it fails; its last error is returned, not thrown. */
async function withTries(attempt: () => Promise<'delivered' | 'absent'>, delayMs: number): Promise<'delivered' | 'absent' | BackupError> {
  let last: BackupError | undefined;
  for (let i = 0; i < TRIES; i++) {
    try {
      return await attempt();
    } catch (err) {
      last = asBackupError(err);
      if (last.code === 'NO_KEY' || last.code === 'KEY_FILE' || last.code === 'WAL_REFUSED') break;
      if (i < TRIES - 1) await new Promise((r) => setTimeout(r, delayMs * (i + 1)));
    }
  }
  return last!;
}

async function fetchFrom(t: Target, wal: string, dest: string, ctx: () => Promise<DecodeContext>): Promise<'delivered' | 'absent'> {
  const copies = await new WalArchive(t.name, t.pitr()).find(wal);
  if (copies.length === 0) return 'absent';
  if (new Set(copies.map((c) => c.sha256)).size > 1) {
    throw new BackupError('WAL_REFUSED', `${t.name} holds ${copies.length} different copies of ${wal}`, {
      hint: 'Two clusters may have archived to one place. Recover from another target, or see docs/pitr.md.',
    });
  }
  await deliver(t, copies[0]!, dest, await ctx());
  log.info('WAL file fetched', { wal, target: t.name });
  return 'delivered';
}

/** Streams the stored object through the read side into `dest`.partial, checks its sha256, then renames it to `dest`. */
async function deliver(t: Target, a: ArchivedWal, dest: string, ctx: DecodeContext): Promise<void> {
  const storage = t.pitr().wal;
  const o = { file: a.object, where: `${a.object} on ${t.name}`, open: () => storage.openRead(a.object), recorded: { sha256: '', size: a.size } };
  const unpacked = unpack(o, ctx);
  const hash = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  const tmp = `${dest}.basement-partial`;
  try {
    await pipeline([...(await unpacked.stages()), tap, fs.createWriteStream(tmp, { mode: 0o600 })] as never);
    const sha = hash.digest('hex');
    if (sha !== a.sha256) {
      throw new BackupError(
        'DAMAGED',
        `${a.object} on ${t.name} is damaged: its content's sha256 is ${sha.slice(0, 12)}…, its name says ${a.sha256.slice(0, 12)}…`,
        {
          hint: 'Another target may hold a good copy (it is tried next).',
        },
      );
    }
    await fsp.rename(tmp, dest);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err instanceof BackupError
      ? err
      : new BackupError(
          'DAMAGED',
          `${a.object} on ${t.name} cannot be read back (${
            chainOf(a.object)
              .map((c) => c.name)
              .join(' + ') || 'stored plain'
          }): ${(err as Error).message}`,
          { cause: err },
        );
  }
}

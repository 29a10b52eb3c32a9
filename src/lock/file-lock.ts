import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BackupError } from '../errors';
import { storageError } from '../storage/errors';
import { makeDir } from '../util/dirs';
import type { Releasers } from '../util/releasers';
import { ownerAlive as alive, thisProcess, type Owner } from '../util/owner';

export interface LockInfo extends Owner {
  purpose: string;
  acquired_at: string;
}

export interface Lock {
  readonly path: string;
  release(): void;
}

function readInfo(file: string): LockInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
  } catch {
    return undefined;
  }
}

/**
 * An exclusive lock shared by every basement-backup process on this host: a file created with
 * O_EXCL that records its owner's pid. A lock whose owner process is gone (a crash, kill -9) is
 * stale and is taken over; the takeover renames the stale file away first, so two processes
 * that both find it stale cannot both win. A lock that cannot be written (a read-only file
 * system, no permission) is a STORAGE error naming the directory and `setting`.
 */
export function acquireLock(file: string, purpose: string, setting = 'BACKUP_STATE_DIR'): Lock {
  const where = { setting, dir: path.dirname(file) };
  try {
    makeDir(where.dir);
  } catch (err) {
    throw storageError('creating', where.dir, err, where);
  }
  const info: LockInfo = { ...thisProcess(), purpose, acquired_at: new Date().toISOString() };
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      writeLockFile(file, JSON.stringify(info));
      let released = false;
      return {
        path: file,
        release() {
          if (released) return;
          released = true;
          const owner = readInfo(file);
          if (owner?.pid === process.pid) fs.rmSync(file, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw storageError('creating the lock', file, err, where);
    }
    const owner = readInfo(file);
    const stale = owner === undefined ? lockAgeMs(file) > 10_000 : !alive(owner);
    if (!stale) {
      const who = owner ? `${owner.purpose} (pid ${owner.pid} on ${owner.host}, since ${owner.acquired_at})` : 'another process';
      throw new BackupError('LOCKED', `${who} holds the lock ${file}`, {
        hint: 'Wait for it to finish and try again. If no basement-backup process is running, the lock is stale: delete the file.',
      });
    }
    const aside = `${file}.stale-${crypto.randomBytes(4).toString('hex')}`;
    try {
      fs.renameSync(file, aside);
    } catch {
      continue; // another process moved it first; try again
    }
    const moved = readInfo(aside);
    if (owner && moved && (moved.pid !== owner.pid || moved.acquired_at !== owner.acquired_at)) {
      // between our read and our rename another process took the lock over: give it back
      try {
        fs.linkSync(aside, file);
      } catch {
        // someone holds it again already
      }
    }
    fs.rmSync(aside, { force: true });
  }
  throw new BackupError('LOCKED', `could not take the lock ${file}`, { hint: 'Another basement-backup process keeps taking it; try again.' });
}

/**
 * acquireLock, its release registered where it is taken: the lock is released when the scope of
 * `releasers` ends (see withReleasers), however it ends.
 */
export function holdLock(releasers: Releasers, file: string, purpose: string, setting?: string): Lock {
  const lock = acquireLock(file, purpose, setting);
  releasers.add(() => lock.release());
  return lock;
}

/** Creates `file` (O_EXCL) with `text`; removes it again when the write fails. */
function writeLockFile(file: string, text: string): void {
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    throw err;
  }
  fs.closeSync(fd);
}

function lockAgeMs(file: string): number {
  try {
    return Date.now() - fs.statSync(file).mtimeMs;
  } catch {
    return Infinity;
  }
}

/** Who holds the lock now, if anyone alive does. */
export function lockHolder(file: string): LockInfo | undefined {
  const owner = readInfo(file);
  if (!owner) return undefined;
  if (!alive(owner)) return undefined;
  return owner;
}

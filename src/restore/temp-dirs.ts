import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors';
import { log } from '../logger';
import { safeName } from '../repository/manifest';
import { stopOrphanPrefetcher } from '../pitr/prefetcher';
import { stopOrphanServer } from '../util/orphan-server';
import { ownerAlive, thisProcess, type Owner } from '../util/owner';

/**
 * The private directories restores and drills make in BACKUP_TEMP_DIR for a decompressed copy
 * (plaintext, for an encrypted backup) and pg_restore's list: `basement-backup-<command>-<db>-XXXXXX`,
 * 0700, with an owner record (OWNER_FILE: pid, start time, host) written at once. A process
 * killed outright (SIGKILL, the OOM killer, pm2 after kill_timeout) cannot remove its own: the
 * next restore, drill and daemon start remove every one whose owner is gone.
 */
export type TempCommand = 'restore' | 'verify';

const PREFIX = 'basement-backup-';
const OWNER_FILE = 'owner.json';
/** A directory of ours without an owner record is being made (or from a version without records) until it is this old. */
const UNRECORDED_GRACE_MS = 60_000;

interface OwnerRecord extends Owner {
  command: TempCommand;
  database: string;
  started_at: string;
}

export interface TempLeftover {
  path: string;
  /** What made it, when its record says so (a directory of an older version has none). */
  command: TempCommand | undefined;
  database: string | undefined;
  /** Its owner is still running (or cannot be asked): it is in use, not a leftover. */
  running: boolean;
  /** The owner's pid, when recorded. */
  pid: number | undefined;
  bytes: number;
}

/**
 * A new private (0700) directory in `dir` for `command` of `database`, with its owner record; an
 * unusable `dir` is a configuration error.
 */
export function privateTempDir(dir: string, command: TempCommand, database: string): string {
  let made: string | undefined;
  try {
    made = fs.mkdtempSync(path.join(dir, `${PREFIX}${command}-${safeName(database)}-`));
    const record: OwnerRecord = { ...thisProcess(), command, database, started_at: new Date().toISOString() };
    fs.writeFileSync(path.join(made, OWNER_FILE), JSON.stringify(record) + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if (made) fs.rmSync(made, { recursive: true, force: true });
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError(
      'BACKUP_TEMP_DIR',
      `cannot create a temporary directory in ${dir} (${why})`,
      why === 'ENOENT'
        ? `Create it (mkdir -p -m 700 ${dir}: it is not made for you, so that a typo or an unmounted disk is not filled instead), or point BACKUP_TEMP_DIR at a writable directory, or remove it to use the system one.`
        : 'Point BACKUP_TEMP_DIR at a writable directory, or remove it to use the system one.',
    );
  }
  return made;
}

function readRecord(dir: string): OwnerRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, OWNER_FILE), 'utf8')) as OwnerRecord;
  } catch {
    return undefined;
  }
}

/** Bytes of the files directly in `dir` (ours hold no subdirectories). */
function sizeOf(dir: string): number {
  let bytes = 0;
  for (const n of safeReaddir(dir)) {
    try {
      bytes += fs.lstatSync(path.join(dir, n)).size;
    } catch {
      // removed meanwhile
    }
  }
  return bytes;
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** Every directory of ours in `dir` (BACKUP_TEMP_DIR), each with whether its owner still runs. */
export function findTempDirs(dir: string, now = Date.now()): TempLeftover[] {
  const out: TempLeftover[] = [];
  for (const name of safeReaddir(dir)) {
    if (!name.startsWith(PREFIX)) continue;
    const p = path.join(dir, name);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue;
    }
    if (!st.isDirectory()) continue;
    const r = readRecord(p);
    const running = r ? ownerAlive(r) : now - st.mtimeMs < UNRECORDED_GRACE_MS;
    out.push({ path: p, command: r?.command, database: r?.database, running, pid: r?.pid, bytes: sizeOf(p) });
  }
  return out;
}

/**
 * Removes the directories in `dir` (BACKUP_TEMP_DIR) that a killed restore or drill left: every
 * one of ours whose owner is gone, whatever its database. One that cannot be removed (another
 * user's) is logged and left. Returns those removed.
 */
export function removeTempLeftovers(dir: string): TempLeftover[] {
  const removed: TempLeftover[] = [];
  for (const t of findTempDirs(dir)) {
    if (t.running) continue;
    // a killed PITR drill's scratch server (and its WAL prefetcher) still run there: stopped first, never deleted under them
    if (!stopOrphanServer(t.path)) {
      log.warn('a PostgreSQL server left in a temporary directory did not stop; the directory stays', { path: t.path });
      continue;
    }
    if (!stopOrphanPrefetcher(t.path)) {
      log.warn('a WAL prefetcher left in a temporary directory did not stop; the directory stays', { path: t.path });
      continue;
    }
    try {
      fs.rmSync(t.path, { recursive: true, force: true });
      removed.push(t);
    } catch (err) {
      log.warn('cannot remove a temporary directory left by an interrupted restore or drill', { path: t.path, error: (err as Error).message });
    }
  }
  if (removed.length > 0) {
    log.warn('removed temporary directories left by an interrupted restore or drill', {
      dirs: removed.map((t) => `${t.path} (${t.bytes} bytes)`),
    });
  }
  return removed;
}

/**
 * The WAL receiver's spool: the 0700 directory under BACKUP_STATE_DIR where pg_receivewal writes
 * the WAL of one cluster, and which holds each completed file until every required target has it.
 * pg_receivewal writes the segment in progress as `NAME.partial` and renames it to NAME once it is
 * complete and fsynced; a timeline's history is written as `NAME.tmp` and renamed the same way.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { App } from '../app';
import { safeName } from '../repository/manifest';
import { makeDir } from '../util/dirs';
import { walKind } from '../wal/segment';

/** One completed WAL file waiting in the spool. */
export interface SpooledWal {
  name: string;
  size: number;
  /** When pg_receivewal completed it (its modification time). */
  mtimeMs: number;
}

/** Where the receiver of `app`'s database spools its WAL, and the files beside it. */
export interface SpoolPaths {
  dir: string;
  /** Records the running pg_receivewal's pid, so that one left by a killed receiver is stopped. */
  pidFile: string;
  /** The lock that keeps a second receiver off this spool. */
  lockFile: string;
  /** What the running receiver last said of itself (./receiver-record.ts): read by `status` and the daemon's checks. */
  recordFile: string;
  /** Where the zstd program writes the files it compresses for a push, for a moment (./spool-pusher.ts). */
  compressDir: string;
}

export function spoolPaths(app: App): SpoolPaths {
  const base = path.join(app.config.stateDir, 'wal-spool');
  const name = safeName(app.database.name);
  return {
    dir: path.join(base, name),
    pidFile: path.join(base, `${name}.pid`),
    lockFile: path.join(app.config.stateDir, 'locks', `wal-receive-${name}.lock`),
    recordFile: path.join(base, `${name}.json`),
    compressDir: path.join(base, `${name}.compress`),
  };
}

/** Creates the spool (0700, as every directory of ours), and empties the zstd program's directory of what a killed receiver left there. */
export function makeSpool(p: SpoolPaths): void {
  for (const d of [p.dir, p.compressDir]) {
    makeDir(d);
    fs.chmodSync(d, 0o700);
  }
  for (const name of fs.readdirSync(p.compressDir)) fs.rmSync(path.join(p.compressDir, name), { force: true, recursive: true });
}

/**
 * The completed WAL files in the spool (segments and timeline histories, never the `.partial`),
 * oldest name first. `known` (the receiver's, kept between looks) saves a stat of each file at
 * every look: a completed file does not change (pg_receivewal renames it complete), so only new
 * names are looked at, and names gone are forgotten.
 */
export async function completedFiles(dir: string, known?: Map<string, SpooledWal>): Promise<SpooledWal[]> {
  const names = (await fsp.readdir(dir)).filter((n) => {
    const kind = walKind(n);
    return kind === 'segment' || kind === 'history';
  });
  if (known) {
    const listed = new Set(names);
    for (const name of known.keys()) if (!listed.has(name)) known.delete(name);
  }
  const out: SpooledWal[] = [];
  for (const name of names.sort()) {
    const seen = known?.get(name);
    if (seen) {
      out.push(seen);
      continue;
    }
    try {
      const st = await fsp.stat(path.join(dir, name));
      const f = { name, size: st.size, mtimeMs: st.mtimeMs };
      known?.set(name, f);
      out.push(f);
    } catch {
      // removed meanwhile (pushed by an attempt that just ended)
    }
  }
  return out;
}

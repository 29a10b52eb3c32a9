import fs from 'node:fs';
import path from 'node:path';
import { log } from '../logger';

/**
 * Makes log files private (0600) and the folders holding them 0700: pm2 creates its own log
 * files with the default mode (0644 under the usual umask), and pm2-logrotate's rotated copies
 * too, in the same folder, which the folder's mode then protects. A folder is changed only when
 * this user owns it and it is not a shared one (sticky bit, as /tmp, or the filesystem root).
 */
export function makeLogsPrivate(files: string[], dirs: string[]): void {
  for (const f of files) tighten(f, 0o600, 'file');
  for (const d of new Set([...dirs, ...files.map((f) => path.dirname(f))])) tighten(d, 0o700, 'folder');
}

function tighten(p: string, mode: number, kind: 'file' | 'folder'): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return; // not there (yet): whoever creates it chooses its mode
  }
  if ((st.mode & 0o777 & ~mode) === 0) return;
  const uid = process.getuid?.();
  if ((uid !== undefined && st.uid !== uid) || (kind === 'folder' && ((st.mode & 0o1000) !== 0 || path.dirname(p) === p))) {
    if ((st.mode & 0o077) !== 0) log.warn(`log ${kind} ${p} is readable by others (mode ${modeText(st.mode)}) and not this user's to change`);
    return;
  }
  try {
    fs.chmodSync(p, st.mode & mode);
    log.info(`made the log ${kind} ${p} private (mode ${modeText(st.mode)} → ${modeText(st.mode & mode)})`);
  } catch (err) {
    log.warn(`cannot make the log ${kind} ${p} private`, { error: (err as Error).message });
  }
}

function modeText(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}

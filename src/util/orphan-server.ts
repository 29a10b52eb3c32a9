/**
 * A PostgreSQL server left running in a directory about to be removed: a PITR drill killed
 * outright (SIGKILL, the OOM killer) cannot stop the scratch server it started. Removing the
 * directory under it would leave a server running on deleted files; it is shut down first
 * (SIGQUIT: immediate, as `pg_ctl -m immediate` does), only when its postmaster.pid names a live
 * `postgres` whose data directory is that one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pidAlive } from './owner';

const WAIT_MS = 10_000;

/** The pid of the postmaster running in `pgdata`, from its postmaster.pid and /proc; undefined when none runs. */
function postmasterOf(pgdata: string): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (!path.basename(cmd[0] ?? '').startsWith('postgres')) return undefined;
    if (!cmd.some((a) => path.resolve(a) === path.resolve(pgdata))) return undefined;
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Shuts down a server running in `pgdata` (or in `pgdata`'s `data` subdirectory) and waits, at
 * most 10 s, for it to exit. True when none runs there (any more).
 */
export function stopOrphanServer(dir: string): boolean {
  const pgdata = [dir, path.join(dir, 'data')].find((d) => postmasterOf(d) !== undefined);
  if (!pgdata) return true;
  const pid = postmasterOf(pgdata)!;
  try {
    process.kill(pid, 'SIGQUIT');
  } catch (err) {
    // gone meanwhile; another user's server (EPERM) is not ours to stop, nor its directory to remove
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  return waitSync(() => !pidAlive(pid));
}

/** Waits, blocking, until `done` holds (checked every 100 ms), at most 10 s. Whether it held. */
export function waitSync(done: () => boolean, ms = WAIT_MS): boolean {
  const deadline = Date.now() + ms;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    if (done()) return true;
    if (Date.now() >= deadline) return false;
    Atomics.wait(pause, 0, 0, 100);
  }
}

/**
 * The WAL prefetcher as a process (what it does is prefetch.ts): where its spool is, its pid file,
 * starting it and stopping it. Whoever starts it writes the pid file at once, so that the next
 * restore_command finds it running; `pitr-restore --start` starts it itself, to stop it (and wait
 * for it) when recovery is over, and the removal of what a killed drill left stops an orphan one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startBackground } from '../pg/program';
import { waitSync } from '../util/orphan-server';
import { selfScript } from '../util/self';

const PID_FILE = '.prefetch.pid';
/** How long a prefetcher is given to end on SIGTERM before SIGKILL. */
const STOP_MS = 10_000;

/** Where the prefetcher keeps the next WAL segments during recovery: beside the data directory, outside it. */
export function prefetchDir(pgdata: string): string {
  return `${path.resolve(pgdata)}.wal-prefetch`;
}

/** How the prefetcher is started: this program with the configuration of the command that starts it. */
export interface PrefetcherStart {
  /** The env files, relative to `cwd` when not absolute. */
  envFiles: readonly string[];
  db: string | undefined;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

/** Starts `wal-prefetch` for `spool` (which must exist) in the background, and records its pid there. Returns its pid. */
export function startPrefetcher(spool: string, how: PrefetcherStart): number | undefined {
  const args = [selfScript(), ...how.envFiles.flatMap((f) => ['--env-file', f]), ...(how.db ? ['--db', how.db] : []), 'wal-prefetch', path.resolve(spool)];
  const pid = startBackground(process.execPath, args, how.env, how.cwd);
  if (pid !== undefined) fs.writeFileSync(path.join(spool, PID_FILE), String(pid), { mode: 0o600 });
  return pid;
}

/** The pid of the prefetcher of `spool`, from its pid file, when it runs. */
export function prefetcherPid(spool: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(spool, PID_FILE), 'utf8'));
    return isPrefetcherOf(pid, spool) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether process `pid` is `wal-prefetch` of `spool`, as /proc shows it: a pid reused by another
 * process is not taken for it, nor an exited one not yet reaped (its command line is empty).
 */
function isPrefetcherOf(pid: number, spool: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const at = args.indexOf('wal-prefetch');
    return at >= 0 && args[at + 1] === path.resolve(spool);
  } catch {
    return false;
  }
}

/** Removes the pid file of `spool` when it still names this process (the prefetcher's last step). */
export function forgetPrefetcher(spool: string): void {
  try {
    if (Number(fs.readFileSync(path.join(spool, PID_FILE), 'utf8')) === process.pid) fs.rmSync(path.join(spool, PID_FILE), { force: true });
  } catch {
    // the spool is gone: recovery is over
  }
}

/** Ends prefetcher `pid` of `spool` (SIGTERM; SIGKILL after 10 s) and waits until it has exited. */
export async function stopPrefetcher(pid: number, spool: string): Promise<void> {
  for (const [sig, ms] of [
    ['SIGTERM', STOP_MS],
    ['SIGKILL', 5_000],
  ] as const) {
    if (!isPrefetcherOf(pid, spool)) return;
    try {
      process.kill(pid, sig);
    } catch {
      return; // gone meanwhile
    }
    const until = Date.now() + ms;
    while (isPrefetcherOf(pid, spool) && Date.now() < until) await sleep(25);
  }
}

/**
 * Stops the prefetcher a killed drill left beside its data directory (`dir`/data), waiting at most
 * 10 s. True when none runs there (any more).
 */
export function stopOrphanPrefetcher(dir: string): boolean {
  const spool = prefetchDir(path.join(dir, 'data'));
  const pid = prefetcherPid(spool);
  if (pid === undefined) return true;
  try {
    process.kill(pid, 'SIGTERM');
  } catch (err) {
    // gone meanwhile; another user's is not ours to stop, nor its directory to remove
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  return waitSync(() => !isPrefetcherOf(pid, spool));
}

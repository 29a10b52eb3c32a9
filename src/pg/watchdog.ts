import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { BackupError } from '../errors';
import { log } from '../logger';
import type { SessionDiagnosis } from './activity';

export interface StallWatchOptions {
  /** The program, for messages: "pg_dump", "pg_restore", "psql". */
  program: string;
  /** No progress for this long is a stall (BACKUP_STALL_MINUTES). */
  stallMs: number;
  /**
   * Asked once the child has been silent for `stallMs`: what its sessions on the server do. A
   * server still executing their statement (`busy`) restarts the wait; a lock, an idle session
   * or no answer is a stall. Without it, silence alone is.
   */
  diagnose?: () => Promise<SessionDiagnosis>;
  /** What to do about the sessions of a lock wait, for the hint. */
  lockHint?: (blockerPid: number | undefined) => string;
  /** Called once, with the STALLED error, just before the child is stopped. */
  onStall: (err: BackupError) => void;
}

export interface StallWatch {
  /** Stops watching (the child exited, or was stopped for another reason). Safe to call twice. */
  stop(): void;
  /** Counts bytes seen outside the child's pipes (e.g. a file it reads) as progress. */
  progress(bytes: number): void;
}

/** 30 min, 90 s */
export function formatWait(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = s / 60;
  return `${Number.isInteger(m) ? m : m.toFixed(1)} min`;
}

/** The bytes the process read and wrote so far (any file, pipe or socket), or undefined without /proc. */
function ioCounter(pid: number | undefined): () => number | undefined {
  let available = pid !== undefined;
  return () => {
    if (!available) return undefined;
    try {
      const text = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
      const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
      return field('rchar') + field('wchar');
    } catch {
      available = false; // not Linux, or not allowed: the pipes and the server still tell
      return undefined;
    }
  };
}

/**
 * Sends SIGTERM to `child`, then SIGKILL if it is still there after `graceMs`; never throws.
 */
export function stopChild(child: ChildProcess, graceMs = 5000): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, graceMs);
  timer.unref();
  child.once('exit', () => clearTimeout(timer));
}

/**
 * Watches a PostgreSQL program for progress: bytes on its stdout and stderr (attach before piping
 * them), its read and write counters in /proc/<pid>/io where Linux offers them, and whatever the
 * caller reports. After `stallMs` without any, and unless the server says it is still working for
 * it, builds a STALLED error saying what the program waited for, calls `onStall` and stops the
 * child. One watch per child; it ends by itself when the child exits.
 */
export function watchForStall(child: ChildProcess, o: StallWatchOptions): StallWatch {
  const io = ioCounter(child.pid);
  let streamed = 0;
  let reported = 0;
  const count = (chunk: Buffer | string) => (streamed += chunk.length);
  child.stdout?.on('data', count);
  child.stderr?.on('data', count);

  let last = -1;
  let quietSince = Date.now();
  let asking = false;
  let stopped = false;
  const sample = () => streamed + reported + (io() ?? 0);
  const tick = async () => {
    const now = sample();
    if (now !== last) {
      last = now;
      quietSince = Date.now();
      return;
    }
    const quietMs = Date.now() - quietSince;
    if (quietMs < o.stallMs || asking) return;
    asking = true;
    let d: SessionDiagnosis | undefined;
    let unknown: string | undefined;
    try {
      d = await o.diagnose?.();
    } catch (err) {
      unknown = `the server did not say what it waits for (${(err as Error).message})`;
    } finally {
      asking = false;
    }
    if (stopped || sample() !== last) return;
    if (d?.busy) {
      log.info(`${o.program} has been silent for ${formatWait(quietMs)}, but the server is still executing its statement`);
      quietSince = Date.now();
      return;
    }
    watch.stop();
    const err = stallError(o, quietMs, d, unknown);
    log.error(`${o.program} stalled; stopping it`, { error: err.message });
    o.onStall(err);
    stopChild(child);
  };
  const timer = setInterval(() => void tick(), Math.max(100, Math.min(10_000, Math.floor(o.stallMs / 5))));
  const watch: StallWatch = {
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      child.stdout?.off('data', count);
      child.stderr?.off('data', count);
    },
    progress(bytes) {
      reported += bytes;
    },
  };
  child.once('exit', () => watch.stop());
  return watch;
}

function stallError(o: StallWatchOptions, quietMs: number, d: SessionDiagnosis | undefined, unknown: string | undefined): BackupError {
  const wait = formatWait(quietMs);
  const limit = `BACKUP_STALL_MINUTES (${formatWait(o.stallMs)}) sets how long a silence is tolerated.`;
  if (d?.waitingFor) {
    const lock = d.waitingFor.startsWith('a lock');
    const fix = lock
      ? (o.lockHint?.(d.blockerPid) ??
        `End the blocking transaction (COMMIT or ROLLBACK it in its application${d.blockerPid ? `, or SELECT pg_terminate_backend(${d.blockerPid})` : ''}), then retry.`)
      : 'Bring the standby back or remove it from synchronous_standby_names, then retry.';
    return new BackupError('STALLED', `${o.program} waited ${wait} for ${d.waitingFor}`, { hint: `${fix} ${limit}` });
  }
  const seen = d?.seen ?? unknown ?? 'no progress was seen';
  return new BackupError('STALLED', `${o.program} made no progress for ${wait}: ${seen}`, {
    hint: `It was stopped and its sessions ended. Check the database server and the network to it, then retry. ${limit}`,
  });
}

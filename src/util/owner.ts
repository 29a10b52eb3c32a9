import fs from 'node:fs';
import os from 'node:os';

/**
 * The process that made something (a lock, a temporary directory, a database being restored):
 * its pid, its start time, and the host, so that what it leaves can be told from what it is still
 * using once it is gone.
 */
export interface Owner {
  pid: number;
  /** The process's start time (Linux: /proc/<pid>/stat field 22), so a reused pid is not mistaken for the owner. */
  pid_start?: string | undefined;
  host: string;
}

/** When process `pid` started (clock ticks after boot), where /proc tells; else undefined. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the command name (which may contain spaces) start after the last ")"
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** This process. */
export function thisProcess(): Owner {
  return { pid: process.pid, pid_start: processStart(process.pid), host: os.hostname() };
}

/** Is `pid` a running process (of any user)? */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Is the owner still running? A pid that now belongs to another process does not count. An owner
 * on another host cannot be asked: it counts as running, so that nothing of it is removed from here.
 */
export function ownerAlive(owner: Owner): boolean {
  if (owner.host !== os.hostname()) return true;
  if (!Number.isInteger(owner.pid) || owner.pid <= 0 || !pidAlive(owner.pid)) return false;
  if (owner.pid_start !== undefined) {
    const now = processStart(owner.pid);
    if (now !== undefined && now !== owner.pid_start) return false;
  }
  return true;
}

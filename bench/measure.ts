/**
 * The benchmark's processes: each measured command is spawned without a shell, timed from spawn
 * to exit, and its own peak RSS polled (see bench.ts's header for why VmHWM and not GNU time).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const POLL_MS = 50;

export interface Measured {
  wallMs: number;
  /** Date.now() just before the spawn: the wall clock a child's log timestamps are compared with. */
  startedAt: number;
  /** Largest VmHWM seen for the process itself, in bytes (0 when the process ended before the first poll). */
  peakRssBytes: number;
  stdout: string;
  stderr: string;
}

let current: ReturnType<typeof spawn> | undefined;

function readHwm(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined; // gone already
  }
}

/** Runs a command (no shell), timing it from spawn to exit and polling its own peak RSS. */
export function measure(cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string }): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const startedAt = Date.now();
    const started = process.hrtime.bigint();
    // detached: its own process group, so an interrupted benchmark can stop it and its pg_dump together
    const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    current = child;
    let peak = 0;
    let wallMs = 0;
    const poll = () => {
      if (child.pid === undefined) return;
      const hwm = readHwm(child.pid);
      if (hwm !== undefined && hwm > peak) peak = hwm;
    };
    poll();
    const timer = setInterval(poll, POLL_MS);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.once('error', (e) => {
      clearInterval(timer);
      current = undefined;
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.once('exit', () => {
      wallMs = Number(process.hrtime.bigint() - started) / 1e6;
      clearInterval(timer);
    });
    child.once('close', (code, signal) => {
      clearInterval(timer);
      current = undefined;
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code !== 0) {
        reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${stderr.trim()}\n${stdout.trim()}`));
        return;
      }
      resolve({ wallMs, startedAt, peakRssBytes: peak, stdout, stderr });
    });
  });
}

export function syncDisks(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

/** Kills the measured command still running, with its process group (an interrupted benchmark). */
export function stopCurrent(): void {
  if (current?.pid !== undefined && current.exitCode === null) {
    try {
      process.kill(-current.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onTestFinished } from 'vitest';
import { pgInfo } from './pg';

export const CLI = path.resolve(__dirname, '../../dist/src/cli/main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export { tempDir } from './temp';

/** The data file's suffix of a default backup: custom format, compressed with zstd in the stream. */
export const DUMP = '.dump.zst';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The environment of a basement-backup run against the test cluster: nothing from the
 * developer's own environment leaks in but PATH and HOME.
 */
export function backupEnv(database: string, dir: string, extra: Record<string, string | undefined> = {}): Record<string, string> {
  const info = pgInfo();
  const env: Record<string, string | undefined> = {
    PATH: process.env.PATH,
    HOME: process.env.HOME ?? '/root',
    DB_HOST: info.host,
    DB_PORT: String(info.port),
    DB_USER: info.user,
    DB_PASSWORD: info.password,
    DB_NAME: database,
    PG_BIN_DIR: info.binDir,
    BACKUP_DIR: path.join(dir, 'backups'),
    LOG_DIR: path.join(dir, 'logs'),
    BACKUP_MIN_FREE_MB: '0',
    ...extra,
  };
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

/** Adds the settings that send alerts to an SMTP sink on loopback. */
export function smtpEnv(port: number): Record<string, string> {
  return { SMTP_HOST: '127.0.0.1', SMTP_PORT: String(port), ALERT_EMAIL_TO: 'ops@example.test', ALERT_EMAIL_FROM: 'backup@example.test' };
}

/** Runs the CLI as another user (the tests run as root, which ignores permissions). */
export interface RunAs {
  uid?: number;
  gid?: number;
}

export function runCli(args: string[], env: Record<string, string>, opts: { cwd?: string; timeoutMs?: number } & RunAs = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env,
      cwd: opts.cwd ?? os.tmpdir(),
      stdio: ['ignore', 'pipe', 'pipe'],
      uid: opts.uid,
      gid: opts.gid,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`basement-backup ${args.join(' ')} timed out\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface Spawned {
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** Waits until the combined output matches `re`. */
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<void>;
  /** With `detached`: SIGINT to its whole process group, as Ctrl-C on a terminal sends it. */
  ctrlC(): void;
}

/**
 * Starts a long-running CLI command (the daemon); it is killed when the test finishes. With
 * `detached`, in a process group of its own (as a shell starts a command), for `ctrlC()`.
 */
export function spawnCli(args: string[], env: Record<string, string>, opts: { cwd?: string; detached?: boolean } & RunAs = {}): Spawned {
  const child = spawn(process.execPath, [CLI, ...args], {
    env,
    cwd: opts.cwd ?? os.tmpdir(),
    stdio: ['ignore', 'pipe', 'pipe'],
    uid: opts.uid,
    gid: opts.gid,
    detached: opts.detached,
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  let spawnError: Error | undefined;
  const exited = new Promise<number | null>((resolve) => {
    // a process that cannot start (e.g. EACCES on node for another user) fails the test, not the run
    child.once('error', (err) => {
      spawnError = err;
      out += `cannot start ${process.execPath}: ${err.message}\n`;
      resolve(null);
    });
    child.once('close', (code) => resolve(code));
  });
  onTestFinished(async () => {
    if (!spawnError && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const ctrlC = () => {
    if (!opts.detached || child.pid === undefined) throw new Error('ctrlC() needs spawnCli(…, { detached: true })');
    process.kill(-child.pid, 'SIGINT');
  };
  return {
    child,
    output: () => out,
    exited,
    ctrlC,
    async waitForOutput(re, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(out)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in:\n${out}`);
        if (child.exitCode !== null || spawnError) throw new Error(`process exited (${child.exitCode}) before ${re}:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/** Names in the backup directory, hidden state excluded. */
export function backupFiles(dir: string): string[] {
  const b = path.join(dir, 'backups');
  return fs.existsSync(b)
    ? fs
        .readdirSync(b)
        .filter((n) => n !== '.basement-backup')
        .sort()
    : [];
}

/**
 * `basement-backup list --json` (plus `args`, e.g. `--target s3`), as the CLI prints it (newest
 * first); the command must exit 0.
 */
export { listJson } from './app';

export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A quiet window for a negative assertion: checks `pred` every 50 ms for `ms` and fails as soon
 * as it is false ("pg_dump still runs", "no restart"). Call it only once the event that would
 * have set the wrong thing off has happened (the signal was received, the process exited):
 * before that, a quiet window proves nothing on a slow machine.
 */
export async function holdsFor(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const start = Date.now();
  for (;;) {
    if (!(await pred())) throw new Error(`expected ${what} for ${ms} ms, but not after ${Date.now() - start} ms`);
    if (Date.now() - start >= ms) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

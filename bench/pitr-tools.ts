/**
 * The pieces bench/pitr.ts measures with: pgBackRest's throwaway configuration and commands (run
 * as `postgres`, as PostgreSQL's archive_command runs them), basement-backup's WAL receiver in the
 * background, and the WAL segments each archive holds (their names, read from the directories).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Cluster } from '../scripts/lib/cluster';
import { libpq } from './datasets';

export const STANZA = 'bench';

/** The number of a 16 MB WAL segment from its 24-hex-digit name (timeline ignored). */
export function segNo(name: string): number {
  return parseInt(name.slice(8, 16), 16) * 0x100 + parseInt(name.slice(16, 24), 16);
}

/** `chown -R postgres:postgres dir`: what pgBackRest (and pitr-restore run as postgres) read and write. */
export function toPostgres(dir: string): void {
  execFileSync('chown', ['-R', 'postgres:postgres', dir]);
}

/** The WAL segments (by number) an archive directory holds, from its file names (both tools start them with the WAL name). */
export function archivedSegments(dir: string): Set<number> {
  const out = new Set<number>();
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && /^[0-9A-F]{24}(-|$)/.test(e.name)) out.add(segNo(e.name));
  }
  return out;
}

/** Resolves once `has()` holds every segment in [from, to], or rejects after `timeoutMs`. */
export async function waitArchived(has: () => Set<number>, from: number, to: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = has();
    let missing = 0;
    for (let s = from; s <= to; s++) if (!got.has(s)) missing++;
    if (missing === 0) return;
    if (Date.now() > deadline) throw new Error(`${what}: ${missing} of ${to - from + 1} segments still not archived after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** pgBackRest's throwaway set-up: its config file, repository, spool, log and lock directories under `dir` (owned by postgres). */
export interface PgBackRest {
  config: string;
  repo: string;
  /** The WAL it archived: repo/archive/STANZA. */
  archiveDir: string;
  /** Its full backups: repo/backup/STANZA. */
  backupDir: string;
  /** archive_command for the synchronous (false) or asynchronous (true) archive-push. */
  archiveCommand(async: boolean): string;
}

export function pgBackRestSetup(dir: string, cluster: Cluster): PgBackRest {
  fs.mkdirSync(dir, { mode: 0o700 });
  const repo = path.join(dir, 'repo');
  const config = path.join(dir, 'pgbackrest.conf');
  const lines = [
    '[global]',
    `repo1-path=${repo}`,
    // the recovery phase restores the newest full backup; older ones (and their WAL) go, as on a server
    'repo1-retention-full=1',
    'compress-type=zst',
    'compress-level=3',
    'process-max=2',
    'start-fast=y',
    `log-path=${path.join(dir, 'log')}`,
    `lock-path=${path.join(dir, 'lock')}`,
    `spool-path=${path.join(dir, 'spool')}`,
    'log-level-console=warn',
    'log-level-file=off',
    '',
    `[${STANZA}]`,
    `pg1-path=${cluster.dataDir}`,
    `pg1-port=${cluster.port}`,
    `pg1-socket-path=${path.join(cluster.baseDir, 'socket')}`,
    'pg1-user=postgres',
    '',
  ];
  fs.writeFileSync(config, lines.join('\n'), { mode: 0o600 });
  for (const d of ['repo', 'log', 'lock', 'spool']) fs.mkdirSync(path.join(dir, d), { mode: 0o700 });
  toPostgres(dir);
  return {
    config,
    repo,
    archiveDir: path.join(repo, 'archive', STANZA),
    backupDir: path.join(repo, 'backup', STANZA),
    archiveCommand: (async) => `pgbackrest --config=${config} --stanza=${STANZA}${async ? ' --archive-async' : ''} archive-push %p`,
  };
}

/** `runuser -u postgres -- pgbackrest --config … --stanza … ARGS` as [cmd, args]; libpq's environment carries the password. */
export function pgBackRestArgs(p: PgBackRest, args: string[]): [string, string[]] {
  return ['runuser', ['-u', 'postgres', '--', 'pgbackrest', `--config=${p.config}`, `--stanza=${STANZA}`, ...args]];
}

export function pgBackRestEnv(cluster: Cluster): NodeJS.ProcessEnv {
  return libpq(cluster, 'postgres');
}

/** Sets archive_command (archive_mode is on for the whole run) and waits until a new session sees it. */
export async function setArchiveCommand(cluster: Cluster, command: string): Promise<void> {
  await setSetting(cluster, 'archive_command', command);
}

/** ALTER SYSTEM SET name = value (one the server reloads), then waits until a new session sees it. */
export async function setSetting(cluster: Cluster, name: string, value: string): Promise<void> {
  await cluster.query('postgres', `ALTER SYSTEM SET ${name} = '${value.replace(/'/g, "''")}'`);
  await cluster.query('postgres', 'SELECT pg_reload_conf()');
  const deadline = Date.now() + 10_000;
  while ((await cluster.query<{ a: string }>('postgres', `SELECT current_setting('${name}') AS a`))[0]?.a !== value) {
    if (Date.now() > deadline) throw new Error(`${name} did not become ${value}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** CPU time (ms) process `pid` itself has used, from /proc. */
function cpuMs(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime (fields 14 and 15 of stat; 12 and 13 after the name), in clock ticks of 10 ms
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Waits until `pid` used at most 20 ms of CPU in each of two 500 ms in a row (at most 60 s). */
async function idle(pid: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  let quiet = 0;
  let last = cpuMs(pid);
  while (quiet < 2 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    const now = cpuMs(pid);
    quiet = now - last <= 20 ? quiet + 1 : 0;
    last = now;
  }
}

/**
 * basement-backup's WAL receiver in the background, its output kept for an error message: the
 * daemon with WAL_RECEIVE=on (as under pm2), or `wal-receive`.
 */
export class Receiver {
  private child?: ChildProcess;
  private out = '';

  constructor(
    private readonly cli: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly cwd: string,
    /**
     * The command, the lines that say it receives (each, in any order), and whether to wait until
     * its start-up work is done (the daemon's: leftovers, its first checks), as it is in a daemon
     * that has run for a while, before anything is measured.
     */
    private readonly command: { args: string[]; ready: RegExp[]; settle?: boolean } = { args: ['wal-receive'], ready: [/receiving WAL of/] },
  ) {}

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts it and resolves once it says it receives (pg_receivewal started, slot there). */
  async start(): Promise<void> {
    if (this.child) return;
    this.out = '';
    const name = this.command.args.join(' ');
    const child = spawn(process.execPath, [this.cli, ...this.command.args], {
      env: this.env,
      cwd: this.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child = child;
    child.stdout.on('data', (d: Buffer) => (this.out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (this.out += d.toString()));
    const deadline = Date.now() + 60_000;
    while (!this.command.ready.every((re) => re.test(this.out))) {
      if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}) before it received:\n${this.out}`);
      if (Date.now() > deadline) throw new Error(`${name} did not start within 60 s:\n${this.out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    if (this.command.settle && child.pid !== undefined) await idle(child.pid);
  }

  /** SIGINT (a clean stop: the pushes in flight finish) and waits for its exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    await exited;
    clearTimeout(timer);
  }

  /** Kills it at once with its process group (pg_receivewal): an interrupted benchmark. */
  kill(): void {
    if (this.child?.pid !== undefined && this.child.exitCode === null) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

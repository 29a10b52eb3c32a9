/**
 * What the point-in-time recovery tests share: a cluster of their own that writes WAL, completed
 * segments copied out of its pg_wal, and the archive's objects on a local target.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startCluster, type Cluster } from '../../scripts/lib/cluster';
import { CLI, waitFor } from './cli';

/** A `wal-receive` running for a whole test file (spawnCli's clean-up is per test). */
export interface FileReceiver {
  /** What it printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, and waits for it to end. */
  stop(): Promise<void>;
}

/**
 * Starts `wal-receive` with `envFile` (as `user` when given) and returns once it streams, as an
 * operator starts it before the first base backup: its slot holds the WAL from there on, and a
 * base backup's WAL starts where the server was when it began (a receiver whose slot came later
 * never has that segment).
 */
export async function startReceiver(envFile: string, cwd: string, user?: { uid: number; gid: number }): Promise<FileReceiver> {
  const child = spawn(process.execPath, [CLI, '--env-file', envFile, 'wal-receive'], {
    env: { PATH: process.env.PATH!, HOME: cwd },
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...user,
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const receiver: FileReceiver = {
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('close', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
  try {
    await waitFor(() => /starting log streaming at/.test(output), 60_000, 'the receiver to stream');
  } catch (err) {
    await receiver.stop();
    throw new Error(`${(err as Error).message}\nreceiver: ${output}`);
  }
  return receiver;
}

/** Starts a cluster for one test file (stopped when the process ends, or by `stop()`). */
export function ownCluster(settings: Record<string, string> = {}): Promise<Cluster> {
  return startCluster({ settings });
}

/**
 * Writes some rows, switches to a new segment `count` times, and copies each completed segment
 * into `dir`: their paths, in order.
 */
export async function completedSegments(c: Cluster, dir: string, count: number): Promise<string[]> {
  await c.query('postgres', 'CREATE TABLE IF NOT EXISTS wal_filler (i int, t text)');
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    await c.query('postgres', `INSERT INTO wal_filler SELECT g, md5(g::text) FROM generate_series(1, 1000) g`);
    const [row] = await c.query<{ name: string }>('postgres', 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS name');
    await c.query('postgres', 'SELECT pg_switch_wal()');
    const copy = path.join(dir, row!.name);
    fs.copyFileSync(path.join(c.dataDir, 'pg_wal', row!.name), copy);
    out.push(copy);
  }
  return out;
}

export function sha256(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** The WAL objects of database entry `name` on the local target under `backupDir`, sorted. */
export function localWalObjects(backupDir: string, name: string): string[] {
  const dir = path.join(backupDir, 'pitr', name, 'wal');
  return fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => !f.startsWith('.'))
        .sort()
    : [];
}

/** The processes whose command line names `text` (a server or a WAL prefetcher left running in a directory). */
export function processesNaming(text: string): string[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .flatMap((p) => {
      try {
        const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
        return cmd.includes(text) ? [`${p}: ${cmd}`] : [];
      } catch {
        return [];
      }
    });
}

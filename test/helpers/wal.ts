/**
 * What the point-in-time recovery tests share: a cluster of their own that writes WAL, completed
 * segments copied out of its pg_wal, and the archive's objects on a local target.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startCluster, type Cluster } from '../../scripts/lib/cluster';

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

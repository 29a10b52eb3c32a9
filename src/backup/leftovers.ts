import type { App } from '../app';
import type { DbConfig } from '../config/types';
import { asBackupError } from '../errors';
import { lockHolder } from '../lock/file-lock';
import { connectAdmin, findScratch } from '../restore/scratch';
import { findTempDirs } from '../restore/temp-dirs';
import { findUnfinished } from '../restore/unfinished';
import { waitAtMost } from '../util/deadline';

/** How long `status` waits for one target or server to tell what is left there. */
const LOOK_MS = 10_000;

/**
 * What interrupted runs of one database left (or, `in_use`, what running ones are using now), for
 * `status`: each thing is removed by the next run of its kind and by the daemon's start.
 */
export interface Leftovers {
  /** Private directories of restores and drills in BACKUP_TEMP_DIR (a decompressed copy: plaintext for an encrypted backup). */
  temp_dirs: { path: string; command: string | null; bytes: number; in_use_by_pid: number | null }[];
  /** Temporary objects on the targets, of a backup, sync or reencrypt. */
  temporary_objects: { target: string; name: string; size_bytes: number | null; in_use: boolean }[];
  /** Databases a restore is filling, or a killed one left half-restored (marked; a finished restore is never listed). */
  unfinished_restores: { database: string; server: string; in_use_by_pid: number | null; since: string }[];
  /** Scratch databases of drills. */
  scratch_databases: { database: string; server: string; in_use_by_pid: number | null }[];
  /** Where it could not look, and why. */
  unchecked: string[];
}

export const NO_LEFTOVERS: Leftovers = { temp_dirs: [], temporary_objects: [], unfinished_restores: [], scratch_databases: [], unchecked: [] };

/** What is left of `app`'s database: in BACKUP_TEMP_DIR, on every target, on the database and drill servers. */
export async function findLeftovers(app: App): Promise<Leftovers> {
  const { config } = app;
  const database = app.database.db.database;
  const out: Leftovers = { temp_dirs: [], temporary_objects: [], unfinished_restores: [], scratch_databases: [], unchecked: [] };
  for (const t of findTempDirs(config.tempDir)) {
    if (t.database !== undefined && t.database !== database) continue;
    out.temp_dirs.push({ path: t.path, command: t.command ?? null, bytes: t.bytes, in_use_by_pid: t.running ? (t.pid ?? null) : null });
  }
  // while a backup, sync or reencrypt holds the lock, its uploads are in use (a bucket does not say whose an upload is)
  const locked = lockHolder(app.lockFile(database)) !== undefined;
  const look = async <T>(where: string, work: Promise<T>, use: (v: T) => void) => {
    const r = await waitAtMost(work, LOOK_MS);
    if (r.state === 'done') use(r.value);
    else out.unchecked.push(`${where}: ${r.state === 'failed' ? asBackupError(r.error).message : `no answer within ${LOOK_MS / 1000}s`}`);
  };
  await Promise.all([
    ...app.targets.map((t) =>
      look(`target ${t.name}`, t.repo.temporaries(database), (temps) => {
        for (const x of temps) out.temporary_objects.push({ target: t.name, name: x.name, size_bytes: x.size ?? null, in_use: x.inUse || locked });
      }),
    ),
    look(serverOf(app.database.db), onServer(app.database.db, findUnfinished), (found) => {
      for (const u of found.filter((f) => f.kind === 'restore' && f.of === database))
        out.unfinished_restores.push({ database: u.name, server: serverOf(app.database.db), in_use_by_pid: u.running ? u.pid : null, since: u.started_at });
    }),
    look(
      `drill server ${serverOf(app.database.verifyDb)}`,
      onServer(app.database.verifyDb, (c) => findScratch(c, database)),
      (found) => {
        for (const s of found)
          out.scratch_databases.push({ database: s.name, server: serverOf(app.database.verifyDb), in_use_by_pid: s.running ? (s.pid ?? null) : null });
      },
    ),
  ]);
  return out;
}

function serverOf(db: DbConfig): string {
  return `${db.host}:${db.port}`;
}

async function onServer<T>(db: DbConfig, work: (client: Awaited<ReturnType<typeof connectAdmin>>) => Promise<T>): Promise<T> {
  const client = await connectAdmin(db);
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

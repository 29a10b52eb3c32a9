import os from 'node:os';
import type { App } from '../app';
import { checkArchive } from '../dump/check';
import { runPgDump } from '../dump/pg-dump';
import { BackupError } from '../errors';
import { acquireLock } from '../lock/file-lock';
import { log } from '../logger';
import { checkDumpCompatible } from '../pg/binaries';
import { listUserTables, qualified, serverInfo } from '../pg/catalog';
import { classifyPgError, connect, libpqEnv, stopDumpSessions } from '../pg/connection';
import { digestTables } from '../digest/table-digests';
import { dumpGlobals } from '../dump/globals';
import { expireBackups } from '../retention/expire';
import type { RetentionDecision } from '../retention/policy';
import { backupId, belongsTo, dataFileName, manifestFileName, rolesFileName, type Manifest } from '../storage/manifest';
import { formatBytes } from '../util/format';
import { VERSION } from '../version';

export interface BackupRequest {
  trigger: Manifest['trigger'];
  label?: string | undefined;
  keepUntil?: string | null | undefined;
  signal?: AbortSignal | undefined;
}

export interface BackupResult {
  manifest: Manifest;
  path: string | undefined;
  retention: RetentionDecision[];
  retentionError: BackupError | undefined;
}

/**
 * Takes one backup of the configured database and applies retention. Either a complete,
 * checked backup with its manifest exists afterwards, or nothing new does.
 */
export async function runBackup(app: App, req: BackupRequest): Promise<BackupResult> {
  const { config, repo } = app;
  const database = config.db.database;
  const signal = req.signal ?? new AbortController().signal;
  const lock = acquireLock(app.lockFile(database), `backup of ${database}`);
  try {
    const removed = await repo.storage.cleanupTemporary((n) => belongsTo(database, n));
    if (removed.length > 0) log.warn('removed leftovers of an interrupted backup', { files: removed });

    const bins = await app.binaries();
    const client = await connect(config.db);
    let manifest: Manifest;
    try {
      const server = await serverInfo(client);
      const backendPid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      checkDumpCompatible(bins, server.versionNum);
      await checkSpace(app, database, server.databaseSize);

      // Take the table list in the snapshot pg_dump will use, so the check compares like with like.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const snapshot = (await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
      const tables = await listUserTables(client);

      const started = new Date();
      const id = await uniqueId(app, database, started);
      const file = dataFileName(id, config.format);
      const args = ['--no-password', `--snapshot=${snapshot}`];
      if (config.format === 'custom') {
        args.push('--format=custom');
        if (config.compression !== undefined) args.push(`--compress=${config.compression}`);
      } else {
        args.push('--format=plain');
      }
      log.info('backup started', { database, id, format: config.format, trigger: req.trigger, pg_dump: bins.version });

      const writer = await repo.storage.createWriter(file);
      let rolesFile: string | null = null;
      try {
        // pg_dump streams the archive while this connection, still in the same snapshot,
        // counts (and digests) every table for later verification.
        // If the dump fails or is stopped, the digest is cancelled rather than read to the end.
        const dumpAppName = `basement-backup pg_dump ${process.pid}`;
        const dumping = runPgDump({
          pgDump: bins.path('pg_dump'),
          env: libpqEnv(config.db, database, process.env, dumpAppName),
          args,
          gzipLevel: config.format === 'plain' ? (config.compression ?? 6) : undefined,
          out: writer.stream,
          signal,
        });
        const digesting = digestTables(client, tables, config.digest);
        void dumping.catch(() => stopDumpSessions(config.db, backendPid, dumpAppName));
        const [dumped, digested] = await Promise.allSettled([dumping, digesting]);
        if (dumped.status === 'rejected') throw dumped.reason;
        if (digested.status === 'rejected') throw classifyPgError(digested.reason, config.db);
        const dump = dumped.value;
        await client.query('COMMIT');
        if (dump.sizeBytes === 0) {
          throw new BackupError('DUMP_INVALID', 'pg_dump produced an empty file', { hint: "Read pg_dump's messages in the log." });
        }
        if (writer.tempPath) {
          await checkArchive({ file: writer.tempPath, format: config.format, pgRestore: bins.path('pg_restore'), tables });
        }
        if (signal.aborted) throw new BackupError('ABORTED', 'the backup was stopped before it finished', { hint: 'The partial file was removed.' });
        await writer.commit();
        const globals = await dumpGlobals(bins.path('pg_dumpall'), libpqEnv(config.db), database, server.superuser);
        if (globals !== undefined) {
          rolesFile = rolesFileName(id);
          await repo.storage.writeAtomic(rolesFile, globals);
        }
        const finished = new Date();
        manifest = {
          manifest_version: 1,
          id,
          file,
          database,
          created_at: started.toISOString(),
          finished_at: finished.toISOString(),
          duration_ms: finished.getTime() - started.getTime(),
          size_bytes: dump.sizeBytes,
          sha256: dump.sha256,
          format: config.format,
          compression: config.compression ?? null,
          pg_dump_version: bins.version,
          server_version: server.version,
          label: req.label ?? null,
          keep_until: req.keepUntil ?? null,
          tables: tables.map(qualified),
          digest_mode: config.digest,
          table_digests: digested.value,
          roles_file: rolesFile,
          tool: { name: 'basement-backup', version: VERSION },
          host: os.hostname(),
          trigger: req.trigger,
        };
        await repo.writeManifest(manifest);
      } catch (err) {
        await writer.abort();
        // a failure after commit (writing the roles or the manifest) must not leave files without a manifest
        await repo.storage.delete(file).catch(() => undefined);
        if (rolesFile) await repo.storage.delete(rolesFile).catch(() => undefined);
        throw err;
      }
    } finally {
      await client.end().catch(() => undefined);
    }
    log.info('backup completed', { id: manifest.id, file: manifest.file, size: formatBytes(manifest.size_bytes), duration_ms: manifest.duration_ms });

    // Retention runs only after a good backup, and a retention problem never undoes it.
    let retention: RetentionDecision[] = [];
    let retentionError: BackupError | undefined;
    try {
      retention = await expireBackups(repo, database, config.retention);
    } catch (err) {
      retentionError = err instanceof BackupError ? err : new BackupError('STORAGE', `retention failed: ${(err as Error).message}`, { cause: err });
      log.error('retention failed', { error: retentionError.message });
    }
    return { manifest, path: repo.storage.localPath?.(manifest.file), retention, retentionError };
  } finally {
    lock.release();
  }
}

async function uniqueId(app: App, database: string, at: Date): Promise<string> {
  const names = new Set((await app.repo.storage.list()).map((o) => o.name));
  for (let seq = 0; ; seq++) {
    const id = backupId(database, at, seq);
    if (!names.has(manifestFileName(id)) && !names.has(dataFileName(id, app.config.format))) return id;
  }
}

/**
 * Refuses a backup that clearly will not fit: the expected size is the previous backup's, or
 * half the database's size when there is none, and BACKUP_MIN_FREE_MB must stay free after it
 * (a full disk can stop PostgreSQL itself when they share it).
 */
async function checkSpace(app: App, database: string, databaseSize: number): Promise<void> {
  const free = await app.repo.storage.freeBytes();
  if (free === undefined) return;
  const previous = (await app.repo.listGood(database))[0];
  const expected = previous ? previous.size_bytes : Math.round(databaseSize / 2);
  const needed = expected + app.config.minFreeBytes;
  if (free < needed) {
    throw new BackupError(
      'NO_SPACE',
      `only ${formatBytes(free)} free in ${app.config.backupDir}; the backup needs about ${formatBytes(expected)} plus the ${formatBytes(app.config.minFreeBytes)} reserve (BACKUP_MIN_FREE_MB)`,
      { hint: 'Free disk space (delete old files, or lower BACKUP_RETENTION_DAYS) or point BACKUP_DIR at a larger disk.' },
    );
  }
}

import os from 'node:os';
import type { App, Target } from '../app';
import { digestTables } from '../digest/table-digests';
import { dumpGlobals } from '../dump/globals';
import { runPgDump } from '../dump/pg-dump';
import { archiveCheck } from '../dump/stream-check';
import { asBackupError, BackupError } from '../errors';
import { acquireLock } from '../lock/file-lock';
import { log } from '../logger';
import { checkDumpCompatible } from '../pg/binaries';
import { listUserTables, qualified, serverInfo } from '../pg/catalog';
import { classifyPgError, connect, libpqEnv, stopDumpSessions } from '../pg/connection';
import { expireBackups } from '../retention/expire';
import type { RetentionDecision } from '../retention/policy';
import { allTargetsFailed, CHECK_BRANCH, Fanout } from '../storage/fanout';
import { backupId, belongsTo, dataFileName, manifestFileName, rolesFileName, type Manifest, type TargetState } from '../storage/manifest';
import type { ObjectWriter } from '../storage/types';
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
  /** Local path of the backup on the first target that has one. */
  path: string | undefined;
  /** Targets that hold the backup. */
  stored: string[];
  /** Targets that failed, with why; the backup is safe on the others. */
  failedTargets: { name: string; error: BackupError }[];
  retention: { target: string; decisions: RetentionDecision[] }[];
  retentionErrors: { target: string; error: BackupError }[];
}

/**
 * Takes one backup of the configured database, streamed once from pg_dump to every storage
 * target at the same time, then applies each target's retention. On each target either a
 * complete, checked backup with its manifest exists afterwards, or nothing new does. The backup
 * succeeds when at least one target holds it; the others are reported.
 */
export async function runBackup(app: App, req: BackupRequest): Promise<BackupResult> {
  const { config } = app;
  const database = config.db.database;
  const signal = req.signal ?? new AbortController().signal;
  const lock = acquireLock(app.lockFile(database), `backup of ${database}`);
  try {
    const reachable: Target[] = [];
    const failed = new Map<string, BackupError>();
    for (const t of app.targets) {
      try {
        const removed = await t.repo.storage.cleanupTemporary((n) => belongsTo(database, n));
        if (removed.length > 0) log.warn('removed leftovers of an interrupted backup', { target: t.name, files: removed });
        reachable.push(t);
      } catch (err) {
        failed.set(t.name, asBackupError(err));
      }
    }

    const bins = await app.binaries();
    const client = await connect(config.db);
    let manifest: Manifest;
    const stored: Target[] = [];
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
      const id = await uniqueId(app, reachable, database, started);
      const file = dataFileName(id, config.format);
      const args = ['--no-password', `--snapshot=${snapshot}`];
      if (config.format === 'custom') {
        args.push('--format=custom');
        if (config.compression !== undefined) args.push(`--compress=${config.compression}`);
      } else {
        args.push('--format=plain');
      }
      log.info('backup started', {
        database,
        id,
        format: config.format,
        trigger: req.trigger,
        pg_dump: bins.version,
        targets: app.targets.map((t) => t.name).join(','),
      });

      const writers = new Map<Target, ObjectWriter>();
      for (const t of reachable) {
        try {
          writers.set(t, await t.repo.storage.createWriter(file));
        } catch (err) {
          failed.set(t.name, asBackupError(err));
        }
      }
      if (writers.size === 0) throw allTargetsFailed(failed);
      const check = archiveCheck(config.format, bins.path('pg_restore'));
      const fanout = new Fanout([
        ...[...writers].map(([t, w]) => ({ name: t.name, stream: w.stream })),
        { name: CHECK_BRANCH, stream: check.stream, optional: true },
      ]);
      let rolesFile: string | null = null;
      try {
        // pg_dump streams the archive to every target while this connection, still in the same
        // snapshot, counts (and digests) every table for later verification. If the dump fails
        // or is stopped, the digest is cancelled rather than read to the end.
        const dumpAppName = `basement-backup pg_dump ${process.pid}`;
        const dumping = runPgDump({
          pgDump: bins.path('pg_dump'),
          env: libpqEnv(config.db, database, process.env, dumpAppName),
          args,
          gzipLevel: config.format === 'plain' ? (config.compression ?? 6) : undefined,
          out: fanout,
          signal,
        });
        const digesting = digestTables(client, tables, config.digest);
        // The roles are small and independent of the dump: read them meanwhile.
        const globalsP = dumpGlobals(bins.path('pg_dumpall'), libpqEnv(config.db), database, server.superuser);
        void dumping.catch(() => stopDumpSessions(config.db, backendPid, dumpAppName));
        const [dumped, digested] = await Promise.allSettled([dumping, digesting]);
        if (dumped.status === 'rejected') throw dumped.reason;
        if (digested.status === 'rejected') throw classifyPgError(digested.reason, config.db);
        const dump = dumped.value;
        await client.query('COMMIT');
        if (dump.sizeBytes === 0) {
          throw new BackupError('DUMP_INVALID', 'pg_dump produced an empty file', { hint: "Read pg_dump's messages in the log." });
        }
        await check.verify(tables);
        if (signal.aborted) throw new BackupError('ABORTED', 'the backup was stopped before it finished', { hint: 'The partial file was removed.' });
        for (const [name, err] of fanout.failures) if (name !== CHECK_BRANCH) failed.set(name, err);

        const globals = await globalsP;
        if (globals !== undefined) rolesFile = rolesFileName(id);
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
        // Commit the data everywhere it arrived, then the roles, then (last) the manifests, each
        // of which records every target's outcome.
        const candidates = [...writers].filter(([t]) => !failed.has(t.name));
        for (const [t, w] of candidates) {
          try {
            await w.commit();
            if (globals !== undefined) await t.repo.storage.writeAtomic(rolesFileName(id), globals);
            stored.push(t);
          } catch (err) {
            failed.set(t.name, asBackupError(err));
            await t.repo.storage.delete(file).catch(() => undefined);
          }
        }
        if (stored.length === 0) throw allTargetsFailed(failed);
        const at = finished.toISOString();
        const states: Record<string, TargetState> = {};
        for (const t of app.targets)
          states[t.name] = failed.has(t.name) ? { state: 'failed', at, error: failed.get(t.name)!.message } : { state: 'stored', at };
        manifest.targets = states;
        for (const t of [...stored]) {
          try {
            await t.repo.writeManifest(manifest);
          } catch (err) {
            failed.set(t.name, asBackupError(err));
            stored.splice(stored.indexOf(t), 1);
            await t.repo.storage.delete(file).catch(() => undefined);
            if (rolesFile) await t.repo.storage.delete(rolesFile).catch(() => undefined);
          }
        }
        if (stored.length === 0) throw allTargetsFailed(failed);
      } catch (err) {
        // Nothing of this backup may stay behind without a manifest.
        for (const [t, w] of writers) {
          if (stored.includes(t)) continue;
          await w.abort();
          await t.repo.storage.delete(file).catch(() => undefined);
          if (rolesFile) await t.repo.storage.delete(rolesFile).catch(() => undefined);
        }
        throw err;
      } finally {
        for (const [t, w] of writers) if (!stored.includes(t)) await w.abort();
      }
    } finally {
      await client.end().catch(() => undefined);
    }
    log.info('backup completed', {
      id: manifest.id,
      file: manifest.file,
      size: formatBytes(manifest.size_bytes),
      duration_ms: manifest.duration_ms,
      stored: stored.map((t) => t.name).join(','),
      failed: [...failed.keys()].join(',') || undefined,
    });

    // Retention runs only after a good backup, per target, and a retention problem never undoes it.
    const retention: BackupResult['retention'] = [];
    const retentionErrors: BackupResult['retentionErrors'] = [];
    for (const t of stored) {
      try {
        retention.push({ target: t.name, decisions: await expireBackups(t.repo, database, t.retention) });
      } catch (err) {
        const e = asBackupError(err);
        retentionErrors.push({ target: t.name, error: e });
        log.error('retention failed', { target: t.name, error: e.message });
      }
    }
    const withPath = stored.find((t) => t.repo.storage.localPath !== undefined);
    return {
      manifest,
      path: withPath?.repo.storage.localPath?.(manifest.file),
      stored: stored.map((t) => t.name),
      failedTargets: [...failed].map(([name, error]) => ({ name, error })),
      retention,
      retentionErrors,
    };
  } finally {
    lock.release();
  }
}

async function uniqueId(app: App, targets: Target[], database: string, at: Date): Promise<string> {
  const names = new Set<string>();
  for (const t of targets) {
    try {
      for (const o of await t.repo.storage.list()) names.add(o.name);
    } catch {
      // an unreachable target fails later, with a clear error
    }
  }
  for (let seq = 0; ; seq++) {
    const id = backupId(database, at, seq);
    if (!names.has(manifestFileName(id)) && !names.has(dataFileName(id, app.config.format))) return id;
  }
}

/**
 * Refuses a backup that clearly will not fit on a target that can tell its free space: the
 * expected size is the previous backup's, or half the database's size when there is none, and
 * BACKUP_MIN_FREE_MB must stay free after it (a full disk can stop PostgreSQL itself when they
 * share it).
 */
async function checkSpace(app: App, database: string, databaseSize: number): Promise<void> {
  for (const t of app.targets) {
    const free = await t.repo.storage.freeBytes().catch(() => undefined);
    if (free === undefined) continue;
    const previous = (await t.repo.listGood(database))[0];
    const expected = previous ? previous.size_bytes : Math.round(databaseSize / 2);
    const needed = expected + app.config.minFreeBytes;
    if (free < needed) {
      throw new BackupError(
        'NO_SPACE',
        `only ${formatBytes(free)} free in ${t.repo.storage.location}; the backup needs about ${formatBytes(expected)} plus the ${formatBytes(app.config.minFreeBytes)} reserve (BACKUP_MIN_FREE_MB)`,
        { hint: 'Free disk space (delete old files, or lower BACKUP_RETENTION_DAYS) or point BACKUP_DIR at a larger disk.' },
      );
    }
  }
}

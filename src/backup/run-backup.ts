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
import { diagnoseSessions, explainQueryError, stopSessions } from '../pg/activity';
import { listUserTables, qualified, serverInfo } from '../pg/catalog';
import { connect, libpqEnv } from '../pg/connection';
import { dumpPrivilegeError, missingDumpPrivileges } from '../pg/privileges';
import { expireBackups, type RetentionOutcome } from '../retention/expire';
import { applyRetention } from '../retention/policy';
import { allTargetsFailed, CHECK_BRANCH, Fanout } from '../storage/fanout';
import { backupId, belongsTo, FUTURE_TOLERANCE_MS, idOf, isKept, rolesFileName, dataFileName, type Manifest, type TargetState } from '../storage/manifest';
import { isGood, type Listing } from '../storage/repository';
import type { ObjectWriter } from '../storage/types';
import { formatAge, formatBytes } from '../util/format';
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
  retention: ({ target: string } & RetentionOutcome)[];
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
    const listings = new Map<Target, Listing>();
    const failed = new Map<string, BackupError>();
    for (const t of app.targets) {
      try {
        const removed = await t.repo.storage.cleanupTemporary((n) => belongsTo(database, n));
        if (removed.length > 0) log.warn('removed leftovers of an interrupted backup', { target: t.name, files: removed });
        listings.set(t, await t.repo.removeOrphans(database, await t.repo.scan(database), new Date()));
        reachable.push(t);
      } catch (err) {
        failed.set(t.name, asBackupError(err));
      }
    }

    const bins = await app.binaries();
    const client = await connect(config.db);
    let clockSkewMs = 0;
    let manifest: Manifest;
    const stored: Target[] = [];
    try {
      const server = await serverInfo(client);
      const backendPid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      checkDumpCompatible(bins, server.versionNum);
      clockSkewMs = server.nowMs - Date.now();
      await checkSpace(app, listings, server.databaseSize);

      // Take the table list in the snapshot pg_dump will use, so the check compares like with like.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      // The digest below reads every table too: a lock it cannot get in time fails the backup.
      await client.query(`SET LOCAL lock_timeout = ${config.stallMs}`);
      const snapshot = (await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
      const tables = await listUserTables(client);
      // Refused privileges fail here, named with their GRANT, before pg_dump starts.
      const { role, missing } = await missingDumpPrivileges(client);
      if (missing.length > 0) throw dumpPrivilegeError(missing, role, config.db);

      const started = new Date();
      const id = uniqueId(database, listings, started);
      const seq = nextSeq(listings, app.state.read(database).last_seq);
      const file = dataFileName(id, config.format);
      const args = ['--no-password', `--snapshot=${snapshot}`];
      if (config.format === 'custom') {
        args.push('--format=custom');
        if (config.compression !== undefined) args.push(`--compress=${config.compression}`);
      } else {
        args.push('--format=plain');
      }
      if (signal.aborted) throw new BackupError('ABORTED', 'the backup was stopped before it started', { hint: 'Nothing was written.' });
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
      const check = archiveCheck(config.format);
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
          stall: {
            ms: config.stallMs,
            diagnose: () => diagnoseSessions(config.db, database, { appName: dumpAppName, pids: [backendPid] }, 'pg_dump'),
          },
        });
        const digesting = digestTables(client, tables, config.digest);
        // The roles are small and independent of the dump: read them meanwhile.
        const globalsP = dumpGlobals(bins.path('pg_dumpall'), libpqEnv(config.db), database, server.superuser);
        void dumping.catch(() => stopSessions(config.db, database, dumpAppName, { cancelPid: backendPid }));
        const [dumped, digested] = await Promise.allSettled([dumping, digesting]);
        if (dumped.status === 'rejected') throw dumped.reason;
        if (digested.status === 'rejected') throw await explainQueryError(digested.reason, config.db, "the backup's snapshot connection", config.stallMs);
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
          seq,
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
        const etags = new Map<Target, string>();
        for (const [t, w] of candidates) {
          try {
            await w.commit();
            // a store with ETags: remember this copy's, so retention can confirm it later without reading it all
            if (!t.repo.storage.localPath) {
              const etag = (await t.repo.storage.stat(file))?.etag;
              if (etag) etags.set(t, etag);
            }
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
        for (const t of app.targets) {
          const etag = etags.get(t);
          states[t.name] = failed.has(t.name)
            ? { state: 'failed', at, error: failed.get(t.name)!.message }
            : { state: 'stored', at, ...(etag ? { etag } : {}) };
        }
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
    // Ages are measured with this machine's clock: when the database server's clock disagrees, one
    // of them is wrong, and deleting by age could delete what should be kept.
    const skewed =
      Math.abs(clockSkewMs) > FUTURE_TOLERANCE_MS
        ? new BackupError(
            'CLOCK',
            `this machine's clock is ${formatAge(Math.abs(clockSkewMs))} ${clockSkewMs > 0 ? 'behind' : 'ahead of'} the database server's; retention deleted nothing`,
            { hint: 'Fix the clock that is wrong (timedatectl; is NTP on?). Retention runs again after the next backup once the clocks agree.' },
          )
        : undefined;
    for (const t of stored) {
      if (skewed) {
        retentionErrors.push({ target: t.name, error: skewed });
        continue;
      }
      try {
        retention.push({ target: t.name, ...(await expireBackups(t.repo, database, t.retention)) });
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

/** The first free id for a backup started at `at`: a retry within the same second gets a suffix. */
function uniqueId(database: string, listings: Map<Target, Listing>, at: Date): string {
  const taken = new Set<string>();
  for (const l of listings.values()) {
    for (const b of l.backups) taken.add(b.id);
    for (const o of l.orphans) taken.add(idOf(database, o.name)!);
  }
  for (let n = 0; ; n++) {
    const id = backupId(database, at, n);
    if (!taken.has(id)) return id;
  }
}

/** One more than the highest sequence number of any backup on any reachable target, or remembered from the last success. */
function nextSeq(listings: Map<Target, Listing>, lastSeq: number | undefined): number {
  let max = lastSeq ?? 0;
  let unnumbered = 0;
  for (const l of listings.values()) {
    for (const b of l.backups) {
      if (b.manifest?.seq !== undefined) max = Math.max(max, b.manifest.seq);
      else unnumbered++;
    }
  }
  return Math.max(max, unnumbered) + 1;
}

/**
 * Refuses a backup that clearly will not fit on a target that can tell its free space: the
 * expected size is the previous backup's, or half the database's size when there is none, and
 * BACKUP_MIN_FREE_MB must stay free after it (a full disk can stop PostgreSQL itself when they
 * share it). The hint says what would actually free space there.
 */
async function checkSpace(app: App, listings: Map<Target, Listing>, databaseSize: number): Promise<void> {
  for (const [t, listing] of listings) {
    const free = await t.repo.storage.freeBytes().catch(() => undefined);
    if (free === undefined) continue;
    const previous = listing.backups.find(isGood)?.manifest;
    const expected = previous ? previous.size_bytes : Math.round(databaseSize / 2);
    const needed = expected + app.config.minFreeBytes;
    if (free < needed) {
      throw new BackupError(
        'NO_SPACE',
        `only ${formatBytes(free)} free in ${t.repo.storage.location}; the backup needs about ${formatBytes(expected)} plus the ${formatBytes(app.config.minFreeBytes)} reserve (BACKUP_MIN_FREE_MB)`,
        { hint: spaceHint(t, listing, needed - free) },
      );
    }
  }
}

/** What would free space on a full target, measured on its backups, largest first. */
function spaceHint(t: Target, listing: Listing, short: number, now = new Date()): string {
  const bytes = (xs: { size: number }[]) => xs.reduce((s, x) => s + x.size, 0);
  const sized = (ms: Manifest[]) => ms.map((m) => ({ size: m.size_bytes }));
  const { days, minCount } = t.retention;
  const cutoff = now.getTime() - days * 86400_000;
  const decisions = applyRetention(
    listing.backups.filter(isGood).map((b) => b.manifest),
    t.retention,
    now,
  );
  const kept = decisions.filter((d) => d.action === 'keep').map((d) => d.manifest);
  const deletable = decisions.filter((d) => d.action === 'delete').map((d) => d.manifest);
  const pinned = kept.filter((m) => isKept(m, now));
  const byCount = kept.filter((m, i) => i > 0 && !isKept(m, now) && Date.parse(m.created_at) < cutoff);
  const byDays = kept.filter((m, i) => i >= minCount && !isKept(m, now) && Date.parse(m.created_at) >= cutoff);
  const damaged = listing.backups.filter((b) => !isGood(b)).map((b) => ({ size: b.storedSize ?? 0 }));
  const options: { size: number; text: string }[] = [
    {
      size: bytes(sized(deletable)),
      text: `\`basement-backup prune\` deletes ${deletable.length} backup(s) retention already allows to go (it runs only after a successful backup)`,
    },
    {
      size: bytes(damaged),
      text: `${damaged.length} damaged backup(s) never count and retention never deletes them: \`basement-backup prune --damaged\` removes them`,
    },
    { size: bytes(listing.orphans), text: `${listing.orphans.length} object(s) no manifest owns: \`basement-backup prune\` removes them` },
    {
      size: bytes(sized(byCount)),
      text: `${byCount.length} backup(s) older than ${days} days are kept only by the minimum count (BACKUP_RETENTION_MIN_COUNT, now ${minCount}): lowering it frees them`,
    },
    {
      size: bytes(sized(byDays)),
      text: `${byDays.length} backup(s) beyond the newest ${minCount} are kept only because they are younger than ${days} days (BACKUP_RETENTION_DAYS): lowering it frees them`,
    },
    { size: bytes(sized(pinned)), text: `${pinned.length} pinned backup(s) (--keep) are kept until their date` },
  ]
    .filter((o) => o.size > 0)
    .sort((a, b) => b.size - a.size);
  const total = bytes(listing.backups.map((b) => ({ size: b.storedSize ?? 0 }))) + bytes(listing.orphans);
  const lines = options.map((o) => `${o.text} (${formatBytes(o.size)})`);
  const enough = bytes(options) >= short;
  const tail = enough
    ? ''
    : ` The backups use ${formatBytes(total)} in all${options.length > 0 ? ', not enough' : ''}: free ${formatBytes(short)} elsewhere on that disk (\`du -xsh /* | sort -h\`), or point BACKUP_DIR at a larger disk.`;
  return lines.length > 0 ? `${lines.join('; ')}.${tail}` : tail.trim();
}

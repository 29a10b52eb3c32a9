import os from 'node:os';
import type pg from 'pg';
import type { App, Target } from '../app';
import { digestMethodFor, digestTables, type TableDigests } from '../digest/table-digests';
import { chooseCompressor, describeCompression, pgDumpCompressArg, storedCompression, type Compressor } from '../compress/compression';
import { checkRecipients, encryptText } from '../crypto/age';
import { dumpGlobals } from '../dump/globals';
import { runPgDump } from '../dump/pg-dump';
import type { DataOffsets } from '../dump/archive-offsets';
import { archiveCheck } from '../dump/stream-check';
import { asBackupError, BackupError } from '../errors';
import { acquireLock } from '../lock/file-lock';
import { log } from '../logger';
import { checkDumpCompatible, type PgBinaries } from '../pg/binaries';
import { diagnoseSessions, explainQueryError, stopSessions } from '../pg/activity';
import { listUserTables, qualified, serverInfo, type ServerInfo, type TableRef } from '../pg/catalog';
import { connect } from '../pg/connection';
import { libpqEnv } from '../pg/libpq';
import { dumpPrivilegeError, missingDumpPrivileges } from '../pg/privileges';
import { chainFor } from '../pipeline/names';
import { pack } from '../pipeline/write';
import { serverReading, type ClockReading } from '../retention/clock-check';
import { expireBackups, type RetentionOutcome } from '../retention/expire';
import { allTargetsFailed, CHECK_BRANCH, Fanout, STORED_BRANCH } from '../repository/fanout';
import { dataFileName, restoreCommand, rolesFileName, type Manifest, type TargetState } from '../repository/manifest';
import type { BackupWriter, Listing } from '../repository/repository';
import { formatBytes } from '../util/format';
import { withReleasers, type Releasers } from '../util/releasers';
import { VERSION } from '../version';
import { nextSeq, uniqueId } from './numbering';
import { checkSpace } from './space';

export interface BackupRequest {
  trigger: Manifest['trigger'];
  label?: string | undefined;
  keepUntil?: string | null | undefined;
  signal?: AbortSignal | undefined;
  /** Called once this run holds the database's backup lock (a run refused by the lock never calls it). */
  onLocked?: (() => void) | undefined;
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

/** What a backup's lock says it is for: how the monitor tells a running backup from sync, prune or pins, which hold the same lock. */
export function backupLockPurpose(database: string): string {
  return `backup of ${database}`;
}

/**
 * Takes one backup of the configured database, streamed once from pg_dump to every storage
 * target at the same time, then applies each target's retention. On each target either a
 * complete, checked backup with its manifest exists afterwards, or nothing new does. The backup
 * succeeds when at least one target holds it; the others are reported.
 *
 * Stages: prepare (lock, leftovers, connection, snapshot, space) → stream (pg_dump into the
 * fan-out, archive check, digests) → commit → retention. Each resource is released where it is
 * taken, last in, first out: a writer not committed is aborted, the connection closed, the lock released.
 */
export async function runBackup(app: App, req: BackupRequest): Promise<BackupResult> {
  const database = app.database.db.database;
  const signal = req.signal ?? new AbortController().signal;
  const { encryption } = app.config;
  if (encryption) await checkRecipients(encryption.recipients, encryption.variable);
  return withReleasers(async (releasers) => {
    const lock = acquireLock(app.lockFile(database), backupLockPurpose(database));
    releasers.add(() => lock.release());
    req.onLocked?.();
    // pg_dump is looked up (its --version run) while the targets are listed
    void app.binaries().catch(() => undefined);
    const targets = await prepareTargets(app);
    const { manifest, stored, clock } = await withReleasers(async (r) => {
      const source = await openSnapshot(app, targets, r);
      const backup = await startBackup(app, req, targets, source, signal, r);
      const streamed = await streamDump(app, backup, source, signal);
      const m = manifestFor(app, req, source, backup, streamed);
      return { manifest: m, stored: await commitBackup(app, backup, m, streamed.globals), clock: source.clock };
    });
    log.info('backup completed', {
      id: manifest.id,
      file: manifest.file,
      size: formatBytes(manifest.size_bytes),
      duration_ms: manifest.duration_ms,
      stored: stored.map((t) => t.name).join(','),
      failed: [...targets.failed.keys()].join(',') || undefined,
    });
    const { retention, retentionErrors } = await expireEach(database, stored, clock, app.config.timezone);
    const withPath = stored.find((t) => t.repo.localPath(manifest.file) !== undefined);
    return {
      manifest,
      path: withPath?.repo.localPath(manifest.file),
      stored: stored.map((t) => t.name),
      failedTargets: [...targets.failed].map(([name, error]) => ({ name, error })),
      retention,
      retentionErrors,
    };
  });
}

/** The targets a backup can be written to, each with its backups listed, and those that failed (with why). */
interface Targets {
  listings: Map<Target, Listing>;
  /** Targets that failed so far, by name; grows as the backup goes on. */
  failed: Map<string, BackupError>;
}

/** Prepare: removes each target's leftovers of interrupted backups and lists its backups; a target that fails is set aside. */
async function prepareTargets(app: App): Promise<Targets> {
  const database = app.database.db.database;
  const listings = new Map<Target, Listing>();
  const failed = new Map<string, BackupError>();
  for (const t of app.targets) {
    try {
      await t.repo.checkLock();
      await t.repo.removeLeftovers(database);
      listings.set(t, await t.repo.removeOrphans(database, await t.repo.scan(database), new Date()));
    } catch (err) {
      failed.set(t.name, asBackupError(err));
    }
  }
  return { listings, failed };
}

/** Where the dump comes from: a connection holding an exported snapshot, and what was read in it. */
interface Source {
  bins: PgBinaries;
  client: pg.Client;
  server: ServerInfo;
  backendPid: number;
  snapshot: string;
  tables: TableRef[];
  /** The database server's clock, read at the start: retention's second opinion on this machine's. */
  clock: ClockReading;
}

/**
 * Prepare: connects (closed when the backup ends), checks pg_dump against the server and the
 * targets' free space, and exports the snapshot pg_dump will use, with the table list taken in it.
 */
async function openSnapshot(app: App, targets: Targets, releasers: Releasers): Promise<Source> {
  const { config } = app;
  const bins = await app.binaries();
  const client = await connect(app.database.db);
  releasers.add(() => client.end().catch(() => undefined));
  const server = await serverInfo(client);
  const clock = serverReading(server.nowMs);
  const backendPid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  checkDumpCompatible(bins, server.versionNum);
  await checkSpace(app, targets.listings, server.databaseSize);

  // Take the table list in the snapshot pg_dump will use, so the check compares like with like.
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  // The digest reads every table too: a lock it cannot get in time fails the backup.
  await client.query(`SET LOCAL lock_timeout = ${config.stallMs}`);
  const snapshot = (await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
  const tables = await listUserTables(client);
  // Refused privileges fail here, named with their GRANT, before pg_dump starts.
  const { role, missing } = await missingDumpPrivileges(client);
  if (missing.length > 0) throw dumpPrivilegeError(missing, role, app.database.db);
  return { bins, client, server, backendPid, snapshot, tables, clock };
}

/** The backup being written: its id and number, and a writer on each target that took it. */
interface Backup {
  id: string;
  seq: number;
  started: Date;
  writers: Map<Target, BackupWriter>;
  /** How the dump is compressed (BACKUP_COMPRESSION and the zstd at hand). */
  compressor: Compressor;
  /** The data file's name on every target: its suffixes name the pipeline's codecs. */
  file: string;
  /** Targets that failed, by name (those of prepare first); the stages add theirs. */
  failed: Map<string, BackupError>;
}

/** Names the backup and opens a writer on each reachable target; a writer not committed is aborted when the backup ends. */
async function startBackup(app: App, req: BackupRequest, targets: Targets, source: Source, signal: AbortSignal, releasers: Releasers): Promise<Backup> {
  const { config } = app;
  const database = app.database.db.database;
  const started = new Date();
  const id = uniqueId(database, targets.listings, started);
  const seq = nextSeq(targets.listings, app.state.read(database).last_seq);
  const compressor = chooseCompressor(config.compression, app.database.format, app.zstd(), source.bins.major);
  if (compressor.fallback && !fallbackWarned) {
    fallbackWarned = true;
    log.warn(compressor.fallback);
  }
  const encrypted = config.encryption !== undefined;
  const stream = storedCompression(compressor);
  const file = dataFileName(id, app.database.format, encrypted, stream);
  if (signal.aborted) throw new BackupError('ABORTED', 'the backup was stopped before it started', { hint: 'Nothing was written.' });
  log.info('backup started', {
    database,
    id,
    format: app.database.format,
    compression: describeCompression(compressor),
    trigger: req.trigger,
    pg_dump: source.bins.version,
    targets: app.targets.map((t) => t.name).join(','),
  });
  if (!config.encryption && [...targets.listings.values()].some((l) => l.backups[0]?.manifest?.encryption)) {
    log.warn('encryption is off, but the newest backup was encrypted: this one is stored readable', {
      hint: 'Set BACKUP_AGE_RECIPIENTS (or BACKUP_AGE_RECIPIENTS_FILE) again unless turning encryption off was meant.',
    });
  }
  const writers = new Map<Target, BackupWriter>();
  for (const t of targets.listings.keys()) {
    try {
      const w = await t.repo.begin(id, app.database.format, encrypted, stream, req.keepUntil ?? null);
      releasers.add(() => w.abort());
      writers.set(t, w);
    } catch (err) {
      targets.failed.set(t.name, asBackupError(err));
    }
  }
  if (writers.size === 0) throw allTargetsFailed(targets.failed);
  return { id, seq, started, writers, compressor, file, failed: targets.failed };
}

/** The gzip fallback (no zstd here) is said once per process, not at every backup. */
let fallbackWarned = false;

/** What the stream stage produced: the stored bytes' digest, the tables' record, the roles. */
interface Streamed {
  sha256: string;
  sizeBytes: number;
  /** sha256 of what encryption was given (encrypted backups only). */
  plainSha256: string | undefined;
  /** Size of pg_dump's own output. */
  dumpSizeBytes: number;
  /** Where the archive's data blocks are (custom format), as the archive check found them. */
  dataOffsets: DataOffsets | undefined;
  digests: TableDigests;
  globals: string | undefined;
  finished: Date;
}

/**
 * Stream: pg_dump's archive goes to the archive check and, through the pipeline (compression,
 * encryption: the codecs the file's name says), to every target at once, while the snapshot
 * connection counts (and digests) every table for later verification. If the dump fails or is
 * stopped, the digest is cancelled rather than read to the end. A target that failed meanwhile is
 * added to `backup.failed`.
 */
async function streamDump(app: App, backup: Backup, source: Source, signal: AbortSignal): Promise<Streamed> {
  const { config } = app;
  const database = app.database.db.database;
  const { client, bins, backendPid, tables } = source;
  const check = archiveCheck(app.database.format);
  const toTargets = new Fanout([...backup.writers].map(([t, w]) => ({ name: t.name, stream: w.stream })));
  const { encryption } = config;
  const sink = await pack(
    chainFor(storedCompression(backup.compressor), encryption !== undefined),
    {
      compressor: backup.compressor,
      recipients: encryption?.recipients,
      age: app.ageProgram(),
    },
    toTargets,
  );
  // The check reads pg_dump's own bytes: a stage changes what is stored, never what is checked.
  const out = new Fanout([
    { name: STORED_BRANCH, stream: sink.input },
    { name: CHECK_BRANCH, stream: check.stream, optional: true },
  ]);
  const dumpAppName = `basement-backup pg_dump ${process.pid}`;
  const dumping = runPgDump({
    pgDump: bins.path('pg_dump'),
    env: libpqEnv(app.database.db, bins.env, database, dumpAppName),
    args: dumpArgs(app.database.format, backup.compressor, source.snapshot),
    out,
    signal,
    stall: {
      ms: config.stallMs,
      diagnose: () => diagnoseSessions(app.database.db, database, { appName: dumpAppName, pids: [backendPid] }, 'pg_dump'),
    },
  });
  const digesting = digestTables(client, tables, app.database.digest, { method: digestMethodFor(source.server.versionNum) });
  // The roles are small and independent of the dump: read them meanwhile.
  const globalsP = dumpGlobals(bins.path('pg_dumpall'), libpqEnv(app.database.db, bins.env), database, source.server.superuser);
  void dumping.catch(() => stopSessions(app.database.db, database, dumpAppName, { cancelPid: backendPid }));
  const [dumped, digested] = await Promise.allSettled([dumping, digesting]);
  if (dumped.status === 'rejected') throw dumped.reason;
  if (digested.status === 'rejected') throw await explainQueryError(digested.reason, app.database.db, "the backup's snapshot connection", config.stallMs);
  await sink.done;
  await client.query('COMMIT');
  if (sink.inputSize() === 0) {
    throw new BackupError('DUMP_INVALID', 'pg_dump produced an empty file', { hint: "Read pg_dump's messages in the log." });
  }
  const checked = await check.verify(tables);
  if (signal.aborted) throw new BackupError('ABORTED', 'the backup was stopped before it finished', { hint: 'The partial file was removed.' });
  for (const [name, err] of toTargets.failures) backup.failed.set(name, err);
  const stored = sink.stored();
  const globals = await globalsP;
  return {
    sha256: stored.sha256,
    sizeBytes: stored.size,
    plainSha256: sink.plainSha256(),
    dumpSizeBytes: sink.inputSize(),
    dataOffsets: checked.offsets,
    digests: digested.value,
    // the roles hold password hashes: encrypted as the data is
    globals: globals !== undefined && config.encryption ? await encryptText(globals, config.encryption.recipients) : globals,
    finished: new Date(),
  };
}

function dumpArgs(format: App['database']['format'], compressor: Compressor, snapshot: string): string[] {
  const args = ['--no-password', `--snapshot=${snapshot}`];
  if (format === 'custom') {
    args.push('--format=custom');
    const compress = pgDumpCompressArg(compressor);
    if (compress) args.push(compress);
  } else {
    args.push('--format=plain');
  }
  return args;
}

/** The manifest of the backup just streamed; `targets` is filled in by the commit stage. */
function manifestFor(app: App, req: BackupRequest, source: Source, backup: Backup, streamed: Streamed): Manifest {
  const { config } = app;
  const { id, started } = backup;
  const { finished } = streamed;
  return {
    manifest_version: 1,
    id,
    seq: backup.seq,
    file: backup.file,
    database: app.database.db.database,
    created_at: started.toISOString(),
    finished_at: finished.toISOString(),
    duration_ms: finished.getTime() - started.getTime(),
    size_bytes: streamed.sizeBytes,
    sha256: streamed.sha256,
    format: app.database.format,
    compression: describeCompression(backup.compressor),
    restore_command: restoreCommand(backup.file, app.database.format),
    dump_size_bytes: streamed.dumpSizeBytes,
    database_size_bytes: source.server.databaseSize,
    ...(source.server.dataDirectory ? { data_directory: source.server.dataDirectory } : {}),
    ...(streamed.dataOffsets ? { data_offsets: streamed.dataOffsets } : {}),
    pg_dump_version: source.bins.version,
    server_version: source.server.version,
    ...(source.server.systemIdentifier ? { system_identifier: source.server.systemIdentifier } : {}),
    label: req.label ?? null,
    keep_until: req.keepUntil ?? null,
    tables: source.tables.map(qualified),
    digest_mode: app.database.digest,
    ...(app.database.digest === 'full' ? { digest_method: digestMethodFor(source.server.versionNum) } : {}),
    table_digests: streamed.digests,
    roles_file: streamed.globals !== undefined ? rolesFileName(id, config.encryption !== undefined) : null,
    encryption: config.encryption ? { format: 'age', recipients: config.encryption.recipients } : null,
    ...(streamed.plainSha256 ? { plain_sha256: streamed.plainSha256 } : {}),
    tool: { name: 'basement-backup', version: VERSION },
    host: os.hostname(),
    trigger: req.trigger,
  };
}

/**
 * Commit: the data everywhere it arrived, then the roles, then (last) the manifests, each of
 * which records every target's outcome. Returns the targets that hold the backup; fails when none does.
 */
async function commitBackup(app: App, backup: Backup, manifest: Manifest, roles: string | undefined): Promise<Target[]> {
  const { failed } = backup;
  const etags = new Map<Target, string>();
  const committed: Target[] = [];
  for (const [t, w] of backup.writers) {
    if (failed.has(t.name)) continue;
    try {
      const { etag } = await w.commitData({ roles });
      if (etag) etags.set(t, etag);
      committed.push(t);
    } catch (err) {
      failed.set(t.name, asBackupError(err));
      await w.abort();
    }
  }
  if (committed.length === 0) throw allTargetsFailed(failed);
  const at = manifest.finished_at;
  const states: Record<string, TargetState> = {};
  for (const t of app.targets) {
    const etag = etags.get(t);
    states[t.name] = failed.has(t.name) ? { state: 'failed', at, error: failed.get(t.name)!.message } : { state: 'stored', at, ...(etag ? { etag } : {}) };
  }
  manifest.targets = states;
  const stored: Target[] = [];
  for (const t of committed) {
    try {
      await backup.writers.get(t)!.commit(manifest);
      stored.push(t);
    } catch (err) {
      failed.set(t.name, asBackupError(err));
    }
  }
  if (stored.length === 0) throw allTargetsFailed(failed);
  return stored;
}

/**
 * Retention: runs only after a good backup, per target that holds it, and a retention problem
 * never undoes the backup. Ages are measured with this machine's clock, checked against the
 * database server's as it read at the start (`clockDoubt`).
 */
async function expireEach(
  database: string,
  stored: Target[],
  clock: ClockReading,
  timeZone: string,
): Promise<Pick<BackupResult, 'retention' | 'retentionErrors'>> {
  const retention: BackupResult['retention'] = [];
  const retentionErrors: BackupResult['retentionErrors'] = [];
  for (const t of stored) {
    try {
      retention.push({ target: t.name, ...(await expireBackups(t.repo, database, t.retention, { clock, timeZone })) });
    } catch (err) {
      const e = asBackupError(err);
      retentionErrors.push({ target: t.name, error: e });
      log.error('retention failed', { target: t.name, error: e.message });
    }
  }
  return { retention, retentionErrors };
}

import path from 'node:path';
import type { App, Target } from '../app';
import type { Identities } from '../crypto/age';
import { compareDigests, type DigestMismatch, type TableDigests } from '../digest/table-digests';
import { asBackupError, BackupError } from '../errors';
import { findIncludingDeleted } from '../repository/deleted';
import { holdLock } from '../lock/file-lock';
import { log } from '../logger';
import { failureLines, pinged } from '../notify/ping';
import type { PgBinaries } from '../pg/binaries';
import { checkStored } from '../pipeline/checksum';
import { provesDamage, type Manifest, type Verification } from '../repository/manifest';
import { quoteIdent } from '../digest/table-digests';
import { restoreAndDigest } from './archive';
import { checkCanOpen } from './can-open';
import { chooseJobs } from './jobs';
import { keysFor } from './keys';
import { recordedOf } from './read-back';
import { damaged } from './restore-errors';
import { digestRestored } from './digest-restored';
import { refuseOtherServerDrill } from './origin';
import { connectAdmin, createDatabaseError, scratchName } from './scratch';
import { removeDrillLeftovers } from './clean-up';
import { dropDatabase, markUnfinished } from './unfinished';
import { withReleasers } from '../util/releasers';

export interface VerifyReport {
  manifest: Manifest;
  verification: Verification;
  /** Why the drill failed, with what to do (the record keeps only the message and code). */
  failure?: BackupError | undefined;
}

export function verifyLockFile(app: App, database: string): string {
  const lock = app.lockFile(database);
  return path.join(path.dirname(lock), `verify-${path.basename(lock)}`);
}

/**
 * A restore drill: checks the stored file against its manifest, restores it into a scratch
 * database (on VERIFY_DB_* when set), compares every table's row count and content digest with
 * those recorded in the dump's snapshot, records the result beside the manifest, always drops
 * the scratch database, and alerts on failure. Resolves with the report whatever the outcome;
 * throws only when the drill could not be run at all.
 */
export async function verifyBackup(app: App, idOrLatest: string, opts: DrillOptions = {}): Promise<VerifyReport> {
  return pinged(
    app.database.ping.verify,
    app.config.notify.timeoutMs,
    'Restore drill',
    (started) => drill(app, idOrLatest, { ...opts, onLocked: started }),
    (r) => ({
      error: r.failure,
      body: r.failure ? failureLines('Restore drill', r.failure) : `Restore drill of ${r.manifest.id} passed.\n`,
    }),
  );
}

/** Records the check beside the backup; not for a deleted one (its record would be an object no manifest owns): the log says so. */
async function record(target: Target, id: string, v: Verification, deleted: boolean): Promise<void> {
  if (!deleted) {
    await target.repo.writeVerification(id, v);
    return;
  }
  log.info('the check of a deleted backup is not recorded on its target; copy it back first (`basement-backup sync --deleted`) to keep records', {
    id,
    target: target.name,
    ok: v.ok,
  });
}

type DrillOptions = {
  signal?: AbortSignal;
  from?: string | undefined;
  fromOtherServer?: boolean;
  /**
   * Only what the target holds now, never a backup a delete hid there (the daemon's drills): a
   * bucket emptied with the server's key must fail its drill, not pass on what its versions kept.
   */
  currentOnly?: boolean;
  /** Called once the drill holds its lock (a drill refused by the lock never calls it). */
  onLocked?: (() => void) | undefined;
};

async function drill(app: App, idOrLatest: string, opts: DrillOptions): Promise<VerifyReport> {
  const { config } = app;
  const database = app.database.db.database;
  return withReleasers(async (releasers) => {
    holdLock(releasers, verifyLockFile(app, database), `restore drill of ${database}`);
    opts.onLocked?.();
    // a backup named by id is drilled even when marked damaged: a passed drill clears the mark;
    // one deleted on the target (a bucket with versions) is read from its versions, and its record is not written
    const on = app.target(opts.from).repo;
    const found = opts.currentOnly
      ? { manifest: await on.find(database, idOrLatest, { allowDamaged: true }), repo: on, deleted: false }
      : await findIncludingDeleted(on, database, idOrLatest, { allowDamaged: true });
    const { manifest, repo } = found;
    const target = { ...app.target(opts.from), repo };
    if (manifest.encryption && !config.ageIdentityFile) return await checksumOnly(app, target, manifest, found.deleted);
    // a backup of another server says nothing about this one: refused before anything is recorded
    await refuseOtherServerDrill(app.database.db, manifest, opts.fromOtherServer);
    const server = `${app.database.verifyDb.host}:${app.database.verifyDb.port}`;
    const verification: Verification = {
      kind: 'drill',
      verified_at: new Date().toISOString(),
      ok: false,
      checksum_ok: null,
      restore_ms: null,
      tables_checked: 0,
      rows_checked: 0,
      mismatches: [],
      error: null,
      error_code: null,
      server,
    };
    let failure: BackupError | undefined;
    try {
      // inside the record: a drill server that cannot be reached is a failed drill, not a damaged backup
      await removeDrillLeftovers(app);
      const mismatches = await restoreAndCompare(app, target, manifest, verification, opts.signal);
      verification.mismatches = mismatches;
      if (mismatches.length > 0) {
        const first = mismatches[0]!;
        throw new BackupError('VERIFY_FAILED', `${mismatches.length} table(s) differ after restore, first ${first.table}: ${first.problem}`, {
          detail: mismatches.map((m) => `${m.table}: ${m.problem}`).join('\n'),
          hint: 'The backup does not hold what was in the database when it was taken. Do not rely on it; check the disk and take a new backup.',
        });
      }
      verification.ok = true;
    } catch (err) {
      failure = asBackupError(err);
      if (failure.code === 'DAMAGED') verification.checksum_ok = false;
      verification.error = failure.message;
      verification.error_code = failure.code;
    }
    verification.verified_at = new Date().toISOString();
    if (failure?.code === 'ABORTED') {
      // Cut short by a shutdown: that proves nothing either way, so the last verdict stays.
      log.warn('restore drill stopped before it finished; nothing recorded', { id: manifest.id, target: target.name });
      return { manifest, verification, failure };
    }
    await record(target, manifest.id, verification, found.deleted);
    if (failure) {
      log.error('restore drill FAILED', { id: manifest.id, target: target.name, code: failure.code, error: failure.message });
      const on = app.targets.length > 1 ? ` on ${target.name}` : '';
      await app.alerter.send({ kind: 'problem', what: `Restore drill of backup ${manifest.id} (${app.database.name})${on} failed`, error: failure });
    } else {
      log.info('restore drill passed', {
        id: manifest.id,
        target: target.name,
        restore_ms: verification.restore_ms,
        tables: verification.tables_checked,
        rows: verification.rows_checked,
      });
    }
    return { manifest, verification, failure };
  });
}

/**
 * The drill proper: a scratch database (dropped again when the drill ends, however it ends), the
 * backup restored into it, and every table compared with the backup's record. Fills in `v`;
 * returns the tables that differ.
 */
async function restoreAndCompare(app: App, target: Target, m: Manifest, v: Verification, signal?: AbortSignal): Promise<DigestMismatch[]> {
  const { config } = app;
  return withReleasers(async (releasers) => {
    // pg_restore is looked up (its --version run) while the backup is checked
    const binaries = app.binaries();
    binaries.catch(() => undefined);
    // a backup this machine cannot open (no key for it, no zstd): the drill stops before the scratch database exists
    const keys = await keysFor(config.ageIdentityFile, m, app.askSecret);
    await checkCanOpen(target.repo, m, keys, app.zstd());
    const bins = await binaries;
    const scratch = scratchName(m.database);
    const admin = await connectAdmin(app.database.verifyDb);
    releasers.add(() => admin.end().catch(() => undefined));
    await admin.query(`CREATE DATABASE ${quoteIdent(scratch)} TEMPLATE template0`).catch((err: unknown) => {
      // The drill could not run: that says nothing about the backup, whose checksum stays "not checked".
      throw createDatabaseError(
        err,
        app.database.verifyDb,
        scratch,
        'or set VERIFY_DB_HOST, VERIFY_DB_USER and VERIFY_DB_PASSWORD to a server where the drill may.',
      );
    });
    await markUnfinished(admin, scratch, 'verify', m.database);
    releasers.add(() =>
      dropDatabase(admin, scratch).catch((err: unknown) =>
        log.error('could not drop the scratch database', { database: scratch, error: (err as Error).message }),
      ),
    );
    const actual = await restoreScratch(app, { target, m, v, bins, keys, scratch, signal });
    if (!actual) return [];
    v.tables_checked = Object.keys(m.table_digests).length;
    v.rows_checked = Object.values(actual).reduce((s, t) => s + t.rows, 0);
    return compareDigests(m.table_digests, actual);
  });
}

/**
 * Restores `m` into the scratch database and digests what arrived. The stored object streams
 * once: through sha256 (checked against the manifest) into pg_restore. The digest starts as soon
 * as pg_restore has loaded all data, and runs beside its index and constraint builds (or after
 * the restore, when that cannot be told). Undefined when the backup records no digests.
 */
async function restoreScratch(
  app: App,
  o: { target: Target; m: Manifest; v: Verification; bins: PgBinaries; keys: Identities | undefined; scratch: string; signal: AbortSignal | undefined },
): Promise<TableDigests | undefined> {
  const { config } = app;
  const { m, v, scratch } = o;
  const { jobs, why } =
    config.restoreJobs === undefined ? chooseJobs(m) : { jobs: config.restoreJobs, why: `${config.restoreJobs} job(s): BACKUP_RESTORE_JOBS` };
  log.info(`drill restores with ${why}`, { id: m.id });
  const { restoreMs, digested } = await restoreAndDigest(
    {
      bins: o.bins,
      keys: o.keys,
      age: app.ageProgram(),
      zstd: app.zstd(),
      db: app.database.verifyDb,
      target: scratch,
      // restoreArchive reads the data object from the target's storage (a local file directly, when it has a path)
      repo: o.target.repo,
      manifest: m,
      noOwner: true,
      signal: o.signal,
      stallMs: config.stallMs,
      jobs,
      temp: { dir: config.tempDir, reserveBytes: config.minFreeBytes, command: 'verify' },
    },
    () =>
      m.digest_mode === 'off'
        ? Promise.resolve(undefined)
        : digestRestored(app.database.verifyDb, scratch, m.digest_mode, { method: m.digest_method, connections: jobs }),
  );
  v.restore_ms = restoreMs;
  v.checksum_ok = true;
  return digested();
}

/**
 * An encrypted backup on a machine without its identity (the daemon's server, when the key is kept
 * elsewhere): only the stored bytes are checked against the manifest, and the record says that the
 * content was not drilled, so nothing pretends it was.
 */
async function checksumOnly(app: App, target: Target, m: Manifest, deleted: boolean): Promise<VerifyReport> {
  const { record: verification, failure } = checksumRecord(m, await target.repo.checksum(m), target.repo.name, NOT_DRILLED);
  await record(target, m.id, verification, deleted);
  if (failure) {
    log.error('checksum of an encrypted backup FAILED', { id: m.id, error: failure.message });
    await app.alerter.send({ kind: 'problem', what: `Checksum of backup ${m.id} (${app.database.name}) failed`, error: failure });
  } else {
    log.info('checksum ok; content not drilled: no identity here', {
      id: m.id,
      target: target.name,
      hint: 'Run `basement-backup verify` where BACKUP_AGE_IDENTITY_FILE is set.',
    });
  }
  return { manifest: m, verification, failure };
}

/** The record of a check of `m`'s stored bytes only (their sha256 and size), and the error when they do not match. */
function checksumRecord(
  m: Manifest,
  sum: { sha256: string; size: number },
  server: string,
  content?: string,
): { record: Verification; failure: BackupError | undefined } {
  const checked = checkStored(recordedOf(m), sum);
  const { ok } = checked;
  const failure = ok ? undefined : damaged(m, checked);
  const record: Verification = {
    kind: 'checksum',
    verified_at: new Date().toISOString(),
    ok,
    checksum_ok: ok,
    restore_ms: null,
    tables_checked: 0,
    rows_checked: 0,
    mismatches: [],
    error: failure?.message ?? null,
    error_code: failure?.code ?? null,
    server,
    ...(content ? { content } : {}),
  };
  return { record, failure };
}

/** What a record says of an encrypted backup drilled without its identity. */
export const NOT_DRILLED = 'not drilled: no identity here';

export interface ChecksumReport {
  id: string;
  file: string;
  ok: boolean;
  error?: string;
}

/**
 * `verify --checksums-only`: every stored backup's sha256 against its manifest, without restoring.
 * A mismatch is recorded beside the manifest (the backup is then damaged everywhere); a backup
 * already damaged (unreadable manifest, missing data) is reported as such; a read that fails
 * proves nothing and is only reported.
 */
export async function verifyChecksums(app: App, from?: string): Promise<ChecksumReport[]> {
  const repo = app.target(from).repo;
  const out: ChecksumReport[] = [];
  for (const b of await repo.list(app.database.db.database)) {
    const m = b.manifest;
    if (!m || b.storedSize === undefined || b.storedSize !== m.size_bytes) {
      out.push({ id: b.id, file: m?.file ?? '', ok: false, error: b.damage! });
      continue;
    }
    let sum: { sha256: string; size: number };
    try {
      sum = await repo.checksum(m);
    } catch (err) {
      out.push({ id: m.id, file: m.file, ok: false, error: `cannot read it: ${asBackupError(err).message}` });
      continue;
    }
    const { record, failure } = checksumRecord(m, sum, repo.name);
    out.push(failure ? { id: m.id, file: m.file, ok: false, error: failure.message } : { id: m.id, file: m.file, ok: true });
    // a pass is recorded only where it clears an earlier failed checksum (a drill's record says more)
    if (!failure && !provesDamage(m.verification)) continue;
    await repo
      .writeVerification(m.id, record)
      .catch((err: unknown) => log.error('could not record the checksum result beside the manifest', { id: m.id, error: asBackupError(err).message }));
  }
  const bad = out.filter((r) => !r.ok);
  if (bad.length > 0) {
    await app.alerter.send({
      kind: 'problem',
      what: `${bad.length} stored backup(s) of ${app.database.name} fail their checksum or cannot be read`,
      error: new BackupError('DAMAGED', bad.map((b) => `${b.id}: ${b.error}`).join('\n'), {
        hint: 'Do not rely on these backups; check the disk, and take a new backup.',
      }),
    });
  }
  return out;
}

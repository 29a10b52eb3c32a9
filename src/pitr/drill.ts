/**
 * `verify --pitr` and PITR_VERIFY_SCHEDULE: the point-in-time recovery drill. On production, a
 * restore point and the digest of every table at it (./drill-point.ts); once its WAL is
 * archived, the newest base backup recovered to that point in a private scratch directory
 * (BACKUP_TEMP_DIR, 0700) by a server reachable only through its own socket there (no TCP,
 * archive_mode off); then the recovered content compared (./drill-check.ts), the server stopped
 * and the directory removed, however the drill ends. Records the result (./drill-record.ts) and
 * alerts when it failed.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { App, Target } from '../app';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import { shellQuote } from '../restore/by-hand';
import { privateTempDir, removeTempLeftovers } from '../restore/temp-dirs';
import { withReleasers } from '../util/releasers';
import { waitForWal } from './base-wal-wait';
import { compareRecovered } from './drill-check';
import { markDrillPoint, type DrillPoint } from './drill-point';
import { writePitrDrill, type PitrDrillRecord } from './drill-record';
import { pitrRestore } from './recover';
import { stopServer } from './start-recovered';

export interface PitrDrillRequest {
  /** The storage target to recover from (the first when undefined). */
  from?: string | undefined;
  /** How this process was started, for the recovered server's restore_command (see walFetchCommand). */
  envFiles: string[];
  cwd: string;
}

export interface PitrDrillReport {
  record: PitrDrillRecord;
  /** Why it failed, with what to do. */
  failure: BackupError | undefined;
}

/** Runs the drill; resolves with its record whatever the outcome, throws only when it cannot run here at all. */
export async function pitrDrill(app: App, req: PitrDrillRequest): Promise<PitrDrillReport> {
  if (process.getuid?.() === 0) {
    throw new BackupError('REFUSED', 'PostgreSQL does not start as root, so the PITR drill does not run as root', {
      hint: 'Run `basement-backup verify --pitr` (and the daemon) as the app user, e.g. `sudo -u deploy basement-backup verify --pitr`.',
    });
  }
  const t = app.target(req.from);
  const record = blankRecord(t.name);
  let failure: BackupError | undefined;
  try {
    await drill(app, t, req, record);
  } catch (err) {
    failure = asBackupError(err);
    Object.assign(record, { ok: false, error: failure.message, error_code: failure.code });
  }
  if (failure?.code === 'ABORTED') {
    // cut short by a signal or the daemon's stop: that proves nothing either way, so the last record stays
    log.warn('PITR drill stopped before it finished; nothing recorded', { database: app.database.name });
    const stopped = new BackupError('ABORTED', 'the PITR drill was stopped; its scratch server was stopped and its directory removed', {
      hint: 'Run it again: `basement-backup verify --pitr`.',
    });
    return { record: { ...record, error: stopped.message }, failure: stopped };
  }
  try {
    writePitrDrill(app, record);
  } catch (err) {
    log.error('cannot save the record of the PITR drill', { error: (err as Error).message });
  }
  if (failure) {
    log.error(`PITR drill of ${app.database.name} failed: ${failure.message}`, { hint: failure.hint });
    await app.alerter.send({ kind: 'problem', what: `The point-in-time recovery drill of ${app.database.name} on ${t.name} failed`, error: failure });
  } else log.info(`PITR drill of ${app.database.name} passed`, { base: record.base_backup, recovery_ms: record.recovery_ms, exact: record.exact });
  return { record, failure };
}

function blankRecord(target: string): PitrDrillRecord {
  return {
    ok: false,
    verified_at: new Date().toISOString(),
    target,
    base_backup: null,
    restore_point: null,
    restore_point_lsn: null,
    reached: null,
    recovery_ms: null,
    tables_checked: 0,
    rows_checked: 0,
    mismatches: [],
    exact: false,
    committed_between: [],
    skipped_unlogged: [],
    error: null,
    error_code: null,
  };
}

async function drill(app: App, t: Target, req: PitrDrillRequest, record: PitrDrillRecord): Promise<void> {
  const point = await markDrillPoint(app);
  Object.assign(record, { restore_point: point.name, restore_point_lsn: point.lsn, skipped_unlogged: point.unlogged });
  await waitArchived(app, t, point);
  await withReleasers(async (releasers) => {
    // what a drill killed outright left (its scratch server shut down first), as dump drills do
    removeTempLeftovers(app.config.tempDir);
    const dir = privateTempDir(app.config.tempDir, 'verify', app.database.name);
    releasers.add(() => fsp.rm(dir, { recursive: true, force: true }));
    const pgdata = path.join(dir, 'data');
    const socketDir = path.join(dir, 'socket');
    const hba = path.join(dir, 'pg_hba.conf');
    fs.mkdirSync(socketDir, { mode: 0o700 });
    // the socket directory is this user's alone (0700): trust there lets only this user in, with no password
    fs.writeFileSync(hba, 'local all all trust\n', { mode: 0o600 });
    const bins = await app.binaries();
    releasers.add(async () => {
      if (fs.existsSync(path.join(pgdata, 'postmaster.pid'))) await stopServer(bins, pgdata);
    });
    // no TCP: the port only names the socket in the private directory, so any port is free
    const port = 40_000 + Math.floor(Math.random() * 20_000);
    const started = Date.now();
    const restored = await pitrRestore(app, {
      pgdata,
      target: { kind: 'name', name: point.name },
      from: t.name,
      start: true,
      port,
      dryRun: false,
      envFiles: req.envFiles,
      cwd: req.cwd,
      serverOptions: ['-c', `hba_file=${shellQuote(hba)}`, '-c', `unix_socket_directories=${shellQuote(socketDir)}`, '-c', "listen_addresses=''"],
    });
    Object.assign(record, { base_backup: restored.base.id, recovery_ms: Date.now() - started, reached: restored.started?.stop ?? null });
    if (!restored.started?.stop?.includes(`restore point "${point.name}"`)) {
      throw new BackupError(
        'VERIFY_FAILED',
        `recovery did not stop at the drill's restore point ${point.name}: ${restored.started?.stop ?? 'the log names no stop'}`,
        {
          hint: 'Was the restore point archived on this target? `basement-backup status` shows the recovery window.',
        },
      );
    }
    const cmp = await compareRecovered(app.database.db, socketDir, port, point);
    const exact = cmp.candidatesKnown && cmp.committedBetween.length === 0;
    Object.assign(record, { tables_checked: cmp.tables, rows_checked: cmp.rows, mismatches: cmp.mismatches, exact, committed_between: cmp.committedBetween });
    if (exact && cmp.mismatches.length > 0) {
      throw new BackupError(
        'VERIFY_FAILED',
        `the recovered content differs from production's at the restore point: ${cmp.mismatches.map((m) => `${m.table}: ${m.problem}`).join('; ')}`,
        {
          hint: 'No transaction committed between the digest and the restore point, so the archive or the base backup is damaged: take a new base backup (`basement-backup basebackup`) and check the archive.',
        },
      );
    }
    record.ok = true;
  });
}

/** Waits until the WAL file holding the restore point is on target `t`; a receiver that is not running fails the drill at the deadline. */
async function waitArchived(app: App, t: Target, point: DrillPoint): Promise<void> {
  const waitMs = app.config.pitr.baseWalWaitMs;
  const wait = await waitForWal([t], [point.wal], { timeoutMs: waitMs, signal: app.signal }).catch((err: unknown) => {
    const e = asBackupError(err);
    throw e.code === 'ABORTED'
      ? new BackupError('ABORTED', 'the PITR drill was stopped while it waited for its WAL', { hint: 'Nothing was recovered yet.' })
      : e;
  });
  if (wait.complete.length > 0) return;
  const why = wait.missing.get(t)?.error;
  throw new BackupError(
    'VERIFY_FAILED',
    `${point.wal}, which holds the drill's restore point, was not archived on ${t.name} within ${Math.round(waitMs / 1000)} s${why ? ` (asking it failed: ${why.message})` : ''}`,
    {
      hint: 'Is WAL being archived? Run the daemon with WAL_RECEIVE=on (or `basement-backup wal-receive`); `basement-backup status` shows the recovery window. BASEBACKUP_WAL_WAIT_SECONDS sets the wait.',
    },
  );
}

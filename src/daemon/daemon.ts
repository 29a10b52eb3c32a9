import type { App } from '../app';
import { performBackup } from '../backup/job';
import { syncTargets } from '../backup/sync';
import { asBackupError, BackupError } from '../errors';
import { acquireLock, lockHolder } from '../lock/file-lock';
import { log } from '../logger';
import { Scheduler } from '../scheduler/scheduler';
import { belongsTo } from '../storage/manifest';
import { VERSION } from '../version';
import { dropStaleScratch } from '../restore/scratch';
import { verifyBackup, verifyLockFile } from '../restore/verify';

/** A backup lock held longer than this while a scheduled backup wants to run is worth a mail. */
const STUCK_LOCK_MS = 6 * 3600_000;

export interface Daemon {
  /** Stop scheduling, let a running backup finish within the grace period, then abort it. Safe to call twice. */
  stop(): Promise<void>;
  /** Abort a running backup now. */
  force(): void;
  /** Resolves once stopped. */
  readonly stopped: Promise<void>;
  readonly scheduler: Scheduler;
}

/**
 * The long-running process: catch-up at start, then backups on BACKUP_SCHEDULE. It touches no
 * process-wide state; src/daemon/process.ts wires signals, pm2 and crashes to it.
 */
export async function startDaemon(app: App): Promise<Daemon> {
  const { config } = app;
  const database = config.db.database;
  let current: AbortController | undefined;

  const scheduler = new Scheduler({
    expression: config.schedule,
    timezone: config.timezone,
    name: 'backup',
    run: async (trigger) => {
      current = new AbortController();
      try {
        await performBackup(app, { trigger, signal: current.signal });
        if (app.targets.length > 1 && !current.signal.aborted) await syncAfterBackup(app);
      } catch (err) {
        const e = asBackupError(err);
        if (e.code === 'LOCKED') {
          log.warn(`skipped the ${trigger} backup: ${e.message}`);
          const holder = lockHolder(app.lockFile(database));
          if (holder && Date.now() - Date.parse(holder.acquired_at) > STUCK_LOCK_MS) {
            await app.alerter.send({
              kind: 'problem',
              what: `Scheduled backups of ${database} are blocked by a lock held since ${holder.acquired_at}`,
              error: e,
            });
          }
        }
        // other failures were logged and alerted by performBackup
      } finally {
        current = undefined;
      }
    },
  });

  let drill: AbortController | undefined;
  const verifier = config.verifySchedule
    ? new Scheduler({
        expression: config.verifySchedule,
        timezone: config.timezone,
        name: 'restore drill',
        run: async () => {
          drill = new AbortController();
          try {
            await verifyBackup(app, 'latest', { signal: drill.signal });
          } catch (err) {
            const e = asBackupError(err);
            if (e.code === 'LOCKED') log.warn(`skipped the restore drill: ${e.message}`);
            else if (e.code !== 'NOT_FOUND') await app.alerter.send({ kind: 'problem', what: `The restore drill of ${database} could not run`, error: e });
            else log.warn(`no restore drill: ${e.message}`);
          } finally {
            drill = undefined;
          }
        },
      })
    : undefined;

  log.info('basement-backup daemon starting', {
    version: VERSION,
    database,
    schedule: config.schedule,
    timezone: config.timezone,
    backup_dir: config.backupDir,
    alerts: app.alerter.enabled ? config.alert.to.join(',') : 'off (SMTP_HOST not set)',
  });
  if (!app.alerter.enabled) log.warn('email alerts are off: set SMTP_HOST and ALERT_EMAIL_TO to be told when a backup fails');

  await cleanupLeftovers(app);
  scheduler.start();
  verifier?.start();

  if (config.catchUp) {
    const due = scheduler.previousRun();
    // An unreachable first target must not stop the daemon: the backup then runs, and says why it fails.
    const newest = await app.repo.listGood(database).then(
      (l) => l[0],
      (err: unknown) => {
        log.warn('catch-up: cannot list the backups; backing up now', { error: asBackupError(err).message });
        return undefined;
      },
    );
    if (!newest || Date.parse(newest.created_at) < due.getTime()) {
      log.info(`catch-up: the run due at ${due.toISOString()} has no backup (newest: ${newest?.created_at ?? 'none'}); backing up now`);
      void scheduler.trigger('catch-up');
    }
  }
  log.info(`next scheduled backup at ${scheduler.nextRun().toISOString()}`);
  if (verifier) log.info(`next restore drill at ${verifier.nextRun().toISOString()}`);
  else log.warn('restore drills are off (VERIFY_SCHEDULE=off): nothing proves the backups restore');

  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));

  return {
    scheduler,
    stopped,
    force() {
      if (current && !current.signal.aborted) {
        log.warn('forcing stop: aborting the running backup');
        current.abort();
      }
      drill?.abort();
    },
    stop() {
      stopping ??= (async () => {
        log.info('stopping: no new backups will start');
        await scheduler.stop();
        await verifier?.stop();
        // A drill only reads a backup: stop it at once rather than hold up the shutdown.
        drill?.abort();
        await verifier?.idle();
        if (scheduler.busy) {
          const graceMs = config.shutdownGraceSeconds * 1000;
          log.info(`waiting up to ${config.shutdownGraceSeconds}s for the running backup to finish`);
          let timer: NodeJS.Timeout | undefined;
          const timedOut = await Promise.race([scheduler.idle().then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))]);
          clearTimeout(timer);
          if (timedOut) {
            log.warn('the running backup did not finish within SHUTDOWN_GRACE_SECONDS; aborting it');
            current?.abort();
          }
          await scheduler.idle();
        }
        log.info('daemon stopped');
        resolveStopped();
      })();
      return stopping;
    },
  };
}

/** Copies what a target missed to it; a failure is alerted, and the next run tries again. */
async function syncAfterBackup(app: App): Promise<void> {
  try {
    const copies = await syncTargets(app);
    const bad = copies.filter((c) => !c.ok);
    if (bad.length > 0) log.warn(`sync: ${bad.length} cop${bad.length === 1 ? 'y' : 'ies'} failed; the next run tries again`, { first: bad[0]!.error });
  } catch (err) {
    const e = asBackupError(err);
    if (e.code === 'LOCKED') log.warn(`sync skipped: ${e.message}`);
    else await app.alerter.send({ kind: 'problem', what: `Copying backups of ${app.config.db.database} between storage targets failed`, error: e });
  }
}

/** Removes temporary files of backups that a crash interrupted, unless a backup is running now. */
async function cleanupLeftovers(app: App): Promise<void> {
  const database = app.config.db.database;
  try {
    const lock = acquireLock(app.lockFile(database), 'start-up cleanup');
    try {
      for (const t of app.targets) {
        const removed = await t.repo.storage.cleanupTemporary((n) => belongsTo(database, n)).catch(() => []);
        if (removed.length > 0) log.warn('removed leftovers of an interrupted backup', { target: t.name, files: removed });
      }
    } finally {
      lock.release();
    }
  } catch (err) {
    if (!(err instanceof BackupError && err.code === 'LOCKED')) throw err;
  }
  try {
    const lock = acquireLock(verifyLockFile(app, database), 'start-up cleanup');
    try {
      await dropStaleScratch(app.config.verifyDb, database);
    } finally {
      lock.release();
    }
  } catch (err) {
    log.warn('could not look for scratch databases of interrupted restore drills', { error: asBackupError(err).message });
  }
}

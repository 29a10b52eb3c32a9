import type { App } from '../app';
import { performBackup } from '../backup/job';
import { syncTargets } from '../backup/sync';
import { asBackupError, BackupError } from '../errors';
import { acquireLock, lockHolder, type Lock } from '../lock/file-lock';
import { log } from '../logger';
import { makeLogsPrivate } from './log-files';
import { Scheduler } from '../scheduler/scheduler';
import { belongsTo, isFutureDated } from '../storage/manifest';
import { stopOrphanDumpSessions } from '../pg/connection';
import { waitAtMost } from '../util/deadline';
import { VERSION } from '../version';
import { dropStaleScratch } from '../restore/scratch';
import { verifyBackup, verifyLockFile } from '../restore/verify';

/** A backup lock held longer than this while a scheduled backup wants to run is worth a mail. */
const STUCK_LOCK_MS = 6 * 3600_000;
/** How long start-up work waits on one storage target or the database before it goes on without it. */
const START_UP_DEADLINE_MS = 15_000;
/** How long a stopping daemon waits for an aborted run to end before it exits anyway. */
const ABORT_WAIT_MS = 5_000;

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
 * The long-running process: backups on BACKUP_SCHEDULE, and at start, in the background, the
 * removal of what a crash left and the catch-up run. Starting never waits on a storage target or
 * the database: the next run is logged and the scheduler runs before any of them answered. It
 * touches no process-wide state; src/daemon/process.ts wires signals, pm2 and crashes to it.
 */
export function startDaemon(app: App): Daemon {
  const { config } = app;
  const database = config.db.database;
  let current: AbortController | undefined;
  const startUp = new AbortController();
  let cleanedUp: Promise<void> = Promise.resolve();

  const scheduler = new Scheduler({
    expression: config.schedule,
    timezone: config.timezone,
    name: 'backup',
    run: async (trigger) => {
      current = new AbortController();
      try {
        // The start-up cleanup holds the backup lock for a moment: wait for it rather than be refused.
        await cleanedUp;
        if (current.signal.aborted || startUp.signal.aborted) return;
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
            await cleanedUp;
            if (drill.signal.aborted || startUp.signal.aborted) return;
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
  makeLogsPrivate(config.pm2LogFiles, [config.logDir]);

  const startedAt = new Date();
  scheduler.start();
  verifier?.start();
  log.info(`next scheduled backup at ${scheduler.nextRun().toISOString()}`);
  if (verifier) log.info(`next restore drill at ${verifier.nextRun().toISOString()}`);
  else log.warn('restore drills are off (VERIFY_SCHEDULE=off): nothing proves the backups restore');

  const unexpected = (err: unknown) => log.error('start-up clean-up or catch-up failed', { error: asBackupError(err).message });
  cleanedUp = cleanupLeftovers(app, startUp.signal).catch(unexpected);
  const startUpWork = cleanedUp.then(() => catchUp(app, scheduler, startedAt, startUp.signal)).catch(unexpected);

  let stopping: Promise<void> | undefined;
  const forced = new AbortController();
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));

  return {
    scheduler,
    stopped,
    force() {
      forced.abort();
      startUp.abort();
      app.cancelRequests();
      if (current && !current.signal.aborted) {
        log.warn('forcing stop: aborting the running backup');
        current.abort();
      }
      drill?.abort();
    },
    stop() {
      stopping ??= (async () => {
        log.info('stopping: no new backups will start');
        startUp.abort();
        await scheduler.stop();
        await verifier?.stop();
        // A drill only reads a backup: stop it at once rather than hold up the shutdown.
        drill?.abort();
        if (verifier) await waitForAbortedRun(verifier, 'restore drill');
        await startUpWork;
        if (scheduler.busy) {
          log.info(`waiting up to ${config.shutdownGraceSeconds}s for the running backup to finish`);
          const finished = await waitAtMost(scheduler.idle(), config.shutdownGraceSeconds * 1000, forced.signal);
          if (finished.state === 'timed out') {
            log.warn('the running backup did not finish within SHUTDOWN_GRACE_SECONDS; aborting it');
            current?.abort();
          }
          await waitForAbortedRun(scheduler, 'backup');
        }
        log.info('daemon stopped');
        resolveStopped();
      })();
      return stopping;
    },
  };
}

/**
 * Waits a short while for an aborted run to end. A run stuck in a call that ignores its abort
 * (a storage target that never answers) is left behind: the process exits without it, and the
 * next start removes what it left.
 */
async function waitForAbortedRun(s: Scheduler, what: string): Promise<void> {
  if ((await waitAtMost(s.idle(), ABORT_WAIT_MS)).state === 'done') return;
  log.warn(`the ${what} did not stop within ${ABORT_WAIT_MS / 1000}s after it was aborted (is a storage target not answering?); exiting without it`);
}

/**
 * Catch-up at start: when the newest good backup is older than the last scheduled time before
 * the start, one backup runs now. An unreachable first target must not stop the daemon: the
 * backup then runs, and says why it fails.
 */
async function catchUp(app: App, scheduler: Scheduler, startedAt: Date, signal: AbortSignal): Promise<void> {
  const { config } = app;
  if (signal.aborted) return;
  if (!config.catchUp) {
    log.info('no backup at start: BACKUP_CATCH_UP=false');
    return;
  }
  const due = scheduler.previousRun(startedAt);
  const listed = await waitAtMost(app.repo.listGood(config.db.database), START_UP_DEADLINE_MS, signal);
  if (listed.state === 'aborted' || signal.aborted) return;
  if (scheduler.lastRun) return; // a scheduled run started meanwhile
  if (listed.state === 'done') {
    const newest = listed.value[0];
    // a backup dated in the future says nothing about whether the run that was due happened
    const future = newest !== undefined && isFutureDated(newest, startedAt);
    if (newest && !future && Date.parse(newest.created_at) >= due.getTime()) {
      log.info(`no backup at start: the newest (${newest.created_at}) is not older than the run due at ${due.toISOString()}`);
      return;
    }
    log.info(
      `catch-up: the run due at ${due.toISOString()} has no backup (newest: ${newest?.created_at ?? 'none'}${future ? ', dated in the future' : ''}); backing up now`,
    );
  } else {
    const why = listed.state === 'failed' ? asBackupError(listed.error).message : `no answer within ${START_UP_DEADLINE_MS / 1000}s`;
    log.warn(`catch-up: cannot list the backups on ${app.targets[0]!.name} (${why}); backing up now`);
  }
  void scheduler.trigger('catch-up');
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

/**
 * Removes what a crashed backup left, unless a backup is running now: temporary objects on each
 * target (at once, each given START_UP_DEADLINE_MS), the server sessions of a pg_dump whose
 * daemon was killed, and scratch databases of interrupted drills. A target that does not answer
 * is left for the next backup, which cleans up too; its late answer removes nothing.
 */
async function cleanupLeftovers(app: App, signal: AbortSignal): Promise<void> {
  const database = app.config.db.database;
  let lock: Lock;
  try {
    lock = acquireLock(app.lockFile(database), 'start-up cleanup');
  } catch (err) {
    if (err instanceof BackupError && err.code === 'LOCKED') return;
    log.warn('start-up cleanup: cannot take the backup lock', { error: asBackupError(err).message });
    return;
  }
  try {
    await Promise.all(
      app.targets.map(async (t) => {
        let waiting = true;
        const removing = t.repo.storage.cleanupTemporary((n) => waiting && belongsTo(database, n));
        const r = await waitAtMost(removing, START_UP_DEADLINE_MS, signal);
        waiting = false;
        if (r.state === 'done' && r.value.length > 0) log.warn('removed leftovers of an interrupted backup', { target: t.name, files: r.value });
        if (r.state === 'timed out') {
          log.warn(`start-up cleanup: storage target ${t.name} did not answer within ${START_UP_DEADLINE_MS / 1000}s; the next backup cleans it up`);
        }
      }),
    );
    if (signal.aborted) return;
    const ended = await waitAtMost(stopOrphanDumpSessions(app.config.db, processAlive), START_UP_DEADLINE_MS, signal);
    if (ended.state === 'done' && ended.value.length > 0)
      log.warn('ended the database sessions of a pg_dump whose daemon was killed', { sessions: ended.value });
  } finally {
    lock.release();
  }
  if (signal.aborted) return;
  try {
    const verifyLock = acquireLock(verifyLockFile(app, database), 'start-up cleanup');
    try {
      const dropped = await waitAtMost(dropStaleScratch(app.config.verifyDb, database), START_UP_DEADLINE_MS, signal);
      if (dropped.state === 'failed') throw dropped.error;
    } finally {
      verifyLock.release();
    }
  } catch (err) {
    log.warn('could not look for scratch databases of interrupted restore drills', { error: asBackupError(err).message });
  }
}

/** Is `pid` a running process (of any user)? */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

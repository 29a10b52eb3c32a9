import type { App } from '../app';
import { listEveryTarget, type TargetListing } from '../backup/every-target';
import { performBackup } from '../backup/job';
import { lastDrill } from '../backup/status';
import { syncTargets } from '../backup/sync';
import { asBackupError, BackupError } from '../errors';
import { holdLock, lockHolder } from '../lock/file-lock';
import { log } from '../logger';
import { Limiter } from './limiter';
import { makeLogsPrivate } from './log-files';
import { withWalReceivers } from './wal-receivers';
import { backupCatchUp, drillCatchUp, type CatchUp, type TargetView } from '../scheduler/catch-up';
import { Scheduler, type Trigger } from '../scheduler/scheduler';
import { isGood } from '../repository/repository';
import { stopOrphanDumpSessions } from '../pg/connection';
import { waitAtMost } from '../util/deadline';
import { pidAlive } from '../util/owner';
import { withReleasers } from '../util/releasers';
import { VERSION } from '../version';
import { removeDrillLeftovers, removeRestoreLeftovers } from '../restore/clean-up';
import { runDrillSlot } from '../restore/drill-targets';
import { verifyLockFile } from '../restore/verify';
import type { StartedWith } from './pitr-drills';

/** A backup lock held longer than this while a scheduled backup wants to run is worth a mail. */
const STUCK_LOCK_MS = 6 * 3600_000;
/** How long start-up work waits on one storage target or the database before it goes on without it. */
const START_UP_DEADLINE_MS = 15_000;
/** How long a stopping daemon waits for an aborted run to end before it exits anyway. */
const ABORT_WAIT_MS = 5_000;
/** The longest a timer can wait: "until the signal fires". */
const UNTIL_ABORTED_MS = 2 ** 31 - 1;

export interface Daemon {
  /** Stop scheduling, let a running backup finish within the grace period, then abort it. Safe to call twice. */
  stop(): Promise<void>;
  /** Abort a running backup now. */
  force(): void;
  /** Resolves once stopped. */
  readonly stopped: Promise<void>;
  /** Whether a backup (with its sync) or a restore drill runs now; one waiting for its place does not count. */
  busy(): boolean;
}

/** What the daemon's runs share: how to abort each, and the start-up work they wait for. */
interface Runs {
  /** The running backup, if any. */
  backup: AbortController | undefined;
  /** Set while the backup waits for a place among BACKUP_MAX_PARALLEL: what it waits for. */
  waiting: string | undefined;
  /** The running restore drill, if any. */
  drill: AbortController | undefined;
  /** When each target's drill was last tried by this process (the rotation's memory beside the records). */
  drillAttempts: Map<string, string>;
  /** Aborted when the daemon stops: cancels the start-up work and the runs waiting on it. */
  startUp: AbortController;
  /** The start-up clean-up: runs wait for it, as it holds the backup lock for a moment. */
  cleanedUp: Promise<void>;
}

interface Schedulers {
  backup: Scheduler;
  /** Undefined when VERIFY_SCHEDULE=off. */
  drill: Scheduler | undefined;
}

/**
 * The long-running process: backups on BACKUP_SCHEDULE, restore drills on VERIFY_SCHEDULE, and
 * at start, in the background, the removal of what a crash left and the catch-up of a backup
 * and a drill missed while it was down. Starting never waits on a storage target or the
 * database: the next run is logged and the scheduler runs before any of them answered. It
 * touches no process-wide state; src/daemon/process.ts wires signals, pm2 and crashes to it.
 */
export function startDaemon(app: App, limiter = new Limiter(app.config.maxParallel), afterRun: () => void = () => undefined): Daemon {
  const { config } = app;
  const runs: Runs = {
    backup: undefined,
    waiting: undefined,
    drill: undefined,
    drillAttempts: new Map(),
    startUp: new AbortController(),
    cleanedUp: Promise.resolve(),
  };
  // with several databases every log line of a run names the one it is about
  const of = config.databases.length > 1 ? ` of ${app.database.name}` : '';
  const s: Schedulers = {
    backup: new Scheduler({
      expression: app.database.schedule,
      timezone: config.timezone,
      name: `backup${of}`,
      run: (trigger) => backupRun(app, runs, trigger, limiter).finally(afterRun),
      waitingFor: () => runs.waiting,
    }),
    drill: app.database.verifySchedule
      ? new Scheduler({
          expression: app.database.verifySchedule,
          timezone: config.timezone,
          name: `restore drill${of}`,
          run: () => drillRun(app, runs).finally(afterRun),
        })
      : undefined,
  };
  logStart(app);
  const startedAt = new Date();
  s.backup.start();
  s.drill?.start();
  log.info(`next scheduled backup${of} at ${s.backup.nextRun().toISOString()}`);
  if (s.drill) log.info(`next restore drill${of} at ${s.drill.nextRun().toISOString()}`);
  else log.warn(`restore drills${of} are off (VERIFY_SCHEDULE=off): nothing proves the backups restore`);
  return controls(app, runs, s, startUpWork(app, runs, s, startedAt));
}

/**
 * Several databases, one daemon: each with its own schedules, their backups sharing
 * BACKUP_MAX_PARALLEL places. `afterRun` is called when any backup or drill ended (the checks).
 */
export function startDaemons(apps: App[], afterRun?: () => void, started: StartedWith = { envFiles: [] }): Daemon {
  const limiter = new Limiter(apps[0]!.config.maxParallel);
  const daemons = apps.map((app) => startDaemon(app, limiter, afterRun));
  // WAL_RECEIVE=on: a WAL receiver per server, stopped with the daemons
  if (daemons.length === 1) return withWalReceivers(daemons[0]!, apps, started);
  return withWalReceivers(
    {
      stopped: Promise.all(daemons.map((d) => d.stopped)).then(() => undefined),
      stop: () => Promise.all(daemons.map((d) => d.stop())).then(() => undefined),
      force: () => daemons.forEach((d) => d.force()),
      busy: () => daemons.some((d) => d.busy()),
    },
    apps,
    started,
  );
}

/**
 * One backup run: the backup, then the sync to the other targets; failures were alerted by
 * performBackup. It waits for a place among BACKUP_MAX_PARALLEL first (other databases' backups).
 */
async function backupRun(app: App, runs: Runs, trigger: Trigger, limiter: Limiter): Promise<void> {
  const database = app.database.db.database;
  const current = (runs.backup = new AbortController());
  let release: (() => void) | undefined;
  try {
    // The start-up cleanup holds the backup lock for a moment: wait for it rather than be refused.
    await runs.cleanedUp;
    if (current.signal.aborted || runs.startUp.signal.aborted) return;
    if (limiter.full) {
      runs.waiting = `a place among BACKUP_MAX_PARALLEL=${limiter.size}`;
      log.info(`backup of ${app.database.name} waits: ${limiter.size} backup(s) of other databases are running (BACKUP_MAX_PARALLEL)`);
    }
    const stop = AbortSignal.any([current.signal, runs.startUp.signal]);
    release = await limiter.acquire(stop);
    runs.waiting = undefined;
    if (!release) return;
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
          what: `Scheduled backups of ${app.database.name} are blocked by a lock held since ${holder.acquired_at}`,
          error: e,
        });
      }
    }
    // other failures were logged and alerted by performBackup
  } finally {
    release?.();
    runs.backup = undefined;
    runs.waiting = undefined;
  }
}

/** One drill slot: see runDrillSlot (VERIFY_TARGETS). */
async function drillRun(app: App, runs: Runs): Promise<void> {
  const drill = (runs.drill = new AbortController());
  try {
    await runs.cleanedUp;
    if (drill.signal.aborted || runs.startUp.signal.aborted) return;
    await runDrillSlot(app, { deadlineMs: START_UP_DEADLINE_MS, signal: drill.signal, attempts: runs.drillAttempts });
  } finally {
    runs.drill = undefined;
  }
}

function logStart(app: App): void {
  const { config } = app;
  log.info('basement-backup daemon starting', {
    version: VERSION,
    ...(config.databases.length > 1 ? { name: app.database.name } : {}),
    database: app.database.db.database,
    schedule: app.database.schedule,
    timezone: config.timezone,
    backup_dir: config.backupDir,
    alerts: app.alerter.enabled ? config.alert.to.join(',') : app.alerter.reachesAnyone ? 'webhook only' : 'off (SMTP_HOST not set)',
  });
  if (!app.alerter.enabled && app.alerter.reachesAnyone)
    log.info('email alerts are off (SMTP_HOST not set): alerts go to the webhook only (BACKUP_WEBHOOK_URL)');
  else if (!app.alerter.enabled) log.warn('email alerts are off: set SMTP_HOST and ALERT_EMAIL_TO to be told when a backup fails');
  makeLogsPrivate(config.pm2LogFiles, [config.logDir]);
}

/** stop() and force() of a started daemon. */
function controls(app: App, runs: Runs, s: Schedulers, startUp: Promise<void>): Daemon {
  const forced = new AbortController();
  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  return {
    stopped,
    busy: () => (runs.backup !== undefined && runs.waiting === undefined) || runs.drill !== undefined,
    force() {
      forced.abort();
      runs.startUp.abort();
      app.cancelRequests();
      if (runs.backup && !runs.backup.signal.aborted) {
        log.warn('forcing stop: aborting the running backup');
        runs.backup.abort();
      }
      runs.drill?.abort();
    },
    stop() {
      stopping ??= stopRuns(app, runs, s, startUp, forced.signal).then(resolveStopped);
      return stopping;
    },
  };
}

/** The graceful stop: no new runs, the drill aborted, the running backup given the grace period. */
async function stopRuns(app: App, runs: Runs, s: Schedulers, startUp: Promise<void>, forced: AbortSignal): Promise<void> {
  const grace = app.config.shutdownGraceSeconds;
  log.info('stopping: no new backups will start');
  runs.startUp.abort();
  await s.backup.stop();
  await s.drill?.stop();
  // A drill only reads a backup: stop it at once rather than hold up the shutdown.
  runs.drill?.abort();
  if (s.drill) await waitForAbortedRun(s.drill, 'restore drill');
  await startUp;
  if (s.backup.busy) {
    log.info(`waiting up to ${grace}s for the running backup to finish`);
    const finished = await waitAtMost(s.backup.idle(), grace * 1000, forced);
    if (finished.state === 'timed out') {
      log.warn('the running backup did not finish within SHUTDOWN_GRACE_SECONDS; aborting it');
      runs.backup?.abort();
    }
    await waitForAbortedRun(s.backup, 'backup');
  }
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
 * The start-up work, in the background: the clean-up of what a crash left and, beside it, the
 * listing of every target (each within START_UP_DEADLINE_MS) for the catch-up decisions, taken
 * once the clean-up is done.
 */
function startUpWork(app: App, runs: Runs, s: Schedulers, startedAt: Date): Promise<void> {
  const signal = runs.startUp.signal;
  const unexpected = (err: unknown) => log.error('start-up clean-up or catch-up failed', { error: asBackupError(err).message });
  const listed = app.config.catchUp ? listEveryTarget(app, app.database.db.database, { deadlineMs: START_UP_DEADLINE_MS, signal }) : undefined;
  if (!listed) log.info('nothing to catch up at start: BACKUP_CATCH_UP=false');
  runs.cleanedUp = cleanupLeftovers(app, signal).catch(unexpected);
  const caughtUp = listed
    ? catchUp(
        s,
        startedAt,
        Promise.all([listed, runs.cleanedUp]).then(([l]) => l),
        signal,
      ).catch(unexpected)
    : undefined;
  return Promise.all([runs.cleanedUp, caughtUp]).then(() => undefined);
}

/**
 * Catch-up at start (see src/scheduler/catch-up.ts): a backup when no target holds one taken
 * since the last scheduled time before the start; a restore drill when the last drill slot
 * passed without one. A drill due as well waits for the catch-up backup, and then proves it.
 */
async function catchUp(s: Schedulers, startedAt: Date, listed: Promise<TargetListing[]>, signal: AbortSignal): Promise<void> {
  const views = (await listed).map(viewOf);
  if (signal.aborted) return;
  const backingUp = decide(s.backup, backupCatchUp(views, s.backup.previousRun(startedAt), startedAt));
  if (!s.drill) return;
  const drill = drillCatchUp(views, s.drill.previousRun(startedAt));
  if (drill.run && backingUp) await waitAtMost(backingUp, UNTIL_ABORTED_MS, signal);
  if (!signal.aborted) void decide(s.drill, drill);
}

/** Logs the decision and starts the catch-up run it asks for, unless a scheduled run started meanwhile. */
function decide(s: Scheduler, c: CatchUp): Promise<void> | undefined {
  if (s.lastRun) return undefined;
  if (c.warn) log.warn(c.why);
  else log.info(c.why);
  return c.run ? s.trigger('catch-up') : undefined;
}

function viewOf(l: TargetListing): TargetView {
  const name = l.target.name;
  if (l.state !== 'done') {
    const problem =
      l.state === 'failed' ? asBackupError(l.error).message : l.state === 'timed out' ? `no answer within ${START_UP_DEADLINE_MS / 1000}s` : l.state;
    return { name, good: undefined, problem, lastDrillAt: undefined };
  }
  const readable = l.value.flatMap((b) => (b.manifest ? [b.manifest] : []));
  return { name, good: l.value.filter(isGood).map((b) => b.manifest), lastDrillAt: lastDrill(readable)?.verified_at };
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
    else await app.alerter.send({ kind: 'problem', what: `Copying backups of ${app.database.name} between storage targets failed`, error: e });
  }
}

/**
 * Removes what a crashed backup, restore or drill left, unless a backup is running now: temporary
 * objects on each target (at once, each given START_UP_DEADLINE_MS), the server sessions of a
 * pg_dump whose daemon was killed, databases a killed restore left half-restored, temporary
 * directories in BACKUP_TEMP_DIR, and scratch databases of interrupted drills. A target that does not answer
 * is left for the next backup, which cleans up too; its late answer removes nothing.
 */
async function cleanupLeftovers(app: App, signal: AbortSignal): Promise<void> {
  const database = app.database.db.database;
  const cleaned = await withReleasers(async (releasers) => {
    try {
      holdLock(releasers, app.lockFile(database), 'start-up cleanup');
    } catch (err) {
      if (!(err instanceof BackupError && err.code === 'LOCKED'))
        log.warn('start-up cleanup: cannot take the backup lock', { error: asBackupError(err).message });
      return false;
    }
    await removeLeftoversUnderLock(app, database, signal);
    return true;
  });
  if (!cleaned || signal.aborted) return;
  try {
    await withReleasers(async (releasers) => {
      holdLock(releasers, verifyLockFile(app, database), 'start-up cleanup');
      const dropped = await waitAtMost(removeDrillLeftovers(app), START_UP_DEADLINE_MS, signal);
      if (dropped.state === 'failed') throw dropped.error;
    });
  } catch (err) {
    log.warn('could not look for what interrupted restore drills left', { error: asBackupError(err).message });
  }
}

/** cleanupLeftovers' work under the backup lock: what crashed backups and restores left. */
async function removeLeftoversUnderLock(app: App, database: string, signal: AbortSignal): Promise<void> {
  await Promise.all(
    app.targets.map(async (t) => {
      let waiting = true;
      const r = await waitAtMost(
        t.repo.removeLeftovers(database, () => waiting),
        START_UP_DEADLINE_MS,
        signal,
      );
      waiting = false;
      if (r.state === 'timed out') {
        log.warn(`start-up cleanup: storage target ${t.name} did not answer within ${START_UP_DEADLINE_MS / 1000}s; the next backup cleans it up`);
      }
    }),
  );
  if (signal.aborted) return;
  const ended = await waitAtMost(stopOrphanDumpSessions(app.database.db, pidAlive), START_UP_DEADLINE_MS, signal);
  if (ended.state === 'done' && ended.value.length > 0) log.warn('ended the database sessions of a pg_dump whose daemon was killed', { sessions: ended.value });
  app.state.removeLeftovers();
  const restores = await waitAtMost(removeRestoreLeftovers(app), START_UP_DEADLINE_MS, signal);
  if (restores.state === 'failed') log.warn('could not look for what interrupted restores left', { error: asBackupError(restores.error).message });
}

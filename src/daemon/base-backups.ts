/**
 * The daemon's base backups (WAL_RECEIVE=on): on BASEBACKUP_SCHEDULE for each database whose WAL
 * a receiver archives, and once at start when no target holds a good one (the archived WAL is of
 * no use without one); each followed by the point-in-time archive's retention. Failures are
 * alerted by performBaseBackup.
 */
import type { App } from '../app';
import { asBackupError } from '../errors';
import { log } from '../logger';
import { goodBaseBackups } from '../pitr/base-list';
import { performBaseBackup } from '../pitr/base-job';
import { prunePitr } from '../pitr/prune-pitr';
import { Scheduler } from '../scheduler/scheduler';

/** How long after start the first base backup waits: the receiver has streamed the WAL it needs by then. */
const FIRST_DELAY_MS = 5_000;

export interface BaseBackups {
  /** A base backup of `app` now (or right after the one running); false when its base backups are off. */
  now(app: App): boolean;
  /** Stops the schedules and any base backup running (it keeps nothing). */
  stop(): Promise<void>;
}

/** Schedules base backups of each of `apps` (the receivers' databases). */
export function scheduleBaseBackups(apps: App[]): BaseBackups {
  const stopping = new AbortController();
  const schedulers: Scheduler[] = [];
  const byApp = new Map<App, Scheduler>();
  // runs in progress: a stop aborts them and waits until each has removed what it wrote
  const running = new Set<Promise<void>>();
  // asked for while one ran (its WAL may be in a gap): started once that one has ended
  const wanted = new Set<App>();
  const tracked = (app: App) => () => {
    const r = baseRun(app, stopping.signal).finally(() => {
      running.delete(r);
      if (wanted.delete(app) && !stopping.signal.aborted) firstRuns.push(setTimeout(() => void byApp.get(app)?.trigger('catch-up'), 1000));
    });
    running.add(r);
    return r;
  };
  const firstRuns: NodeJS.Timeout[] = [];
  for (const app of apps) {
    const expression = app.config.pitr.baseSchedule;
    if (expression === undefined) {
      log.warn(
        `base backups of ${app.database.name} are off (BASEBACKUP_SCHEDULE=off): take them with \`basement-backup basebackup\`, or the archived WAL cannot be recovered from`,
      );
      continue;
    }
    const s = new Scheduler({
      expression,
      timezone: app.config.timezone,
      name: `base backup of ${app.database.name}`,
      run: tracked(app),
    });
    s.start();
    schedulers.push(s);
    byApp.set(app, s);
    log.info(`next base backup of ${app.database.name} at ${s.nextRun().toISOString()}`);
    firstRuns.push(setTimeout(() => void firstIfNone(app, s), FIRST_DELAY_MS));
  }
  return {
    now(app) {
      const s = byApp.get(app);
      if (!s) return false;
      if (!s.trigger('catch-up')) wanted.add(app);
      return true;
    },
    async stop() {
      firstRuns.forEach(clearTimeout);
      stopping.abort();
      await Promise.allSettled([...schedulers.map((s) => s.stop()), ...running]);
    },
  };
}

/** A base backup now when no target holds a good one. */
async function firstIfNone(app: App, s: Scheduler): Promise<void> {
  try {
    const held = await Promise.all(
      app.targets.map((t) =>
        goodBaseBackups(t).then(
          (b) => b.length,
          () => 0,
        ),
      ),
    );
    if (held.some((n) => n > 0)) return;
    log.info(`no good base backup of ${app.database.name} on any target: taking one now`);
    await s.trigger('catch-up');
  } catch (err) {
    log.warn(`base backup catch-up of ${app.database.name} failed: ${asBackupError(err).message}`);
  }
}

async function baseRun(app: App, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  try {
    await performBaseBackup(app, { signal });
  } catch (err) {
    const e = asBackupError(err);
    if (e.code === 'LOCKED') log.warn(`skipped a base backup of ${app.database.name}: ${e.message}`);
    return; // other failures were logged and alerted by performBaseBackup
  }
  for (const r of await prunePitr(app, { dryRun: false })) {
    if (r.error) log.warn(`retention of the point-in-time archive on ${r.target} failed: ${r.error}`);
  }
}

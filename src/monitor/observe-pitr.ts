import type { App } from '../app';
import { asBackupError } from '../errors';
import { measureArchiving, type ArchivingStatus } from '../pitr/archiving';
import { pitrWindows, type PitrWindowStatus } from '../pitr/window-status';
import { longestGapMs } from '../scheduler/cron-time';
import { waitAtMost } from '../util/deadline';

/** How much later than the base backup schedule's longest gap the newest good base backup may have ended (a base backup of a large cluster takes hours). */
export const BASE_STALE_SLACK_MS = 6 * 3600_000;

/** The point-in-time archive of a database whose WAL a receiver archives, as the checks see it. */
export interface PitrObservation {
  archiving: ArchivingStatus | null;
  /** Why the archiving could not be measured in time; null when it could. */
  error: string | null;
  windows: PitrWindowStatus[];
  /** WAL_MAX_LAG_MINUTES in ms; null: off. */
  max_lag_ms: number | null;
  /** WAL_QUEUE_MAX_MB in bytes; null: off. */
  queue_max_bytes: number | null;
  /** The newest good base backup must have ended within this (BASEBACKUP_SCHEDULE's longest gap + slack); null: the schedule is off. */
  base_max_age_ms: number | null;
}

/** The recovery windows and the archiving of `app` now, within `deadlineMs`; never throws. */
export async function observePitr(app: App, opts: { now: Date; deadlineMs: number; signal?: AbortSignal }): Promise<PitrObservation> {
  const { pitr, timezone } = app.config;
  const base = {
    max_lag_ms: pitr.maxLagMs ?? null,
    queue_max_bytes: pitr.queueMaxBytes ?? null,
    base_max_age_ms: pitr.baseSchedule === undefined ? null : longestGapMs(pitr.baseSchedule, timezone, opts.now) + BASE_STALE_SLACK_MS,
  };
  // the spool and the server are measured apart from the targets: a target that does not answer delays no lag alert
  const listing = pitrWindows(app);
  const [windows, archiving] = await Promise.all([
    waitAtMost(listing, opts.deadlineMs, opts.signal),
    waitAtMost(measureArchiving(app, listing, opts.now), opts.deadlineMs, opts.signal),
  ]);
  const why = (w: Exclude<typeof archiving, { state: 'done' }>) =>
    w.state === 'failed' ? asBackupError(w.error).message : `no answer within ${opts.deadlineMs / 1000} s`;
  return {
    ...base,
    archiving: archiving.state === 'done' ? archiving.value : null,
    error: archiving.state === 'done' ? null : why(archiving),
    windows: windows.state === 'done' ? windows.value : [],
  };
}

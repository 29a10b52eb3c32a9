import type { PitrConfig } from '../types';
import type { Reader } from '../reader';
import { checkCron } from './schedules';

/** WAL_PUSH_TIMEOUT_SECONDS, WAL_REQUIRED_TARGETS (checked against the targets where they are known), BASEBACKUP_WAL_WAIT_SECONDS, WAL_RECEIVE, WAL_SLOT_NAME, WAL_MAX_LAG_MINUTES and WAL_QUEUE_MAX_MB. */
export function parsePitr(r: Reader, cronZone = 'UTC'): PitrConfig {
  const required = r.raw('WAL_REQUIRED_TARGETS');
  const names =
    required === undefined || required.trim().toLowerCase() === 'all'
      ? undefined
      : required
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
  return {
    pushTimeoutMs:
      r.int(
        'WAL_PUSH_TIMEOUT_SECONDS',
        60,
        1,
        3600,
        'Set WAL_PUSH_TIMEOUT_SECONDS to how long one wal-push may take before it fails (PostgreSQL retries it), e.g. 60.',
      ) * 1000,
    requiredTargets: names && names.length > 0 ? names : undefined,
    baseWalWaitMs:
      r.int(
        'BASEBACKUP_WAL_WAIT_SECONDS',
        300,
        1,
        86_400,
        'Set BASEBACKUP_WAL_WAIT_SECONDS to how long a base backup may wait for its WAL to reach the archive (wal-receive or archive_command), e.g. 300.',
      ) * 1000,
    receive: r.bool('WAL_RECEIVE', false),
    slotName: slotName(r),
    baseSchedule: baseSchedule(r, cronZone),
    maxLagMs: maxLag(r),
    queueMaxBytes: queueMax(r),
    drillSchedule: drillSchedule(r, cronZone),
  };
}

/** WAL_MAX_LAG_MINUTES: decimals allowed (tests use seconds); `off` turns the lag alert off. */
function maxLag(r: Reader): number | undefined {
  if (r.raw('WAL_MAX_LAG_MINUTES')?.toLowerCase() === 'off') return undefined;
  const hint = 'Set WAL_MAX_LAG_MINUTES to how long completed WAL may wait unarchived before the alert, e.g. 15, or off.';
  return Math.round(r.decimal('WAL_MAX_LAG_MINUTES', 15, 7 * 24 * 60, hint) * 60_000);
}

/** WAL_QUEUE_MAX_MB: off unless set. */
function queueMax(r: Reader): number | undefined {
  const raw = r.raw('WAL_QUEUE_MAX_MB');
  if (raw === undefined || raw.toLowerCase() === 'off') return undefined;
  const hint =
    'Set WAL_QUEUE_MAX_MB to the unarchived WAL (MB) that should alert, well below the free space of pg_wal and max_slot_wal_keep_size, e.g. 2048, or off.';
  return r.int('WAL_QUEUE_MAX_MB', 2048, 1, 16 * 1024 * 1024, hint) * 1024 * 1024;
}

/** A replication slot name PostgreSQL accepts: lower-case letters, digits and underscores, at most 63. */
/** BASEBACKUP_SCHEDULE: when the daemon takes base backups (with WAL_RECEIVE=on); undefined: off. */
function baseSchedule(r: Reader, cronZone: string): string | undefined {
  const raw = r.string('BASEBACKUP_SCHEDULE', '0 3 * * 0');
  if (raw.toLowerCase() === 'off') return undefined;
  checkCron(r, 'BASEBACKUP_SCHEDULE', raw, cronZone, 'Use a cron expression like "0 3 * * 0" (Sundays at 03:00), or off.');
  return raw;
}

function slotName(r: Reader): string {
  const name = r.string('WAL_SLOT_NAME', 'basement_backup');
  if (/^[a-z0-9_]{1,63}$/.test(name)) return name;
  r.fail('WAL_SLOT_NAME', `"${name}" is not a replication slot name`, 'Use lower-case letters, digits and underscores (at most 63), e.g. basement_backup.');
  return 'basement_backup';
}

/** PITR_VERIFY_SCHEDULE: when the daemon runs the point-in-time recovery drill (with WAL_RECEIVE=on); undefined: off. */
function drillSchedule(r: Reader, cronZone: string): string | undefined {
  const raw = r.string('PITR_VERIFY_SCHEDULE', '30 4 * * 0');
  if (raw.toLowerCase() === 'off') return undefined;
  checkCron(r, 'PITR_VERIFY_SCHEDULE', raw, cronZone, 'Use a cron expression like "30 4 * * 0" (Sundays at 04:30, after the base backup), or off.');
  return raw;
}

import type { PitrConfig } from '../types';
import type { Reader } from '../reader';
import { checkCron } from './schedules';

/** WAL_PUSH_TIMEOUT_SECONDS, WAL_REQUIRED_TARGETS (checked against the targets where they are known), BASEBACKUP_WAL_WAIT_SECONDS, WAL_RECEIVE and WAL_SLOT_NAME. */
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
    drillSchedule: drillSchedule(r, cronZone),
  };
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

import { registerSecret } from '../../redact';
import { validateCron, validateTimezone } from '../../scheduler/cron-time';
import type { Reader } from '../reader';
import type { DbConfig, VerifyTargets } from '../types';

/** Records a CONFIG error naming `name` when `expr` is not a cron expression both parsers accept in `zone`; returns whether it is one. */
export function checkCron(r: Reader, name: string, expr: string, zone: string, hint: string): boolean {
  if (!r.checkSchedules) return true;
  const problem = validateCron(expr, zone);
  if (problem) r.fail(name, `"${expr}" is not a valid cron expression (${problem})`, hint);
  return problem === undefined;
}

/** BACKUP_SCHEDULE in BACKUP_TIMEZONE; `cronZone` is the zone other schedules are checked in (UTC when the zone is bad). */
export function parseSchedule(r: Reader): { schedule: string; timezone: string; cronZone: string } {
  const schedule = r.string('BACKUP_SCHEDULE', '0 2 * * *');
  const timezone = r.string('BACKUP_TIMEZONE', 'UTC');
  const tzProblem = r.checkSchedules ? validateTimezone(timezone) : undefined;
  if (tzProblem) r.fail('BACKUP_TIMEZONE', `"${timezone}" ${tzProblem}`, 'Use an IANA time zone name such as UTC or Europe/Berlin.');
  const cronZone = tzProblem ? 'UTC' : timezone;
  checkCron(r, 'BACKUP_SCHEDULE', schedule, cronZone, 'Use 5 fields (minute hour day month weekday) like "0 2 * * *", or 6 with seconds first.');
  return { schedule, timezone, cronZone };
}

/** The restore drills: VERIFY_SCHEDULE (or off) and the server they restore into (VERIFY_DB_*, by default the backed-up one). */
export function parseVerify(
  r: Reader,
  db: DbConfig,
  cronZone: string,
): { verifySchedule: string | undefined; verifyTargets: VerifyTargets; verifyDb: DbConfig } {
  const verifyRaw = r.string('VERIFY_SCHEDULE', '0 4 * * *');
  let verifySchedule: string | undefined;
  if (verifyRaw.toLowerCase() !== 'off') {
    checkCron(r, 'VERIFY_SCHEDULE', verifyRaw, cronZone, 'Use a cron expression like "0 4 * * *" (after the backup window), or off.');
    verifySchedule = verifyRaw;
  }
  const verifyTargets = r.oneOf<VerifyTargets>('VERIFY_TARGETS', 'rotate', ['rotate', 'all']);
  const verifyPassword = r.raw('VERIFY_DB_PASSWORD');
  registerSecret(verifyPassword);
  const verifyDb: DbConfig = {
    ...db,
    ...(['HOST', 'PORT', 'USER', 'PASSWORD'].some((v) => r.raw(`VERIFY_DB_${v}`)) ? { settings: 'VERIFY_DB' as const } : {}),
    host: r.string('VERIFY_DB_HOST', db.host),
    port: r.int('VERIFY_DB_PORT', db.port, 1, 65535),
    user: r.string('VERIFY_DB_USER', db.user),
    password: verifyPassword ?? (r.raw('VERIFY_DB_HOST') || r.raw('VERIFY_DB_USER') ? undefined : db.password),
  };
  return { verifySchedule, verifyTargets, verifyDb };
}

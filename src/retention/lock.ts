import type { RetentionRules } from '../config/types';
import { PERIODS, type Period } from './calendar';

const HOUR = 3600_000;
const DAY = 24 * HOUR;

/** The longest a calendar period of GFS retention lasts: a leap year, a 31-day month. */
const PERIOD_DAYS: Record<Period, number> = { daily: 1, weekly: 7, monthly: 31, yearly: 366 };

/** How long a pin "forever" locks: 100 years, the longest BACKUP_RETENTION_DAYS takes. */
export const FOREVER_LOCK_DAYS = 36500;

/** The shortest lock written: an object copied or recorded after its backup's time still gets a day. */
export const MIN_LOCK_MS = DAY;

/**
 * The longest the days rule and GFS periods keep a backup after it was taken: the days rule
 * `days` × 24 h; daily/weekly/monthly/yearly N at most N periods after its own (as long as
 * backups are taken every period), counted at their longest (31-day months, 366-day years) plus
 * an hour for a day that clocks turn back. The minimum count and pins are not in it (no date
 * bounds the one, the other is per backup).
 */
export function longestKeepMs(rules: RetentionRules): number {
  const spans = [rules.days * DAY, ...PERIODS.map((p) => ((rules[p] ?? 0) > 0 ? (rules[p] ?? 0) * PERIOD_DAYS[p] * DAY + HOUR : 0))];
  return Math.max(...spans);
}

/**
 * Pure: until when an object of a backup taken at `takenMs` is locked (S3 Object Lock's
 * retain-until), so that no one can delete it while retention could still keep it:
 * - the days rule keeps it `days` × 24 h;
 * - daily/weekly/monthly/yearly N keep it at most N periods after its own (as long as backups are
 *   taken every period), counted at their longest (31-day months, 366-day years) plus an hour for
 *   a day that clocks turn back;
 * - a pin or `--keep` (`keepUntil`) keeps it to its date, "forever" (or a date that cannot be read,
 *   which retention also takes as forever) for FOREVER_LOCK_DAYS;
 * and at least MIN_LOCK_MS from `now`. The minimum count is left out: it keeps a backup only while
 * no newer ones are taken, which no date bounds; such a backup stays, unlocked, until retention
 * lets it go. `testSeconds` (tests only) replaces the rules with that many seconds from `now`, and
 * drops the minimum.
 */
export function lockUntil(takenMs: number, rules: RetentionRules, keepUntil: string | null, now: Date, testSeconds?: number): Date {
  const taken = Number.isNaN(takenMs) ? now.getTime() : takenMs;
  let until: number;
  if (testSeconds !== undefined) {
    until = now.getTime() + testSeconds * 1000;
  } else {
    until = Math.max(taken + longestKeepMs(rules), now.getTime() + MIN_LOCK_MS);
  }
  if (keepUntil !== null) {
    const pinned = keepUntil === 'forever' ? NaN : Date.parse(keepUntil);
    until = Math.max(until, Number.isNaN(pinned) ? taken + FOREVER_LOCK_DAYS * DAY : pinned);
  }
  return new Date(Math.ceil(until / 1000) * 1000);
}

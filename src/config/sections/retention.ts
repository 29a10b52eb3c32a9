import { ConfigError } from '../../errors';
import type { Period } from '../../retention/calendar';
import type { Reader } from '../reader';
import type { RetentionRules } from '../types';

/** BACKUP_RETENTION_* and BACKUP_KEEP_*: the rules every target keeps unless it has its own. */
export function parseRetentionVars(r: Reader): RetentionRules {
  return {
    days: r.int('BACKUP_RETENTION_DAYS', 7, 1, 36500, 'Set BACKUP_RETENTION_DAYS to how many days of backups to keep, e.g. 7.'),
    minCount: r.int('BACKUP_RETENTION_MIN_COUNT', 7, 1, 100000, 'Set BACKUP_RETENTION_MIN_COUNT to the fewest good backups to keep, at least 1.'),
    ...keepPeriods(r),
  };
}

/** BACKUP_KEEP_DAILY/WEEKLY/MONTHLY/YEARLY: grandfather-father-son counts, 0 (none) by default. */
function keepPeriods(r: Reader): Pick<RetentionRules, Period> {
  const keep = (name: string, example: number) =>
    r.int(name, 0, 0, 100000, `Set ${name} to how many ${name.slice('BACKUP_KEEP_'.length).toLowerCase()} backups to keep, e.g. ${example}, or 0 for none.`);
  return {
    daily: keep('BACKUP_KEEP_DAILY', 7),
    weekly: keep('BACKUP_KEEP_WEEKLY', 4),
    monthly: keep('BACKUP_KEEP_MONTHLY', 6),
    yearly: keep('BACKUP_KEEP_YEARLY', 2),
  };
}

const RETENTION_KEYS = ['days', 'min_count', 'daily', 'weekly', 'monthly', 'yearly'] as const;

/** A `retention` object of BACKUP_CONFIG_FILE (a target's or a database's), over `defaults`. */
export function parseRetention(raw: unknown, at: string, defaults: RetentionRules): RetentionRules {
  if (raw === undefined) return defaults;
  const fail = (msg: string): never => {
    throw new ConfigError(
      'BACKUP_CONFIG_FILE',
      `${at}: ${msg}`,
      'Write e.g. "retention": { "days": 7, "min_count": 7, "daily": 7, "weekly": 4, "monthly": 6, "yearly": 2 } (whole numbers; days and min_count at least 1, the others 0 for none; each one left out takes the BACKUP_* setting).',
    );
  };
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) fail('is not an object');
  const r = raw as Record<string, unknown>;
  const unknown = Object.keys(r).filter((k) => !(RETENTION_KEYS as readonly string[]).includes(k));
  if (unknown.length > 0) fail(`unknown setting "${unknown[0]}" (known: ${RETENTION_KEYS.join(', ')})`);
  const num = (key: (typeof RETENTION_KEYS)[number], def: number, min: number): number => {
    const v = r[key] === undefined ? def : r[key];
    if (!Number.isInteger(v) || (v as number) < min || (v as number) > 100000) fail(`${key} ${JSON.stringify(v)} is not a whole number from ${min} to 100000`);
    return v as number;
  };
  return {
    days: num('days', defaults.days, 1),
    minCount: num('min_count', defaults.minCount, 1),
    daily: num('daily', defaults.daily ?? 0, 0),
    weekly: num('weekly', defaults.weekly ?? 0, 0),
    monthly: num('monthly', defaults.monthly ?? 0, 0),
    yearly: num('yearly', defaults.yearly ?? 0, 0),
  };
}

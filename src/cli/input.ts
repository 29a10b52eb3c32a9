import { ConfigError } from '../errors';
import { clipBytes, PG_NAME_MAX_BYTES } from '../pg/names';
import { addDuration, addMonths, hasUnprintable, shown } from '../util/format';

/**
 * Parsers for the free-text values of command-line options. Each returns the value to use or
 * throws a ConfigError (exit 2) that names the option, shows the value (escaped, and shortened
 * when huge) and says what to give instead.
 */

/** The longest `--label`, in characters. */
export const LABEL_MAX_CHARS = 200;
/** How far ahead `--keep` may reach, in calendar years (a duration or a date); `forever` is there for longer. */
export const KEEP_MAX_YEARS = 100;
function unprintable(option: string, value: string, what: string): ConfigError | undefined {
  if (!hasUnprintable(value)) return undefined;
  return new ConfigError(option, `${shown(value)} contains a control character (a newline, tab, escape or the like)`, `Give ${what} without them.`);
}

/**
 * `--keep`: "forever", a duration (12h, 30d, 12w as fixed spans; 6m, 1y as calendar months and
 * years), a date (YYYY-MM-DD, meaning its start, 00:00 UTC) or a date-time with its offset
 * (2027-01-31T18:00Z, 2027-01-31T18:00:00+01:00). Returns "forever" or the ISO time; the time must
 * lie ahead, and at most 100 calendar years ahead.
 */
export function parseKeep(value: string, now = new Date()): string {
  const v = value.trim();
  const fix = `Use --keep 30d, 12w, 6m, 1y (at most ${KEEP_MAX_YEARS}y), forever, or a future date like 2027-01-31.`;
  if (v.toLowerCase() === 'forever') return 'forever';
  const bad = unprintable('--keep', value, 'a duration or a date');
  if (bad) throw bad;
  const limit = addMonths(now, KEEP_MAX_YEARS * 12);
  const tooFar = (at: Date) => !(at.getTime() <= limit.getTime()); // an invalid Date (a huge number) too
  if (/^\d+\s*[a-z]$/i.test(v)) {
    const at = addDuration(now, v);
    if (at === undefined) throw new ConfigError('--keep', `${shown(value)} has an unknown unit`, fix);
    if (at.getTime() === now.getTime()) throw new ConfigError('--keep', `${shown(value)} would not protect the backup at all`, fix);
    if (tooFar(at)) {
      throw new ConfigError(
        '--keep',
        `${shown(value)} is longer than ${KEEP_MAX_YEARS} years`,
        `Use --keep forever to keep it until you unpin it, or a duration or date within ${KEEP_MAX_YEARS} years (30d, 12w, 6m, 1y, 2027-01-31).`,
      );
    }
    return at.toISOString();
  }
  const at = parseDateTime(v);
  if (at === undefined) throw new ConfigError('--keep', `${shown(value)} is not a duration or a date`, fix);
  if (typeof at === 'string') throw new ConfigError('--keep', `${shown(value)} ${at}`, fix);
  if (at.getTime() <= now.getTime()) {
    throw new ConfigError('--keep', `${shown(value)} is in the past (now is ${now.toISOString().replace(/\.\d+Z$/, 'Z')})`, `Give a date ahead: ${fix}`);
  }
  if (tooFar(at)) {
    throw new ConfigError(
      '--keep',
      `${shown(value)} is more than ${KEEP_MAX_YEARS} years ahead (after ${limit.toISOString().replace(/\.\d+Z$/, 'Z')})`,
      `Use --keep forever to keep it until you unpin it, or a duration or date within ${KEEP_MAX_YEARS} years (30d, 12w, 6m, 1y, 2027-01-31).`,
    );
  }
  return at.toISOString();
}

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?(Z|[+-]\d{2}:\d{2})?)?$/i;

/**
 * A calendar date, or a date-time with its UTC offset, checked field by field (no 30 February,
 * no 24:00). Undefined when it does not look like one; a string saying what is wrong when it
 * looks like one but is not a real time.
 */
export function parseDateTime(text: string): Date | string | undefined {
  const m = DATE_TIME.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12) return `has no month ${mo}`;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day < 1 || day > daysInMonth) return `is not a date: ${y}-${mo} has ${daysInMonth} days`;
  if (h === undefined) return new Date(Date.UTC(year, month - 1, day));
  if (zone === undefined) return 'has a time but no time zone: add Z for UTC or an offset like +01:00';
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s ?? 0);
  if (hour > 23 || minute > 59 || second > 59) return 'is not a time of day';
  let offset = 0;
  if (zone.toUpperCase() !== 'Z') {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 14 || om > 59) return `has no time zone offset ${zone}`;
    offset = (zone.startsWith('-') ? -1 : 1) * (oh * 60 + om);
  }
  const ms = Number((frac ?? '0').padEnd(3, '0'));
  const t = Date.UTC(year, month - 1, day, hour, minute, second, ms) - offset * 60_000;
  return new Date(t);
}

/** `--label` (and `pin --note`): trimmed, 1 to 200 characters, no control characters. */
export function parseLabel(value: string, option = '--label'): string {
  const v = value.trim();
  if (v === '') throw new ConfigError(option, 'is empty', `Give a short note, e.g. ${option} "before migration 42", or leave out ${option}.`);
  const bad = unprintable(option, v, 'a one-line note');
  if (bad) throw bad;
  const length = [...v].length;
  if (length > LABEL_MAX_CHARS) {
    throw new ConfigError(option, `${shown(v)} is longer than ${LABEL_MAX_CHARS} characters`, `Give a short note (at most ${LABEL_MAX_CHARS} characters).`);
  }
  return v;
}

/**
 * A database name from the command line (`--target-db`): what PostgreSQL stores without cutting
 * it (at most 63 bytes), and a name, not a connection string.
 */
export function parseDatabaseName(option: string, value: string): string {
  if (value === '') throw new ConfigError(option, 'is empty', `Give the name of a new database, e.g. ${option} webserver_db_check.`);
  const bad = unprintable(option, value, 'a database name');
  if (bad) throw bad;
  const bytes = Buffer.byteLength(value);
  if (bytes > PG_NAME_MAX_BYTES) {
    throw new ConfigError(
      option,
      `${shown(value)} is ${bytes} bytes long; PostgreSQL keeps only ${PG_NAME_MAX_BYTES} and would create "${clipBytes(value, PG_NAME_MAX_BYTES)}"`,
      `Give a name of at most ${PG_NAME_MAX_BYTES} bytes (letters, digits and _ are one byte each).`,
    );
  }
  if (value.includes('=') || /^postgres(ql)?:\/\//i.test(value)) {
    throw new ConfigError(
      option,
      `${shown(value)} looks like a connection string, not a database name`,
      `Give only the new database's name; the server is the one DB_HOST/DB_PORT (or DATABASE_URL) names.`,
    );
  }
  return value;
}

/** `--table`: "schema.table", or "table" for public; returns "schema.table". */
export function parseTableName(value: string): string {
  const fix = 'Give a table as schema.table, or table for one in public, e.g. --table public.users.';
  const bad = unprintable('--table', value, 'a table name');
  if (bad) throw bad;
  const dot = value.indexOf('.');
  const [schema, name] = dot < 0 ? ['public', value] : [value.slice(0, dot), value.slice(dot + 1)];
  if (schema === '' || name === '') throw new ConfigError('--table', `${shown(value)} is not a table name`, fix);
  for (const part of [schema, name]) {
    const bytes = Buffer.byteLength(part);
    if (bytes > PG_NAME_MAX_BYTES) {
      throw new ConfigError('--table', `${shown(value)}: ${shown(part)} is ${bytes} bytes long, and PostgreSQL names are at most ${PG_NAME_MAX_BYTES}`, fix);
    }
  }
  return `${schema}.${name}`;
}

/** A backup id (or "latest", or a data file name) as `restore` and `verify` take it. */
export function parseBackupId(value: string): string {
  const fix = 'Give a backup id as `basement-backup list` shows it, or latest.';
  const bad = unprintable('backup id', value, 'a backup id');
  if (bad) throw bad;
  if (value === '') throw new ConfigError('backup id', 'is empty', fix);
  if ([...value].length > 255) throw new ConfigError('backup id', `${shown(value)} is too long to be a backup id`, fix);
  return value;
}

/** `--target`: a storage target name as the configuration allows them. */
export function parseTargetName(value: string): string {
  if (!/^[a-z0-9][a-z0-9_-]{0,31}$/i.test(value)) {
    throw new ConfigError(
      '--target',
      `${shown(value)} is not a storage target name`,
      'Give the name of a configured target (local, s3, or a name from BACKUP_CONFIG_FILE); `basement-backup status` lists them.',
    );
  }
  return value;
}

/** An optional `--target`: checked when given. */
export function parseOptionalTarget(value: string | undefined): string | undefined {
  return value === undefined ? undefined : parseTargetName(value);
}

/** The argument parser of a repeatable option: collects every value given, in order. */
export function repeatable(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `--app`: a pm2 app name or id. */
export function parseAppName(value: string): string {
  const fix = 'Give the app name (or id) that `pm2 list` shows, e.g. --app cloudedbasement.';
  const bad = unprintable('--app', value, 'a pm2 app name');
  if (bad) throw bad;
  if (value.trim() === '') throw new ConfigError('--app', 'is empty', fix);
  if (value.startsWith('-')) throw new ConfigError('--app', `${shown(value)} starts with "-", which pm2 would read as an option`, fix);
  if ([...value].length > 200) throw new ConfigError('--app', `${shown(value)} is too long to be a pm2 app name`, fix);
  return value;
}

/** The most pg_restore jobs `--jobs` takes. */
export const JOBS_MAX = 64;

/** `--jobs`: how many pg_restore jobs, 1 to JOBS_MAX. */
export function parseJobs(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > JOBS_MAX) {
    throw new ConfigError(
      '--jobs',
      `${shown(value)} is not a whole number from 1 to ${JOBS_MAX}`,
      'Give how many parallel pg_restore jobs to run, e.g. --jobs 2 (without it, one stream unless jobs pay).',
    );
  }
  return Number(value);
}

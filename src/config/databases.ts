import { ConfigError } from '../errors';
import { safeName } from '../repository/manifest';
import { shown } from '../util/format';
import { locationKey } from './location';
import { Reader } from './reader';
import { parseDb } from './sections/connection';
import { parsePingUrls } from './sections/notify';
import { parseRetention } from './sections/retention';
import { parseSchedule, parseVerify } from './sections/schedules';
import { substitute } from './sections/targets-file';
import type { BackupFormat, Configuration, DatabaseEntry, DigestMode, TargetConfig } from './types';

const DATABASE_KEYS = [
  'name',
  'url',
  'host',
  'port',
  'user',
  'password',
  'database',
  'sslmode',
  'schedule',
  'verify_schedule',
  'verify_targets',
  'format',
  'digest',
  'targets',
  'retention',
  'ping_url',
  'verify_ping_url',
];
/** An entry's key and the variable it stands in for (read by the same parsers, so it is checked the same way). */
const DATABASE_VARS: Record<string, string> = {
  url: 'DATABASE_URL',
  host: 'DB_HOST',
  port: 'DB_PORT',
  user: 'DB_USER',
  password: 'DB_PASSWORD',
  database: 'DB_NAME',
  sslmode: 'DB_SSLMODE',
  schedule: 'BACKUP_SCHEDULE',
  verify_schedule: 'VERIFY_SCHEDULE',
  verify_targets: 'VERIFY_TARGETS',
  format: 'BACKUP_FORMAT',
  digest: 'BACKUP_DIGEST',
  ping_url: 'BACKUP_PING_URL',
  verify_ping_url: 'BACKUP_VERIFY_PING_URL',
};
const DATABASE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/**
 * BACKUP_CONFIG_FILE's `databases:` list. Each entry is read as the DB_*, BACKUP_SCHEDULE,
 * VERIFY_SCHEDULE, BACKUP_FORMAT and BACKUP_DIGEST settings would be, over the environment's (so
 * DB_HOST, DB_USER, … are defaults every entry may override; DATABASE_URL is not inherited), plus
 * `targets` (names from the file's targets, default all) and `retention` (over each target's own).
 * Names must differ, and two entries backing up databases of one name must not share a target:
 * their backups would be one series.
 */
export function parseDatabases(r: Reader, raw: unknown[], vars: Record<string, string | undefined>, cwd: string, targets: TargetConfig[]): DatabaseEntry[] {
  const file = r.raw('BACKUP_CONFIG_FILE') ?? 'BACKUP_CONFIG_FILE';
  const out = raw.flatMap((item, i) => {
    const entry = parseDatabaseEntry(r, item, `${file} databases[${i}]`, vars, cwd, targets);
    return entry ? [entry] : [];
  });
  for (const [i, a] of out.entries()) {
    for (const b of out.slice(i + 1)) {
      if (a.name === b.name) {
        r.fail('BACKUP_CONFIG_FILE', `${file}: two databases are named "${a.name}"`, 'Give each database its own "name" (it is what --db takes).');
        continue;
      }
      if (safeName(a.db.database) !== safeName(b.db.database)) continue; // their backups have different names
      const shared = a.targets.find((t) => b.targets.some((u) => locationKey(u) === locationKey(t)));
      if (shared) {
        r.fail(
          'BACKUP_CONFIG_FILE',
          `${file}: databases "${a.name}" and "${b.name}" both back up a database named ${a.db.database} to the same place (target "${shared.name}")`,
          'Backups are named after the database, so the two would be one series. Give one of them its own target (another path or prefix).',
        );
      }
    }
  }
  return out;
}

/** One entry of `databases:`; its problems go to `r`, named by `at` (file and index) and the entry's key. */
function parseDatabaseEntry(
  r: Reader,
  item: unknown,
  at: string,
  vars: Record<string, string | undefined>,
  cwd: string,
  targets: TargetConfig[],
): DatabaseEntry | undefined {
  const fail = (msg: string, hint: string): undefined => void r.errors.push(new ConfigError('BACKUP_CONFIG_FILE', `${at}: ${msg}`, hint));
  if (!item || typeof item !== 'object' || Array.isArray(item)) {
    return fail('is not an object', 'Each database is an object such as { "name": "app", "database": "app_db", "schedule": "0 2 * * *" }.');
  }
  const e = item as Record<string, unknown>;
  const unknown = Object.keys(e).filter((k) => !DATABASE_KEYS.includes(k));
  if (unknown.length > 0) return fail(`unknown setting "${unknown[0]}"`, `Known: ${DATABASE_KEYS.join(', ')}.`);
  const overlay: Record<string, string | undefined> = { ...vars, DATABASE_URL: undefined };
  for (const [key, variable] of Object.entries(DATABASE_VARS)) {
    const v = e[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' && typeof v !== 'number') return fail(`"${key}" must be a string`, `Write "${key}" as a string.`);
    let missing: string | undefined;
    overlay[variable] = substitute(String(v), vars, (name) => {
      missing = name;
      return '' as never;
    });
    if (missing) return fail(`"${key}" refers to \${${missing}}, which is not set`, `Set ${missing} in the environment or an env file.`);
  }
  if (overlay.DATABASE_URL === undefined && e.database === undefined) {
    return fail('names no database', 'Give "database" (with "host", "user", … where they differ from the DB_* settings) or "url".');
  }
  const er = new Reader(overlay, cwd, r.checkSchedules);
  const db = parseDb(er);
  const { schedule, cronZone } = parseSchedule(er);
  const { verifySchedule, verifyTargets, verifyDb } = parseVerify(er, db, cronZone);
  const format = er.oneOf<BackupFormat>('BACKUP_FORMAT', 'custom', ['custom', 'plain']);
  const digest = er.oneOf<DigestMode>('BACKUP_DIGEST', 'full', ['full', 'counts', 'off']);
  const ping = parsePingUrls(er);
  const name = typeof e.name === 'string' ? e.name : db.database;
  for (const err of er.errors) {
    const key = Object.entries(DATABASE_VARS).find(([, v]) => v === err.variable)?.[0];
    // a setting the entry did not give came from the environment: name that variable
    fail(`(${name}) ${key && e[key] !== undefined ? `"${key}"` : err.variable}: ${err.message.slice(err.variable.length + 2)}`, err.hint ?? '');
  }
  if (!DATABASE_NAME.test(name)) {
    return fail(`name ${shown(name)} is not a short name`, 'Give "name": letters, digits, ".", "-" and "_", up to 63 (it is what --db takes).');
  }
  let chosen = targets;
  if (e.targets !== undefined) {
    const names = e.targets;
    if (!Array.isArray(names) || names.length === 0 || names.some((t) => typeof t !== 'string')) {
      return fail(
        '"targets" is not a list of target names',
        `Write e.g. "targets": [${targets.map((t) => JSON.stringify(t.name)).join(', ')}], or leave it out for every target.`,
      );
    }
    const unknownTarget = (names as string[]).find((t) => !targets.some((x) => x.name === t));
    if (unknownTarget !== undefined) return fail(`no target is named "${unknownTarget}"`, `The targets are: ${targets.map((t) => t.name).join(', ')}.`);
    chosen = targets.filter((t) => (names as string[]).includes(t.name));
  }
  try {
    chosen = chosen.map((t) => ({ ...t, retention: parseRetention(e.retention, `${at}.retention`, t.retention) }));
  } catch (err) {
    r.errors.push(err as ConfigError);
    return undefined;
  }
  return { name, db, verifyDb, schedule, verifySchedule, verifyTargets, format, digest, targets: chosen, ping };
}

/**
 * The entry of one database (`--db NAME`): its connection, schedules, format and targets.
 * Without a name there must be only one database.
 */
export function forDatabase(config: Configuration, name: string | undefined): DatabaseEntry {
  const names = config.databases.map((d) => d.name);
  let entry: DatabaseEntry | undefined;
  if (name === undefined) {
    if (config.databases.length > 1) {
      throw new ConfigError(
        '--db',
        `is required: ${config.databases.length} databases are configured (${names.join(', ')})`,
        `Add --db NAME, e.g. --db ${names[0]}.`,
      );
    }
    entry = config.databases[0];
  } else {
    entry = config.databases.find((d) => d.name === name);
    if (!entry) throw new ConfigError('--db', `no database is named ${shown(name)}`, `The databases configured: ${names.join(', ')}.`);
  }
  // parseConfig gives at least one database
  return entry!;
}

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RECIPIENT_HINT, recipientProblem } from '../crypto/age';
import { parseCompression, type CompressionSetting } from '../compress/compression';
import { ConfigError } from '../errors';
import { redact, registerSecret } from '../redact';
import { validateCron, validateTimezone } from '../scheduler/cron-time';
import type { DigestMode } from '../digest/table-digests';
import { PG_NAME_MAX_BYTES } from '../pg/names';
import { shown } from '../util/format';
import { readDatabaseUrl, URL_FORM } from './database-url';
import { loadEnv, type LoadedEnv } from './env-files';
import { locationKey } from './location';
import { safeName } from '../storage/manifest';
import {
  DEFAULT_S3_TIMEOUT_SECONDS,
  MAX_S3_TIMEOUT_SECONDS,
  normalizePrefix,
  parseRetention,
  readTargetsFile,
  substitute,
  type ConfigFile,
  type TargetConfig,
} from './targets';
import type { Period } from '../retention/calendar';
import type { RetentionRules } from '../retention/policy';

export type BackupFormat = 'custom' | 'plain';

export interface DbConfig {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  sslmode: string | undefined;
  connectTimeoutSeconds: number;
  /** Set when VERIFY_DB_* (the drill server) set this connection: hints then name them, not DB_*. */
  settings?: 'VERIFY_DB';
}

export interface SmtpConfig {
  host: string;
  port: number;
  secure: boolean;
  user: string | undefined;
  password: string | undefined;
}

export interface AlertConfig {
  /** Undefined when SMTP_HOST is not set: alerts are then only logged. */
  smtp: SmtpConfig | undefined;
  from: string;
  to: string[];
  repeatMinutes: number;
}

/** One database the daemon backs up: its connection, schedules, format and storage targets (with their retention). */
export interface DatabaseEntry {
  /** `--db NAME`; state, locks, logs and alerts name it. The database's own name unless the config file gives one. */
  name: string;
  db: DbConfig;
  verifyDb: DbConfig;
  schedule: string;
  verifySchedule: string | undefined;
  format: BackupFormat;
  digest: DigestMode;
  targets: TargetConfig[];
}

export interface Config {
  /** The database this configuration is about (see `forDatabase`): its entry's name. */
  name: string;
  /** Every database configured: the DB_* settings are the one-entry case; BACKUP_CONFIG_FILE's `databases:` lists several. */
  databases: DatabaseEntry[];
  /** BACKUP_MAX_PARALLEL: how many backups of different databases the daemon runs at once. */
  maxParallel: number;
  db: DbConfig;
  /** Where verification drills restore; defaults to the backed-up server. */
  verifyDb: DbConfig;
  /** Cron expression for restore drills, or undefined when VERIFY_SCHEDULE=off. */
  verifySchedule: string | undefined;
  digest: DigestMode;
  backupDir: string;
  stateDir: string;
  /** BACKUP_RESTORE_JOBS: pg_restore's jobs for restores (without --jobs) and drills; undefined: chosen per backup (restore/jobs.ts). */
  restoreJobs: number | undefined;
  /** BACKUP_TEMP_DIR: where a restore writes the decompressed copy pg_restore --jobs reads (removed afterwards). */
  tempDir: string;
  /** Where backups go; the first is where list/restore/verify look unless told otherwise. */
  targets: TargetConfig[];
  schedule: string;
  timezone: string;
  catchUp: boolean;
  format: BackupFormat;
  /** BACKUP_COMPRESSION, or undefined for the default: zstd when available, else gzip. */
  compression: CompressionSetting | undefined;
  /** BACKUP_ZSTD_PROGRAM: `builtin`, a program, or undefined (`zstd` from PATH when there, else Node's zstd). */
  zstdProgram: string | undefined;
  minFreeBytes: number;
  alert: AlertConfig;
  pgBinDir: string | undefined;
  logDir: string;
  logLevel: string;
  logMaxBytes: number;
  logMaxFiles: number;
  shutdownGraceSeconds: number;
  /** A pg_dump, pg_restore or psql that shows no progress for this long is stopped (BACKUP_STALL_MINUTES). */
  stallMs: number;
  /** The pm2 executable `restore --app` uses. */
  pm2Bin: string;
  /** What that pm2 sees: childEnv and PM2_HOME (which pm2 daemon to talk to), nothing else. */
  pm2Env: NodeJS.ProcessEnv;
  /** pm2's own log files for this process (pm2 passes them as pm_out_log_path etc.), to keep private. */
  pm2LogFiles: string[];
  /**
   * The variables of basement-backup's own environment a PostgreSQL program may see (see
   * childEnvironment), never a secret; libpqEnv adds the connection settings of each run.
   */
  childEnv: NodeJS.ProcessEnv;
  /** The age public keys new backups are encrypted to (BACKUP_AGE_RECIPIENTS[_FILE]); undefined: not encrypted. */
  encryption: { recipients: string[]; variable: string } | undefined;
  /** BACKUP_AGE_IDENTITY_FILE: the secret keys that open encrypted backups (restore, verify), read when needed. */
  ageIdentityFile: string | undefined;
  /** BACKUP_AGE_PROGRAM: `builtin`, a program, or undefined (`age` from PATH when there, else the library). */
  ageProgram: string | undefined;
}

export interface LoadedConfig {
  config: Config;
  env: LoadedEnv;
}

/** One variable basement-backup reads: the reference in docs/configuration.md is generated from these (`npm run docs`). */
export interface Variable {
  name: string;
  /** What `config check` shows when it is not set; also the reference's default column. */
  default?: string;
  secret?: boolean;
  /** One line for the reference (markdown; links relative to the repository's root). */
  meaning: string;
  /** Shown in the README's short table of the settings most servers set. */
  common?: boolean;
  /** Read from the process environment only, before the env files (not a `config check` row). */
  environmentOnly?: boolean;
}

/** Every variable basement-backup reads, with its default and meaning, for `config check` and the documentation. */
export const VARIABLES: Variable[] = [
  {
    name: 'DATABASE_URL',
    secret: true,
    meaning:
      'instead of the `DB_*` variables: `postgresql://USER:PASSWORD@HOST:5432/DBNAME?sslmode=require`; special characters in the password percent-encoded (`@` as `%40`, `/` as `%2F`, `#` as `%23`, `%` as `%25`): a URL that can be read two ways is refused; `?password=` is taken as libpq takes it',
  },
  { name: 'DB_HOST', default: 'localhost', meaning: 'database host (or a Unix socket directory)' },
  { name: 'DB_PORT', default: '5432', meaning: 'database port' },
  {
    name: 'DB_USER',
    meaning: 'database user (unset: the OS user); needs `SELECT` on every table and sequence, see [Database privileges](README.md#database-privileges)',
  },
  { name: 'DB_PASSWORD', secret: true, meaning: "its password; passed to pg_dump in the child's environment, never on the command line" },
  { name: 'DB_NAME', common: true, meaning: "the database to back up (usually in the app's `.env`, with `DB_HOST`, `DB_PORT`, `DB_USER`, `DB_PASSWORD`)" },
  {
    name: 'DB_SSLMODE',
    meaning: '`disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`; unset: `prefer` (TLS when the server offers it, as libpq does)',
  },
  { name: 'DB_CONNECT_TIMEOUT_SECONDS', default: '10', meaning: 'give up connecting after this long' },
  { name: 'BACKUP_DIR', default: './backups', common: true, meaning: "where backups, their manifests and the daemon's small state live (created 0700)" },
  { name: 'BACKUP_LOCAL', default: 'true', meaning: 'keep backups in `BACKUP_DIR` (target `local`); `false` for off-site only' },
  { name: 'BACKUP_STATE_DIR', default: '<BACKUP_DIR>/.basement-backup', meaning: 'locks and failure/alert state (0700)' },
  {
    name: 'BACKUP_CONFIG_FILE',
    meaning:
      'JSON or YAML file listing every storage target (see [Off-site copies](docs/offsite.md#several-targets)), replacing `BACKUP_LOCAL` and `S3_*`; and/or several databases (see [Several databases](README.md#several-databases))',
  },
  { name: 'S3_ENDPOINT', default: 'AWS', meaning: 'S3-compatible endpoint URL (Spaces, B2, R2, MinIO)' },
  { name: 'S3_REGION', default: 'us-east-1', meaning: 'region (`auto` for R2)' },
  { name: 'S3_BUCKET', common: true, meaning: 'bucket for off-site copies (target `s3`); unset: none; see [Off-site copies](docs/offsite.md)' },
  { name: 'S3_PREFIX', default: '(bucket root)', meaning: 'key prefix, e.g. `cloudedbasement/`' },
  { name: 'S3_ACCESS_KEY_ID', secret: true, meaning: 'the bucket key (see the [least-privilege policy](docs/offsite.md#least-privilege-bucket-access))' },
  { name: 'S3_SECRET_ACCESS_KEY', secret: true, meaning: "the bucket key's secret" },
  { name: 'S3_FORCE_PATH_STYLE', default: 'false', meaning: '`true` for MinIO and other path-style endpoints' },
  { name: 'S3_PART_SIZE_MB', default: '8', meaning: 'multipart part size (5–5000); memory per bucket is about three parts' },
  {
    name: 'S3_TIMEOUT_SECONDS',
    default: String(DEFAULT_S3_TIMEOUT_SECONDS),
    meaning:
      'a request to the bucket that cannot connect, gets no answer or moves no data for this long fails (see [deadlines](docs/offsite.md#when-a-bucket-stops-answering))',
  },
  { name: 'S3_RETENTION_DAYS', default: 'BACKUP_RETENTION_DAYS', meaning: "the bucket's own retention: days" },
  { name: 'S3_RETENTION_MIN_COUNT', default: 'BACKUP_RETENTION_MIN_COUNT', meaning: "the bucket's own retention: minimum count" },
  { name: 'BACKUP_SCHEDULE', default: '0 2 * * *', common: true, meaning: 'cron expression, 5 fields, or 6 with seconds first' },
  {
    name: 'BACKUP_MAX_PARALLEL',
    default: '1',
    meaning:
      'how many databases the daemon backs up at once when `BACKUP_CONFIG_FILE` lists several (the others wait their turn); see [Several databases](README.md#several-databases)',
  },
  { name: 'BACKUP_TIMEZONE', default: 'UTC', common: true, meaning: 'time zone of the schedule (IANA name, e.g. `Europe/Berlin`)' },
  { name: 'BACKUP_CATCH_UP', default: 'true', meaning: 'at start, take a backup when a scheduled one was missed' },
  { name: 'BACKUP_FORMAT', default: 'custom', meaning: '`custom` (`pg_dump -Fc`, `.dump.zst`) or `plain` (SQL, `.sql.zst`)' },
  {
    name: 'BACKUP_COMPRESSION',
    default: '`zstd` when available, else `gzip`',
    meaning:
      '`zstd[:LEVEL]` (1–19, default 1; compressed in the stream, multi-threaded), `gzip[:LEVEL]` (1–9), `lz4` (custom format, pg_dump 16+), `none`; a bare digit is a gzip level',
  },
  {
    name: 'BACKUP_ZSTD_PROGRAM',
    default: '`zstd` when installed',
    meaning: "the zstd program that compresses and decompresses; `builtin` for Node's own (22.15+), or a path",
  },
  { name: 'BACKUP_RETENTION_DAYS', default: '7', common: true, meaning: 'delete backups older than this…' },
  { name: 'BACKUP_RETENTION_MIN_COUNT', default: '7', common: true, meaning: '…but never keep fewer good backups than this' },
  {
    name: 'BACKUP_KEEP_DAILY',
    default: '0',
    meaning: 'also keep the newest backup of each of the last N days that have one (in `BACKUP_TIMEZONE`); see [Retention](README.md#retention)',
  },
  { name: 'BACKUP_KEEP_WEEKLY', default: '0', meaning: '…of each of the last N ISO weeks (Monday to Sunday)' },
  { name: 'BACKUP_KEEP_MONTHLY', default: '0', meaning: '…of each of the last N calendar months' },
  { name: 'BACKUP_KEEP_YEARLY', default: '0', meaning: '…of each of the last N calendar years' },
  {
    name: 'BACKUP_AGE_RECIPIENTS',
    meaning:
      'encrypt new backups (data and roles) to these age public keys, comma-separated (`age1…`; from `basement-backup keygen`); see [Encryption](docs/encryption.md)',
  },
  { name: 'BACKUP_AGE_RECIPIENTS_FILE', meaning: 'instead: a file of age public keys, one per line, `#` comments' },
  {
    name: 'BACKUP_AGE_PROGRAM',
    default: '`age` when installed',
    meaning:
      'the age program that encrypts and decrypts the data stream (about five times faster than the built-in library); `builtin` for the library, or a path',
  },
  {
    name: 'BACKUP_AGE_IDENTITY_FILE',
    meaning: 'the age identity (secret key file, mode 0600) that `restore` and `verify` decrypt with; not needed to take backups',
  },
  {
    name: 'BACKUP_RESTORE_JOBS',
    default: '`auto`',
    meaning:
      "`pg_restore --jobs` for restores without `--jobs`, and for drills: `auto` streams in one job unless jobs pay (cores, the archive's size, how its data is spread over tables; see [Parallel restores](docs/design.md#parallel-restores)), a number (1–16) fixes it",
  },
  {
    name: 'BACKUP_TEMP_DIR',
    default: '`$TMPDIR` or `/tmp`',
    meaning:
      'where `restore` and drills write a decompressed copy of a backup for a parallel `pg_restore --jobs` (private, removed afterwards, and one a killed run left by the next restore, drill or daemon start; skipped when it has no room)',
  },
  { name: 'BACKUP_MIN_FREE_MB', default: '256', meaning: 'refuse a backup that would leave less free disk than this' },
  {
    name: 'BACKUP_DIGEST',
    default: 'full',
    meaning: "what each backup records of every table in the dump's snapshot, for drills: `full` (row count and content digest), `counts`, or `off`",
  },
  {
    name: 'BACKUP_STALL_MINUTES',
    default: '30',
    meaning:
      'stop pg_dump, pg_restore or psql after this long without progress (exit 25); decimals allowed (`0.5` is 30 seconds), see [Stalls](docs/design.md#stalls)',
  },
  {
    name: 'VERIFY_SCHEDULE',
    default: '0 4 * * *',
    common: true,
    meaning: "cron expression for the daemon's restore drill of the newest backup (in `BACKUP_TIMEZONE`), or `off`",
  },
  { name: 'VERIFY_DB_HOST', default: 'DB_HOST', meaning: 'run drills on another server so production is not loaded' },
  { name: 'VERIFY_DB_PORT', default: 'DB_PORT', meaning: "the drill server's port" },
  { name: 'VERIFY_DB_USER', default: 'DB_USER', meaning: "the drill server's user" },
  {
    name: 'VERIFY_DB_PASSWORD',
    secret: true,
    default: 'DB_PASSWORD',
    meaning: 'its password; the production password is not sent to another host (`VERIFY_DB_HOST` or `VERIFY_DB_USER` set) unless this is set',
  },
  { name: 'SMTP_HOST', common: true, meaning: 'mail server; alerts are only logged when unset (set `SMTP_PORT`, `SMTP_USER`, `SMTP_PASSWORD` with it)' },
  { name: 'SMTP_PORT', default: '587 (465 when SMTP_SECURE=true)', meaning: 'mail server port' },
  { name: 'SMTP_SECURE', default: 'false', meaning: '`true` for TLS from the start (port 465); otherwise STARTTLS when offered' },
  { name: 'SMTP_USER', meaning: 'mail login' },
  { name: 'SMTP_PASSWORD', secret: true, meaning: "mail login's password" },
  { name: 'ALERT_EMAIL_FROM', default: 'basement-backup@<hostname>', meaning: 'sender' },
  { name: 'ALERT_EMAIL_TO', common: true, meaning: 'comma-separated recipients' },
  { name: 'ALERT_REPEAT_MINUTES', default: '60', meaning: 'while failures continue, remind at most this often (0: every failure)' },
  { name: 'PG_BIN_DIR', default: 'newest pg_dump on PATH or under /usr/lib/postgresql/*/bin', meaning: 'where pg_dump and pg_restore live' },
  { name: 'LOG_DIR', default: './logs', meaning: 'JSON log (`basement-backup.jsonl`) and `backup.log`' },
  { name: 'LOG_LEVEL', default: 'info', meaning: '`error`, `warn`, `info`, `debug`' },
  { name: 'LOG_MAX_SIZE_MB', default: '10', meaning: 'rotate the JSON log at this size' },
  { name: 'LOG_MAX_FILES', default: '5', meaning: 'how many JSON log files rotation keeps' },
  {
    name: 'SHUTDOWN_GRACE_SECONDS',
    default: '30',
    meaning: "how long a stopping daemon lets a running backup finish; keep pm2's `kill_timeout` above it plus 5 s",
  },
  { name: 'PM2_BIN', default: 'pm2 (on PATH)', meaning: 'the pm2 that `restore --app` uses to stop and start the app' },
  {
    name: 'BACKUP_ENV_FILE',
    default: './.env',
    environmentOnly: true,
    meaning: 'comma-separated env files to read (environment only; `--env-file` wins over it)',
  },
];

const LOG_LEVELS = ['error', 'warn', 'info', 'debug'];

/** BACKUP_STALL_MINUTES, in ms. */
function stallMs(r: Reader): number {
  const hint =
    'Set BACKUP_STALL_MINUTES to how many minutes pg_dump or pg_restore may show no progress before it is stopped, e.g. 30 (decimals allowed: 0.5 is 30 seconds).';
  return Math.round(r.decimal('BACKUP_STALL_MINUTES', 30, 7 * 24 * 60, hint) * 60_000);
}

/** BACKUP_RESTORE_JOBS: `auto` (undefined) or 1–16. */
function restoreJobs(r: Reader): number | undefined {
  const raw = r.raw('BACKUP_RESTORE_JOBS');
  if (raw === undefined || raw.toLowerCase() === 'auto') return undefined;
  return r.int('BACKUP_RESTORE_JOBS', 1, 1, 16, 'Set BACKUP_RESTORE_JOBS to auto, or to how many pg_restore jobs to run, e.g. 2.');
}

class Reader {
  readonly errors: ConfigError[] = [];
  constructor(
    private readonly vars: Record<string, string | undefined>,
    private readonly cwd: string,
  ) {}

  raw(name: string): string | undefined {
    const v = this.vars[name];
    if (v === undefined) return undefined;
    const t = v.trim();
    return t === '' ? undefined : t;
  }

  fail(name: string, message: string, hint?: string): void {
    this.errors.push(new ConfigError(name, message, hint));
  }

  string(name: string, def: string): string {
    return this.raw(name) ?? def;
  }

  int(name: string, def: number, min: number, max: number, hint?: string): number {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (!/^-?\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      this.fail(
        name,
        `"${v}" is not a whole number from ${min} to ${max}`,
        hint ?? `Set ${name} to a number like ${def}, or remove it to use the default (${def}).`,
      );
      return def;
    }
    return Number(v);
  }

  /** A positive number, decimals allowed (0.5 = half a unit). */
  decimal(name: string, def: number, max: number, hint: string): number {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (!/^\d+(\.\d+)?$|^\.\d+$/.test(v) || Number(v) <= 0 || Number(v) > max) {
      this.fail(name, `"${v}" is not a number above 0 and at most ${max}`, hint);
      return def;
    }
    return Number(v);
  }

  bool(name: string, def: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return def;
    const l = v.toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(l)) return true;
    if (['false', '0', 'no', 'off'].includes(l)) return false;
    this.fail(name, `"${v}" is not true or false`, `Set ${name}=true or ${name}=false.`);
    return def;
  }

  oneOf<T extends string>(name: string, def: T, allowed: readonly T[]): T {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (!(allowed as readonly string[]).includes(v.toLowerCase())) {
      this.fail(name, `"${v}" is not one of ${allowed.join(', ')}`, `Set ${name} to one of: ${allowed.join(', ')}.`);
      return def;
    }
    return v.toLowerCase() as T;
  }

  dir(name: string, def: string): string {
    return path.resolve(this.cwd, this.string(name, def));
  }
}

const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
const EMAIL = /^[^\s@<>,]+@[^\s@<>,]+$/;

function parseDb(r: Reader): DbConfig {
  const url = r.raw('DATABASE_URL');
  registerSecret(r.raw('DB_PASSWORD'));
  const connectTimeoutSeconds = r.int('DB_CONNECT_TIMEOUT_SECONDS', 10, 1, 600);
  if (url) return urlDb(r, url, connectTimeoutSeconds);
  const database = r.raw('DB_NAME');
  if (!database) {
    r.fail('DB_NAME', 'is not set', "Set DB_NAME to the database to back up (or DATABASE_URL), e.g. in the app's .env passed with --env-file.");
  }
  const sslmode = r.raw('DB_SSLMODE') === undefined ? undefined : r.oneOf('DB_SSLMODE', 'prefer', SSL_MODES);
  return {
    host: r.string('DB_HOST', 'localhost'),
    port: r.int('DB_PORT', 5432, 1, 65535),
    user: r.raw('DB_USER') ?? os.userInfo().username,
    password: r.raw('DB_PASSWORD'),
    database: database ?? '',
    sslmode,
    connectTimeoutSeconds,
  };
}

/** DATABASE_URL (see database-url.ts), with DB_PASSWORD, DB_NAME, DB_USER and DB_SSLMODE for what it leaves out. */
function urlDb(r: Reader, url: string, connectTimeoutSeconds: number): DbConfig {
  const read = readDatabaseUrl(url);
  if ('problem' in read) {
    r.fail('DATABASE_URL', read.problem, read.hint);
    return { host: 'localhost', port: 5432, user: '', password: undefined, database: '', sslmode: undefined, connectTimeoutSeconds };
  }
  const u = read.parts;
  registerSecret(u.password);
  registerSecret(u.password && encodeURIComponent(u.password));
  const database = u.database ?? r.raw('DB_NAME') ?? '';
  if (!database) r.fail('DATABASE_URL', 'names no database', `Add the database name after the host: ${URL_FORM}.`);
  if (u.sslmode !== undefined && !(SSL_MODES as readonly string[]).includes(u.sslmode)) {
    r.fail(
      'DATABASE_URL',
      `sslmode ${shown(u.sslmode)} is not one of ${SSL_MODES.join(', ')}`,
      'Use ?sslmode=require (or another of those values) in DATABASE_URL.',
    );
  }
  const sslmode = u.sslmode ?? (r.raw('DB_SSLMODE') === undefined ? undefined : r.oneOf('DB_SSLMODE', 'prefer', SSL_MODES));
  const user = u.user ?? r.raw('DB_USER') ?? os.userInfo().username;
  return { host: u.host ?? 'localhost', port: u.port ?? 5432, user, password: u.password ?? r.raw('DB_PASSWORD'), database, sslmode, connectTimeoutSeconds };
}

function parseAlerts(r: Reader): AlertConfig {
  const host = r.raw('SMTP_HOST');
  const secure = r.bool('SMTP_SECURE', false);
  const port = r.int('SMTP_PORT', secure ? 465 : 587, 1, 65535);
  const user = r.raw('SMTP_USER');
  const password = r.raw('SMTP_PASSWORD');
  registerSecret(password);
  const toRaw = r.raw('ALERT_EMAIL_TO');
  const to = (toRaw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const addr of to) {
    if (!EMAIL.test(addr)) r.fail('ALERT_EMAIL_TO', `"${addr}" is not an email address`, 'Use comma-separated addresses like ops@example.com,me@example.com.');
  }
  const from = r.string('ALERT_EMAIL_FROM', `basement-backup@${os.hostname()}`);
  if (!EMAIL.test(from.replace(/^.*<([^>]+)>\s*$/, '$1'))) {
    r.fail('ALERT_EMAIL_FROM', `"${from}" is not an email address`, 'Set ALERT_EMAIL_FROM to an address your mail server accepts as sender.');
  }
  if (host && to.length === 0) {
    r.fail('ALERT_EMAIL_TO', 'is not set but SMTP_HOST is', 'Set ALERT_EMAIL_TO to the address(es) that should receive alerts.');
  }
  if (!host && to.length > 0) {
    r.fail('SMTP_HOST', 'is not set but ALERT_EMAIL_TO is', 'Set SMTP_HOST (and SMTP_PORT, SMTP_USER, SMTP_PASSWORD) to your mail server.');
  }
  if (password && !user) r.fail('SMTP_USER', 'is not set but SMTP_PASSWORD is', 'Set SMTP_USER to the login that goes with SMTP_PASSWORD.');
  return {
    smtp: host ? { host, port, secure, user, password } : undefined,
    from,
    to,
    repeatMinutes: r.int('ALERT_REPEAT_MINUTES', 60, 0, 7 * 24 * 60),
  };
}

/**
 * Storage targets: from BACKUP_CONFIG_FILE when set, else local (BACKUP_DIR, unless
 * BACKUP_LOCAL=false) plus one S3 target when S3_BUCKET is set.
 */
function parseTargets(
  r: Reader,
  vars: Record<string, string | undefined>,
  backupDir: string,
  retention: RetentionRules,
  cwd: string,
): { targets: TargetConfig[]; databases: unknown[] | undefined } {
  const file = r.raw('BACKUP_CONFIG_FILE');
  if (!file) return { targets: environmentTargets(r, backupDir, retention), databases: undefined };
  let read: ConfigFile;
  try {
    read = readTargetsFile(path.resolve(cwd, file), vars, retention, cwd);
  } catch (err) {
    r.errors.push(err as ConfigError);
    return { targets: [], databases: undefined };
  }
  // a file with only `databases:` keeps the environment's targets
  if (!read.targets) return { targets: environmentTargets(r, backupDir, retention), databases: read.databases };
  const both = S3_VARS.find((v) => r.raw(v));
  if (both) r.fail(both, 'is set and so is BACKUP_CONFIG_FILE', 'Describe every target in BACKUP_CONFIG_FILE, or use the S3_* variables without it: not both.');
  return { targets: read.targets, databases: read.databases };
}

const S3_VARS = [
  'S3_BUCKET',
  'S3_ENDPOINT',
  'S3_ACCESS_KEY_ID',
  'S3_SECRET_ACCESS_KEY',
  'S3_PREFIX',
  'S3_REGION',
  'S3_FORCE_PATH_STYLE',
  'S3_PART_SIZE_MB',
  'S3_TIMEOUT_SECONDS',
  'S3_RETENTION_DAYS',
  'S3_RETENTION_MIN_COUNT',
];

/** local (BACKUP_DIR, unless BACKUP_LOCAL=false) plus one S3 target when S3_BUCKET is set. */
function environmentTargets(r: Reader, backupDir: string, retention: RetentionRules): TargetConfig[] {
  const targets: TargetConfig[] = [];
  if (r.bool('BACKUP_LOCAL', true)) targets.push({ name: 'local', type: 'local', path: backupDir, setting: 'BACKUP_DIR', retention });
  const bucket = r.raw('S3_BUCKET');
  if (!bucket) {
    const stray = S3_VARS.find((v) => v !== 'S3_BUCKET' && r.raw(v));
    if (stray) r.fail('S3_BUCKET', `is not set but ${stray} is`, 'Set S3_BUCKET to the bucket for off-site copies, or remove the S3_* variables.');
  } else {
    const accessKeyId = r.raw('S3_ACCESS_KEY_ID');
    const secretAccessKey = r.raw('S3_SECRET_ACCESS_KEY');
    registerSecret(accessKeyId);
    registerSecret(secretAccessKey);
    if (!accessKeyId) r.fail('S3_ACCESS_KEY_ID', 'is not set but S3_BUCKET is', "Set the bucket's access key id (and S3_SECRET_ACCESS_KEY).");
    if (!secretAccessKey) r.fail('S3_SECRET_ACCESS_KEY', 'is not set but S3_BUCKET is', "Set the bucket's secret access key.");
    const endpoint = r.raw('S3_ENDPOINT');
    if (endpoint && !/^https?:\/\/[^\s/]+/.test(endpoint))
      r.fail('S3_ENDPOINT', `"${endpoint}" is not an http(s) URL`, 'e.g. https://fra1.digitaloceanspaces.com, or leave it unset for AWS.');
    targets.push({
      name: 's3',
      type: 's3',
      endpoint,
      region: r.string('S3_REGION', 'us-east-1'),
      bucket,
      prefix: normalizePrefix(r.string('S3_PREFIX', '')),
      accessKeyId: accessKeyId ?? '',
      secretAccessKey: secretAccessKey ?? '',
      forcePathStyle: r.bool('S3_FORCE_PATH_STYLE', false),
      partSizeBytes: r.int('S3_PART_SIZE_MB', 8, 5, 5000, 'Set S3_PART_SIZE_MB to a part size from 5 to 5000 (MB).') * 1024 * 1024,
      timeoutSeconds: r.int(
        'S3_TIMEOUT_SECONDS',
        DEFAULT_S3_TIMEOUT_SECONDS,
        1,
        MAX_S3_TIMEOUT_SECONDS,
        `Set S3_TIMEOUT_SECONDS to how long an S3 request may go without an answer or progress (1 to ${MAX_S3_TIMEOUT_SECONDS}; default ${DEFAULT_S3_TIMEOUT_SECONDS}).`,
      ),
      retention: {
        ...retention,
        days: r.int('S3_RETENTION_DAYS', retention.days, 1, 36500),
        minCount: r.int('S3_RETENTION_MIN_COUNT', retention.minCount, 1, 100000),
      },
    });
  }
  if (targets.length === 0 && r.errors.length === 0) {
    r.fail(
      'BACKUP_LOCAL',
      'is false and no other storage target is configured',
      'Set S3_BUCKET (and the S3_* settings) or BACKUP_CONFIG_FILE, or keep local backups.',
    );
  }
  return targets;
}

const CHILD_ENV = /^(PATH|HOME|USER|LOGNAME|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|SSL_CERT_FILE|SSL_CERT_DIR)$/;

/**
 * Only what a child process (pg_dump, psql, …) needs from `env`: PATH, HOME, the user, the
 * locale, TZ, TMPDIR, SSL_CERT_*. No secret (SMTP_PASSWORD, …), no PG* variable that could
 * redirect it to another server, nothing like LD_PRELOAD.
 */
export function childEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (CHILD_ENV.test(k)) out[k] = v;
  return out;
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

/** BACKUP_SCHEDULE in BACKUP_TIMEZONE; `cronZone` is the zone other schedules are checked in (UTC when the zone is bad). */
function parseSchedule(r: Reader): { schedule: string; timezone: string; cronZone: string } {
  const schedule = r.string('BACKUP_SCHEDULE', '0 2 * * *');
  const timezone = r.string('BACKUP_TIMEZONE', 'UTC');
  const tzProblem = validateTimezone(timezone);
  if (tzProblem) r.fail('BACKUP_TIMEZONE', `"${timezone}" ${tzProblem}`, 'Use an IANA time zone name such as UTC or Europe/Berlin.');
  const cronZone = tzProblem ? 'UTC' : timezone;
  const cronProblem = validateCron(schedule, cronZone);
  if (cronProblem) {
    r.fail(
      'BACKUP_SCHEDULE',
      `"${schedule}" is not a valid cron expression (${cronProblem})`,
      'Use 5 fields (minute hour day month weekday) like "0 2 * * *", or 6 with seconds first.',
    );
  }
  return { schedule, timezone, cronZone };
}

/** The restore drills: VERIFY_SCHEDULE (or off) and the server they restore into (VERIFY_DB_*, by default the backed-up one). */
function parseVerify(r: Reader, db: DbConfig, cronZone: string): { verifySchedule: string | undefined; verifyDb: DbConfig } {
  const verifyRaw = r.string('VERIFY_SCHEDULE', '0 4 * * *');
  let verifySchedule: string | undefined;
  if (verifyRaw.toLowerCase() !== 'off') {
    const problem = validateCron(verifyRaw, cronZone);
    if (problem)
      r.fail(
        'VERIFY_SCHEDULE',
        `"${verifyRaw}" is not a valid cron expression (${problem})`,
        'Use a cron expression like "0 4 * * *" (after the backup window), or off.',
      );
    verifySchedule = verifyRaw;
  }
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
  return { verifySchedule, verifyDb };
}

/** Encryption: the recipients of new backups, and where the identity that opens them is. */
function parseCompressionVar(r: Reader): CompressionSetting | undefined {
  const raw = r.raw('BACKUP_COMPRESSION');
  if (raw === undefined) return undefined;
  try {
    return parseCompression(raw);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    r.errors.push(err);
    return undefined;
  }
}

function parseEncryption(r: Reader): Pick<Config, 'encryption' | 'ageIdentityFile' | 'ageProgram'> {
  return { ...parseRecipients(r), ageProgram: r.raw('BACKUP_AGE_PROGRAM') };
}

function parseRecipients(r: Reader): Pick<Config, 'encryption' | 'ageIdentityFile'> {
  const inline = r.raw('BACKUP_AGE_RECIPIENTS');
  const fromFile = r.raw('BACKUP_AGE_RECIPIENTS_FILE');
  const identity = r.raw('BACKUP_AGE_IDENTITY_FILE');
  const ageIdentityFile = identity ? r.dir('BACKUP_AGE_IDENTITY_FILE', identity) : undefined;
  if (inline && fromFile) {
    r.fail('BACKUP_AGE_RECIPIENTS_FILE', 'is set as well as BACKUP_AGE_RECIPIENTS', 'Set one of them.');
    return { encryption: undefined, ageIdentityFile };
  }
  let variable = 'BACKUP_AGE_RECIPIENTS';
  let recipients: string[] = [];
  if (inline) recipients = inline.split(',');
  if (fromFile) {
    variable = 'BACKUP_AGE_RECIPIENTS_FILE';
    const file = r.dir(variable, fromFile);
    try {
      recipients = fs.readFileSync(file, 'utf8').split('\n');
    } catch (err) {
      r.fail(variable, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, 'Give a readable file of age public keys, one per line.');
      return { encryption: undefined, ageIdentityFile };
    }
  }
  recipients = recipients.map((l) => l.replace(/#.*/, '').trim()).filter((l) => l !== '');
  if (!inline && !fromFile) return { encryption: undefined, ageIdentityFile };
  if (recipients.length === 0) {
    r.fail(variable, 'holds no public key', 'Give at least one age public key (age1…), or unset it to take unencrypted backups.');
    return { encryption: undefined, ageIdentityFile };
  }
  const problem = recipientProblem(recipients);
  if (problem) r.fail(variable, problem, RECIPIENT_HINT);
  return { encryption: { recipients: [...new Set(recipients)], variable }, ageIdentityFile };
}

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
  'format',
  'digest',
  'targets',
  'retention',
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
  format: 'BACKUP_FORMAT',
  digest: 'BACKUP_DIGEST',
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
function parseDatabases(r: Reader, raw: unknown[], vars: Record<string, string | undefined>, cwd: string, targets: TargetConfig[]): DatabaseEntry[] {
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
  const er = new Reader(overlay, cwd);
  const db = parseDb(er);
  const { schedule, cronZone } = parseSchedule(er);
  const { verifySchedule, verifyDb } = parseVerify(er, db, cronZone);
  const format = er.oneOf<BackupFormat>('BACKUP_FORMAT', 'custom', ['custom', 'plain']);
  const digest = er.oneOf<DigestMode>('BACKUP_DIGEST', 'full', ['full', 'counts', 'off']);
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
  return { name, db, verifyDb, schedule, verifySchedule, format, digest, targets: chosen };
}

/**
 * The configuration of one database (`--db NAME`): its connection, schedules, format and targets
 * in the top-level fields every command reads. Without a name there must be only one database.
 */
export function forDatabase(config: Config, name: string | undefined): Config {
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
  if (!entry) return config;
  const { name: entryName, db, verifyDb, schedule, verifySchedule, format, digest, targets } = entry;
  return { ...config, name: entryName, db, verifyDb, schedule, verifySchedule, format, digest, targets };
}

/**
 * Reads and validates the whole configuration once. Throws the first problem as a ConfigError;
 * `errors` on the thrown error's `all` property lists every problem found.
 */
export function parseConfig(vars: Record<string, string | undefined>, cwd = process.cwd(), processEnv: NodeJS.ProcessEnv = process.env): Config {
  const r = new Reader(vars, cwd);
  // the DB_* database: its problems count only when BACKUP_CONFIG_FILE lists no databases
  const dbReader = new Reader(vars, cwd);
  const db = parseDb(dbReader);
  if (Buffer.byteLength(db.database) > PG_NAME_MAX_BYTES) {
    // PostgreSQL would silently use the first 63 bytes, and restores would name the wrong database
    dbReader.fail(
      dbReader.raw('DATABASE_URL') ? 'DATABASE_URL' : 'DB_NAME',
      `the database name ${shown(db.database)} is ${Buffer.byteLength(db.database)} bytes long; PostgreSQL names are at most ${PG_NAME_MAX_BYTES}`,
      'Give the name exactly as `psql -l` lists it.',
    );
  }
  const backupDir = r.dir('BACKUP_DIR', './backups');
  const { schedule, timezone, cronZone } = parseSchedule(r);
  const format = r.oneOf<BackupFormat>('BACKUP_FORMAT', 'custom', ['custom', 'plain']);
  const digest = r.oneOf<DigestMode>('BACKUP_DIGEST', 'full', ['full', 'counts', 'off']);
  const { verifySchedule, verifyDb } = parseVerify(r, db, cronZone);
  const compression = parseCompressionVar(r);
  const retention = {
    days: r.int('BACKUP_RETENTION_DAYS', 7, 1, 36500, 'Set BACKUP_RETENTION_DAYS to how many days of backups to keep, e.g. 7.'),
    minCount: r.int('BACKUP_RETENTION_MIN_COUNT', 7, 1, 100000, 'Set BACKUP_RETENTION_MIN_COUNT to the fewest good backups to keep, at least 1.'),
    ...keepPeriods(r),
  };
  const minFreeBytes = r.int('BACKUP_MIN_FREE_MB', 256, 0, 10_000_000) * 1024 * 1024;
  const { targets, databases: rawDatabases } = parseTargets(r, vars, backupDir, retention, cwd);
  const single: DatabaseEntry = { name: db.database, db, verifyDb, schedule, verifySchedule, format, digest, targets };
  if (!rawDatabases) r.errors.unshift(...dbReader.errors);
  const databases = rawDatabases ? parseDatabases(r, rawDatabases, vars, cwd, targets) : [single];
  const first = databases[0] ?? single;
  const alert = parseAlerts(r);
  const pgBinDir = r.raw('PG_BIN_DIR');
  const logLevel = r.oneOf('LOG_LEVEL', 'info', LOG_LEVELS);
  const childEnv = childEnvironment(processEnv);
  const config: Config = {
    name: first.name,
    db: first.db,
    verifyDb: first.verifyDb,
    verifySchedule: first.verifySchedule,
    digest: first.digest,
    databases,
    maxParallel: r.int('BACKUP_MAX_PARALLEL', 1, 1, 64, 'Set BACKUP_MAX_PARALLEL to how many databases may be backed up at once, e.g. 1.'),
    backupDir,
    stateDir: r.dir('BACKUP_STATE_DIR', path.join(backupDir, '.basement-backup')),
    restoreJobs: restoreJobs(r),
    tempDir: r.dir('BACKUP_TEMP_DIR', os.tmpdir()),
    targets: first.targets,
    schedule: first.schedule,
    timezone,
    catchUp: r.bool('BACKUP_CATCH_UP', true),
    format: first.format,
    compression,
    zstdProgram: r.raw('BACKUP_ZSTD_PROGRAM'),
    minFreeBytes,
    alert,
    pgBinDir: pgBinDir ? path.resolve(cwd, pgBinDir) : undefined,
    logDir: r.dir('LOG_DIR', './logs'),
    logLevel,
    logMaxBytes: r.int('LOG_MAX_SIZE_MB', 10, 1, 10_000) * 1024 * 1024,
    logMaxFiles: r.int('LOG_MAX_FILES', 5, 1, 1000),
    shutdownGraceSeconds: r.int('SHUTDOWN_GRACE_SECONDS', 30, 0, 86400),
    stallMs: stallMs(r),
    pm2Bin: r.string('PM2_BIN', 'pm2'),
    pm2LogFiles: ['pm_out_log_path', 'pm_err_log_path', 'pm_log_path']
      .map((v) => r.raw(v))
      .filter((f): f is string => f !== undefined && f !== '/dev/null' && path.isAbsolute(f)),
    // from the process environment only, as the child would inherit it; not from env files
    childEnv,
    pm2Env: { ...childEnv, ...(processEnv.PM2_HOME ? { PM2_HOME: processEnv.PM2_HOME } : {}) },
    ...parseEncryption(r),
  };
  if (r.errors.length > 0) {
    const first = r.errors[0]!;
    throw Object.assign(first, { all: r.errors });
  }
  return config;
}

/**
 * Loads env files and the process environment, then validates. Also the one place that sets a
 * variable a library reads from our own environment: the AWS SDK warns on every run that its
 * releases after January 2027 will need Node 22; the version in package-lock.json runs on Node 20,
 * and the warning is noise in cron and pm2 logs.
 */
export function loadConfig(envFiles: string[] = [], processEnv: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): LoadedConfig {
  processEnv.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const env = loadEnv(envFiles, processEnv, cwd);
  return { config: parseConfig(env.vars, cwd, processEnv), env };
}

/** The effective configuration as rows for `config check`, secrets redacted. */
export function describeConfig(loaded: LoadedConfig): { variable: string; value: string; source: string }[] {
  const { env } = loaded;
  return VARIABLES.filter((v) => !v.environmentOnly).map((v) => {
    const raw = env.vars[v.name];
    const set = raw !== undefined && raw.trim() !== '';
    let value: string;
    if (!set) value = v.default ? `${v.default}` : '(not set)';
    else if (v.secret) value = v.name === 'DATABASE_URL' ? redact(raw) : '***';
    else value = raw;
    return { variable: v.name, value, source: set ? (env.sources[v.name] ?? 'environment') : 'default' };
  });
}

/**
 * Just the alert settings, for reporting a configuration error by mail when the rest of the
 * configuration is broken. Undefined when the alert settings themselves are unusable.
 */
export function parseAlertConfig(vars: Record<string, string | undefined>): AlertConfig | undefined {
  const r = new Reader(vars, process.cwd());
  const alert = parseAlerts(r);
  return r.errors.length === 0 && alert.smtp ? alert : undefined;
}

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DbState } from '../../src/state/store';
import { describeConfig, loadConfig, parseAlertConfig, parseConfig } from '../../src/config';
import { loadEnv } from '../../src/config/env-files';
import { BackupError, ConfigError } from '../../src/errors';
import { acquireLock, lockHolder } from '../../src/lock/file-lock';
import { composeAlert } from '../../src/notify/alerts';
import { shouldAlertFailure, shouldAlertRecovery } from '../../src/notify/policy';
import { clearSecrets, redact, registerSecret } from '../../src/redact';
import { nextRun, previousRun, validateCron, validateTimezone } from '../../src/scheduler/cron-time';
import {
  backupId,
  belongsTo,
  compactTimestamp,
  dataFileName,
  isKept,
  manifestFileName,
  parseManifest,
  safeName,
  type Manifest,
} from '../../src/repository/manifest';
import { addDuration, formatAge, formatBytes } from '../../src/util/format';
import { clearSecretsAroundEachTest, tempDir } from '../helpers/temp';

const CWD = '/srv/app';
const BASE = { DB_NAME: 'webserver_db' };
const DB_SECRET = 'Pa55-w0rd-never-shown';
const SMTP_SECRET = 'smtp-secret-never-shown';

const tmp = () => tempDir('bb-unit-');
clearSecretsAroundEachTest();

/** parseConfig that must fail: returns the thrown ConfigError (with its `all`). */
function configError(vars: Record<string, string | undefined>): ConfigError & { all: ConfigError[] } {
  try {
    parseConfig(vars, CWD);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError & { all: ConfigError[] };
    expect(Array.isArray(e.all)).toBe(true);
    expect(e.all[0]).toBe(e);
    expect(e.code).toBe('CONFIG');
    expect(e.exitCode).toBe(2);
    return e;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(vars)}`);
}

describe('parseConfig: defaults', () => {
  it('fills in every default when only DB_NAME is set', () => {
    const c = parseConfig(BASE, CWD);
    const d = c.databases[0]!;
    expect(d.db).toEqual({
      host: 'localhost',
      port: 5432,
      user: os.userInfo().username,
      password: undefined,
      database: 'webserver_db',
      sslmode: undefined,
      connectTimeoutSeconds: 10,
    });
    expect(c.backupDir).toBe('/srv/app/backups');
    expect(c.stateDir).toBe('/srv/app/backups/.basement-backup');
    expect(d.schedule).toBe('0 2 * * *');
    expect(c.timezone).toBe('UTC');
    expect(c.catchUp).toBe(true);
    expect(d.format).toBe('custom');
    expect(c.compression).toBeUndefined();
    expect(d.targets[0]!.retention).toEqual({ days: 7, minCount: 7, daily: 0, weekly: 0, monthly: 0, yearly: 0 });
    expect(c.minFreeBytes).toBe(256 * 1024 * 1024);
    expect(c.alert).toEqual({ smtp: undefined, from: `basement-backup@${os.hostname()}`, to: [], repeatMinutes: 60 });
    expect(c.pgBinDir).toBeUndefined();
    expect(c.logDir).toBe('/srv/app/logs');
    expect(c.logLevel).toBe('info');
    expect(c.logMaxBytes).toBe(10 * 1024 * 1024);
    expect(c.logMaxFiles).toBe(5);
    expect(c.shutdownGraceSeconds).toBe(30);
  });

  it('reads the seed variable names and every setting', () => {
    const c = parseConfig(
      {
        DB_HOST: 'db.internal',
        DB_PORT: '6543',
        DB_USER: 'app',
        DB_PASSWORD: DB_SECRET,
        DB_NAME: 'webserver_db',
        DB_SSLMODE: 'REQUIRE',
        BACKUP_DIR: 'data/bk',
        BACKUP_SCHEDULE: '*/30 * * * * *',
        BACKUP_TIMEZONE: 'Europe/Berlin',
        BACKUP_CATCH_UP: 'no',
        BACKUP_FORMAT: 'Plain',
        BACKUP_COMPRESSION: '9',
        BACKUP_RETENTION_DAYS: '14',
        BACKUP_RETENTION_MIN_COUNT: '3',
        BACKUP_KEEP_DAILY: '7',
        BACKUP_KEEP_WEEKLY: '4',
        BACKUP_KEEP_MONTHLY: '12',
        SMTP_HOST: 'mail.example.com',
        SMTP_SECURE: 'true',
        SMTP_USER: 'mailer',
        SMTP_PASSWORD: SMTP_SECRET,
        ALERT_EMAIL_FROM: 'Backups <backup@example.com>',
        ALERT_EMAIL_TO: 'ops@example.com, me@example.com',
        PG_BIN_DIR: '/usr/lib/postgresql/15/bin',
        LOG_LEVEL: 'DEBUG',
      },
      CWD,
    );
    const d = c.databases[0]!;
    expect(d.db).toMatchObject({ host: 'db.internal', port: 6543, user: 'app', password: DB_SECRET, database: 'webserver_db', sslmode: 'require' });
    expect(c.backupDir).toBe('/srv/app/data/bk');
    expect(d.schedule).toBe('*/30 * * * * *');
    expect(c.timezone).toBe('Europe/Berlin');
    expect(c.catchUp).toBe(false);
    expect(d.format).toBe('plain');
    expect(c.compression).toEqual({ method: 'gzip', level: 9 }); // a bare digit: a gzip level, as before zstd
    expect(d.targets[0]!.retention).toEqual({ days: 14, minCount: 3, daily: 7, weekly: 4, monthly: 12, yearly: 0 });
    expect(c.alert.smtp).toEqual({ host: 'mail.example.com', port: 465, secure: true, user: 'mailer', password: SMTP_SECRET });
    expect(c.alert.to).toEqual(['ops@example.com', 'me@example.com']);
    expect(c.alert.from).toBe('Backups <backup@example.com>');
    expect(c.pgBinDir).toBe('/usr/lib/postgresql/15/bin');
    expect(c.logLevel).toBe('debug');
    // the secrets are now known to redact()
    expect(redact(`x ${DB_SECRET} y ${SMTP_SECRET}`)).toBe('x *** y ***');
  });

  it('treats empty and blank values as not set', () => {
    const c = parseConfig({ ...BASE, DB_PORT: '', BACKUP_FORMAT: '   ', SMTP_HOST: '' }, CWD);
    const d = c.databases[0]!;
    expect(d.db.port).toBe(5432);
    expect(d.format).toBe('custom');
    expect(c.alert.smtp).toBeUndefined();
  });

  it('SMTP_PORT defaults to 587 without SMTP_SECURE', () => {
    const c = parseConfig({ ...BASE, SMTP_HOST: 'mail', ALERT_EMAIL_TO: 'ops@example.com' }, CWD);
    expect(c.alert.smtp).toMatchObject({ host: 'mail', port: 587, secure: false });
  });
});

describe('parseConfig: DATABASE_URL', () => {
  it('takes user, password, host, port, database and sslmode from the URL', () => {
    const c = parseConfig({ DATABASE_URL: 'postgresql://app:s%40cret%2Fpw@db.example.com:6543/webserver_db?sslmode=require' }, CWD).databases[0]!;
    expect(c.db).toMatchObject({ host: 'db.example.com', port: 6543, user: 'app', password: 's@cret/pw', database: 'webserver_db', sslmode: 'require' });
    expect(redact('the password is s@cret/pw')).toBe('the password is ***');
    expect(redact('postgresql://app:s%40cret%2Fpw@db')).not.toContain('cret');
  });

  it('accepts postgres: too, defaults the port, and falls back to DB_PASSWORD and DB_NAME', () => {
    const c = parseConfig({ DATABASE_URL: 'postgres://app@db.example.com', DB_PASSWORD: DB_SECRET, DB_NAME: 'fallback_db' }, CWD).databases[0]!;
    expect(c.db).toMatchObject({ host: 'db.example.com', port: 5432, user: 'app', password: DB_SECRET, database: 'fallback_db', sslmode: undefined });
  });

  it('takes a socket directory from ?host=', () => {
    const c = parseConfig({ DATABASE_URL: 'postgresql:///webserver_db?host=%2Fvar%2Frun%2Fpostgresql' }, CWD).databases[0]!;
    expect(c.db.host).toBe('/var/run/postgresql');
    expect(c.db.database).toBe('webserver_db');
  });

  it('wins over the DB_* variables', () => {
    const c = parseConfig({ DATABASE_URL: 'postgresql://u:pw123@h:5555/url_db', DB_HOST: 'other', DB_PORT: '1', DB_NAME: 'other_db' }, CWD).databases[0]!;
    expect(c.db).toMatchObject({ host: 'h', port: 5555, database: 'url_db', password: 'pw123' });
  });

  it('with DATABASE_URL, DB_SSLMODE still applies and is checked', () => {
    expect(parseConfig({ DATABASE_URL: 'postgresql://app@db/x', DB_SSLMODE: 'verify-full' }, CWD).databases[0]!.db.sslmode).toBe('verify-full');
    expect(parseConfig({ DATABASE_URL: 'postgresql://app@db/x?sslmode=disable', DB_SSLMODE: 'require' }, CWD).databases[0]!.db.sslmode).toBe('disable');
    const e = configError({ DATABASE_URL: 'postgresql://app@db/x', DB_SSLMODE: 'always' });
    expect(e.variable).toBe('DB_SSLMODE');
    expect(e.message).toContain('"always"');
  });

  it.each([
    ['not a URL at all', `not a url ${DB_SECRET}`, /DATABASE_URL: is not a URL/],
    ['a bad port', `postgresql://app:${DB_SECRET}@db:99999/x`, /DATABASE_URL: is not a valid URL/],
    ['another scheme', `mysql://app:${DB_SECRET}@db/x`, /DATABASE_URL: scheme "mysql:" is not postgresql:/],
    ['no database', `postgresql://app:${DB_SECRET}@db:5432`, /DATABASE_URL: names no database/],
    ['a bad sslmode', `postgresql://app:${DB_SECRET}@db/x?sslmode=sometimes`, /DATABASE_URL: .*"sometimes"/],
  ])('%s is a ConfigError that never shows the password', (_what, url, re) => {
    const e = configError({ DATABASE_URL: url });
    expect(e.variable).toBe('DATABASE_URL');
    expect(e.message).toMatch(re);
    expect(e.hint).toMatch(/postgresql:\/\/|sslmode|Percent-encode/i);
    expect(`${e.message} ${e.hint}`).not.toContain(DB_SECRET);
  });

  // Each of these parsed as some URL before: the password's tail became the host or the database
  // name, and from there reached messages, logs, mails and the state file's name.
  it.each([
    ["an '@' in the password", 'postgresql://app:leakA@leakB@db.example.com:5432/webserver_db', /2 '@'/],
    ["an '@' and a '/' in the password", 'postgresql://app:leakA@leakB/leakC@db.example.com/webserver_db', /2 '@'/],
    ["a '/' then an '@'", 'postgresql://app:leakA/leakB@db.example.com/webserver_db', /'@' comes after/],
    ["a '?' then an '@'", 'postgresql://app:leakA?leakB@db.example.com/webserver_db', /'@' comes after/],
    ["a '#' in the password", 'postgresql://app:leakA#leakB@db.example.com/webserver_db', /'#'/],
    ["a '%' not encoded", 'postgresql://app:leakA%zzleakB@db.example.com/webserver_db', /'%'/],
    ['a percent-escape that is not UTF-8', 'postgresql://app:leakA%FFleakB@db.example.com/webserver_db', /UTF-8/],
    ["a '/' in the database part", 'postgresql://app@db.example.com/leakA/leakB', /more than one '\/'/],
    ['a space', 'postgresql://app:leakA leakB@db.example.com/webserver_db', /space/],
  ])('%s is refused, showing nothing after the scheme, with the fix', (_what, url, re) => {
    const e = configError({ DATABASE_URL: url });
    expect(e.variable).toBe('DATABASE_URL');
    expect(e.message).toMatch(re);
    expect(e.message).toMatch(/cannot be read one way only|not a valid URL|UTF-8/);
    expect(e.hint).toContain('%40');
    expect(e.hint).toContain('DB_PASSWORD');
    for (const part of ['leakA', 'leakB', 'leakC', 'db.example.com', 'webserver_db', 'app'])
      expect(`${e.message} ${e.hint}`.replace(/postgresql:\/\/USER:PASSWORD@HOST:5432\/DBNAME/g, '')).not.toContain(part);
  });

  it('takes ?password= as libpq does, and refuses a password given twice', () => {
    const c = parseConfig({ DATABASE_URL: `postgresql://app@db.example.com/webserver_db?sslmode=require&password=${encodeURIComponent('a+b&c')}` }, CWD)
      .databases[0]!;
    expect(c.db).toMatchObject({ user: 'app', password: 'a+b&c', host: 'db.example.com', database: 'webserver_db', sslmode: 'require' });
    expect(redact('login with a+b&c failed')).toBe('login with *** failed');
    const e = configError({ DATABASE_URL: `postgresql://app:${DB_SECRET}@db/x?password=${DB_SECRET}` });
    expect(e.message).toMatch(/DATABASE_URL: gives a password twice/);
    expect(`${e.message} ${e.hint}`).not.toContain(DB_SECRET);
  });

  it('takes user and dbname from the query, and an IPv6 host without its brackets', () => {
    const c = parseConfig({ DATABASE_URL: 'postgresql://[::1]:6543?user=app&dbname=webserver_db' }, CWD).databases[0]!;
    expect(c.db).toMatchObject({ host: '::1', port: 6543, user: 'app', database: 'webserver_db' });
  });
});

interface BadCase {
  name: string;
  vars: Record<string, string>;
  variable: string;
  /** The bad value the message must quote, if any. */
  shows?: string;
  message: RegExp;
}

const BAD: BadCase[] = [
  { name: 'DB_PORT not a number', vars: { ...BASE, DB_PORT: 'abc' }, variable: 'DB_PORT', shows: 'abc', message: /not a whole number from 1 to 65535/ },
  { name: 'DB_PORT out of range', vars: { ...BASE, DB_PORT: '70000' }, variable: 'DB_PORT', shows: '70000', message: /from 1 to 65535/ },
  { name: 'DB_PORT with a fraction', vars: { ...BASE, DB_PORT: '5432.5' }, variable: 'DB_PORT', shows: '5432.5', message: /whole number/ },
  { name: 'DB_NAME missing', vars: { DB_HOST: 'localhost' }, variable: 'DB_NAME', message: /is not set/ },
  {
    name: 'WAL_SLOT_NAME with a dash',
    vars: { ...BASE, WAL_SLOT_NAME: 'basement-backup' },
    variable: 'WAL_SLOT_NAME',
    shows: 'basement-backup',
    message: /not a replication slot name/,
  },
  {
    name: 'PITR_VERIFY_SCHEDULE not a cron expression',
    vars: { ...BASE, PITR_VERIFY_SCHEDULE: 'weekly' },
    variable: 'PITR_VERIFY_SCHEDULE',
    shows: 'weekly',
    message: /not a valid cron expression/,
  },
  { name: 'WAL_RECEIVE not on or off', vars: { ...BASE, WAL_RECEIVE: 'sometimes' }, variable: 'WAL_RECEIVE', shows: 'sometimes', message: /not true or false/ },
  {
    name: 'BACKUP_HTTP_BUSY_RATE negative',
    vars: { ...BASE, BACKUP_HTTP_PORT: '9187', BACKUP_HTTP_BUSY_RATE: '-5' },
    variable: 'BACKUP_HTTP_BUSY_RATE',
    shows: '-5',
    message: /whole number from 0 to 100000/,
  },
  {
    name: 'BACKUP_HTTP_BUSY_RATE without the port',
    vars: { ...BASE, BACKUP_HTTP_BUSY_RATE: '20' },
    variable: 'BACKUP_HTTP_BUSY_RATE',
    message: /is set but BACKUP_HTTP_PORT is not/,
  },
  { name: 'DB_SSLMODE unknown', vars: { ...BASE, DB_SSLMODE: 'maybe' }, variable: 'DB_SSLMODE', shows: 'maybe', message: /not one of disable, allow/ },
  {
    name: 'BACKUP_SCHEDULE out of range',
    vars: { ...BASE, BACKUP_SCHEDULE: '61 2 * * *' },
    variable: 'BACKUP_SCHEDULE',
    shows: '61 2 * * *',
    message: /not a valid cron expression/,
  },
  {
    name: 'BACKUP_SCHEDULE with 3 fields',
    vars: { ...BASE, BACKUP_SCHEDULE: '0 2 *' },
    variable: 'BACKUP_SCHEDULE',
    shows: '0 2 *',
    message: /3 fields; expected 5 or 6/,
  },
  { name: 'BACKUP_SCHEDULE words', vars: { ...BASE, BACKUP_SCHEDULE: 'daily' }, variable: 'BACKUP_SCHEDULE', shows: 'daily', message: /not a valid cron/ },
  {
    name: 'BACKUP_TIMEZONE unknown',
    vars: { ...BASE, BACKUP_TIMEZONE: 'Mars/Olympus_Mons' },
    variable: 'BACKUP_TIMEZONE',
    shows: 'Mars/Olympus_Mons',
    message: /not a known time zone/,
  },
  { name: 'BACKUP_FORMAT unknown', vars: { ...BASE, BACKUP_FORMAT: 'tar' }, variable: 'BACKUP_FORMAT', shows: 'tar', message: /not one of custom, plain/ },
  {
    name: 'BACKUP_RETENTION_DAYS zero',
    vars: { ...BASE, BACKUP_RETENTION_DAYS: '0' },
    variable: 'BACKUP_RETENTION_DAYS',
    shows: '0',
    message: /whole number from 1/,
  },
  {
    name: 'BACKUP_RETENTION_DAYS words',
    vars: { ...BASE, BACKUP_RETENTION_DAYS: 'a week' },
    variable: 'BACKUP_RETENTION_DAYS',
    shows: 'a week',
    message: /whole number/,
  },
  {
    name: 'BACKUP_KEEP_DAILY negative',
    vars: { ...BASE, BACKUP_KEEP_DAILY: '-1' },
    variable: 'BACKUP_KEEP_DAILY',
    shows: '-1',
    message: /whole number from 0/,
  },
  {
    name: 'BACKUP_KEEP_MONTHLY words',
    vars: { ...BASE, BACKUP_KEEP_MONTHLY: 'six' },
    variable: 'BACKUP_KEEP_MONTHLY',
    shows: 'six',
    message: /whole number from 0/,
  },
  {
    name: 'BACKUP_KEEP_YEARLY decimal',
    vars: { ...BASE, BACKUP_KEEP_YEARLY: '1.5' },
    variable: 'BACKUP_KEEP_YEARLY',
    shows: '1.5',
    message: /whole number from 0/,
  },
  {
    name: 'BACKUP_RETENTION_MIN_COUNT negative',
    vars: { ...BASE, BACKUP_RETENTION_MIN_COUNT: '-3' },
    variable: 'BACKUP_RETENTION_MIN_COUNT',
    shows: '-3',
    message: /whole number from 1/,
  },
  {
    name: 'BACKUP_RETENTION_MIN_COUNT zero',
    vars: { ...BASE, BACKUP_RETENTION_MIN_COUNT: '0' },
    variable: 'BACKUP_RETENTION_MIN_COUNT',
    shows: '0',
    message: /whole number from 1/,
  },
  {
    name: 'SMTP_HOST without ALERT_EMAIL_TO',
    vars: { ...BASE, SMTP_HOST: 'mail.example.com' },
    variable: 'ALERT_EMAIL_TO',
    message: /is not set but SMTP_HOST is/,
  },
  {
    name: 'ALERT_EMAIL_TO without SMTP_HOST',
    vars: { ...BASE, ALERT_EMAIL_TO: 'ops@example.com' },
    variable: 'SMTP_HOST',
    message: /is not set but ALERT_EMAIL_TO is/,
  },
  {
    name: 'ALERT_EMAIL_TO with a bad address',
    vars: { ...BASE, SMTP_HOST: 'mail', ALERT_EMAIL_TO: 'ops@example.com, ops at example.com' },
    variable: 'ALERT_EMAIL_TO',
    shows: 'ops at example.com',
    message: /is not an email address/,
  },
  {
    name: 'ALERT_EMAIL_FROM not an address',
    vars: { ...BASE, ALERT_EMAIL_FROM: 'backups' },
    variable: 'ALERT_EMAIL_FROM',
    shows: 'backups',
    message: /is not an email address/,
  },
  {
    name: 'SMTP_PASSWORD without SMTP_USER',
    vars: { ...BASE, SMTP_HOST: 'mail', ALERT_EMAIL_TO: 'ops@example.com', SMTP_PASSWORD: SMTP_SECRET },
    variable: 'SMTP_USER',
    message: /is not set but SMTP_PASSWORD is/,
  },
  { name: 'SMTP_SECURE not a boolean', vars: { ...BASE, SMTP_SECURE: 'tls' }, variable: 'SMTP_SECURE', shows: 'tls', message: /not true or false/ },
  { name: 'SMTP_PORT not a number', vars: { ...BASE, SMTP_PORT: 'smtp' }, variable: 'SMTP_PORT', shows: 'smtp', message: /whole number/ },
  {
    name: 'LOG_LEVEL unknown',
    vars: { ...BASE, LOG_LEVEL: 'verbose' },
    variable: 'LOG_LEVEL',
    shows: 'verbose',
    message: /not one of error, warn, info, debug/,
  },
  {
    name: 'BACKUP_COMPRESSION too high',
    vars: { ...BASE, BACKUP_COMPRESSION: '12' },
    variable: 'BACKUP_COMPRESSION',
    shows: '12',
    message: /is not a compression/,
  },
  {
    name: 'BACKUP_COMPRESSION an unknown method',
    vars: { ...BASE, BACKUP_COMPRESSION: 'bzip2' },
    variable: 'BACKUP_COMPRESSION',
    shows: 'bzip2',
    message: /is not a compression/,
  },
  {
    name: 'BACKUP_COMPRESSION a zstd level out of range',
    vars: { ...BASE, BACKUP_COMPRESSION: 'zstd:25' },
    variable: 'BACKUP_COMPRESSION',
    shows: 'zstd:25',
    message: /zstd levels go from 1 to 19/,
  },
  {
    name: 'BACKUP_CATCH_UP not a boolean',
    vars: { ...BASE, BACKUP_CATCH_UP: 'sometimes' },
    variable: 'BACKUP_CATCH_UP',
    shows: 'sometimes',
    message: /true or false/,
  },
  { name: 'BACKUP_MIN_FREE_MB negative', vars: { ...BASE, BACKUP_MIN_FREE_MB: '-1' }, variable: 'BACKUP_MIN_FREE_MB', shows: '-1', message: /whole number/ },
  {
    name: 'BACKUP_METRICS_FILE not a .prom file',
    vars: { ...BASE, BACKUP_METRICS_FILE: '/var/lib/node_exporter/textfile_collector/basement-backup.txt' },
    variable: 'BACKUP_METRICS_FILE',
    shows: '/var/lib/node_exporter/textfile_collector/basement-backup.txt',
    message: /does not end in \.prom/,
  },
];

describe('parseConfig: every bad value is a ConfigError naming the variable, the value and the fix', () => {
  it.each(BAD)('$name', ({ vars, variable, shows, message }) => {
    const e = configError({ DB_PASSWORD: DB_SECRET, ...vars });
    expect(e.all).toHaveLength(1);
    expect(e.variable).toBe(variable);
    expect(e.message.startsWith(`${variable}: `)).toBe(true);
    expect(e.message).toMatch(message);
    if (shows !== undefined) expect(e.message).toContain(`"${shows}"`);
    expect(e.hint, 'a hint').toBeTruthy();
    expect(e.hint!.length).toBeGreaterThan(15);
    expect(e.hint).toMatch(/Set|Use|Add|Check/);
    const text = `${e.message}\n${e.hint}`;
    expect(text).not.toContain(DB_SECRET);
    expect(text).not.toContain(SMTP_SECRET);
  });

  it('reports every problem at once: `all` lists each, the first is thrown', () => {
    const e = configError({
      DB_PASSWORD: DB_SECRET,
      DB_PORT: 'abc',
      BACKUP_SCHEDULE: 'every night',
      BACKUP_FORMAT: 'zip',
      BACKUP_RETENTION_DAYS: '-1',
      LOG_LEVEL: 'loud',
      SMTP_HOST: 'mail',
    });
    expect(e.all.map((x) => x.variable).sort()).toEqual([
      'ALERT_EMAIL_TO',
      'BACKUP_FORMAT',
      'BACKUP_RETENTION_DAYS',
      'BACKUP_SCHEDULE',
      'DB_NAME',
      'DB_PORT',
      'LOG_LEVEL',
    ]);
    for (const x of e.all) {
      expect(x).toBeInstanceOf(ConfigError);
      expect(x.hint).toBeTruthy();
      expect(x.message).not.toContain(DB_SECRET);
    }
  });

  it('a bad time zone does not also make a good schedule fail', () => {
    const e = configError({ ...BASE, BACKUP_TIMEZONE: 'Nowhere/Town', BACKUP_SCHEDULE: '0 3 * * 1-5' });
    expect(e.all.map((x) => x.variable)).toEqual(['BACKUP_TIMEZONE']);
  });
});

describe('loadConfig and env files', () => {
  function write(dir: string, name: string, text: string): string {
    const p = path.join(dir, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
    return p;
  }

  it('reads explicit files in order: later files win', () => {
    const dir = tmp();
    write(dir, 'app.env', 'DB_NAME=from_app\nDB_USER=app\nDB_PASSWORD="quoted secret"\n# a comment\n');
    write(dir, 'override.env', 'DB_NAME=from_override\n');
    const env = loadEnv(['app.env', path.join(dir, 'override.env')], {}, dir);
    expect(env.vars).toMatchObject({ DB_NAME: 'from_override', DB_USER: 'app', DB_PASSWORD: 'quoted secret' });
    expect(env.files).toEqual([path.join(dir, 'app.env'), path.join(dir, 'override.env')]);
    expect(env.sources.DB_NAME).toBe(path.join(dir, 'override.env'));
    expect(env.sources.DB_USER).toBe(path.join(dir, 'app.env'));
  });

  it('reads BACKUP_ENV_FILE as a comma list, relative to cwd', () => {
    const dir = tmp();
    write(dir, 'a.env', 'DB_NAME=a\nDB_HOST=host_a\n');
    write(dir, 'sub/b.env', 'DB_NAME=b\n');
    const env = loadEnv([], { BACKUP_ENV_FILE: ' a.env , sub/b.env ,' }, dir);
    expect(env.files).toEqual([path.join(dir, 'a.env'), path.join(dir, 'sub/b.env')]);
    expect(env.vars).toMatchObject({ DB_NAME: 'b', DB_HOST: 'host_a' });
  });

  it('--env-file takes precedence over BACKUP_ENV_FILE', () => {
    const dir = tmp();
    write(dir, 'a.env', 'DB_NAME=a\n');
    write(dir, 'cli.env', 'DB_NAME=cli\n');
    const env = loadEnv(['cli.env'], { BACKUP_ENV_FILE: 'a.env' }, dir);
    expect(env.files).toEqual([path.join(dir, 'cli.env')]);
    expect(env.vars.DB_NAME).toBe('cli');
  });

  it('reads ./.env from cwd by default, and no .env is fine', () => {
    const dir = tmp();
    expect(loadEnv([], {}, dir)).toEqual({ vars: {}, sources: {}, files: [] });
    write(dir, '.env', 'DB_NAME=dotenv_db\n');
    const loaded = loadConfig([], {}, dir);
    expect(loaded.env.files).toEqual([path.join(dir, '.env')]);
    expect(loaded.config.databases[0]!.db.database).toBe('dotenv_db');
    expect(loaded.config.backupDir).toBe(path.join(dir, 'backups'));
  });

  it('the process environment wins over every file', () => {
    const dir = tmp();
    write(dir, 'app.env', 'DB_NAME=from_file\nDB_PORT=5433\n');
    const loaded = loadConfig(['app.env'], { DB_NAME: 'from_env' }, dir);
    expect(loaded.config.databases[0]!.db.database).toBe('from_env');
    expect(loaded.config.databases[0]!.db.port).toBe(5433);
    expect(loaded.env.sources.DB_NAME).toBe('environment');
    expect(loaded.env.sources.DB_PORT).toBe(path.join(dir, 'app.env'));
  });

  it('a bad value in a file is reported like one in the environment', () => {
    const dir = tmp();
    write(dir, 'app.env', 'DB_NAME=x\nDB_PORT=five\n');
    expect(() => loadConfig(['app.env'], {}, dir)).toThrow(/DB_PORT: "five" is not a whole number/);
  });

  it.each([
    ['--env-file', (dir: string) => loadEnv(['missing.env'], {}, dir)],
    ['BACKUP_ENV_FILE', (dir: string) => loadEnv([], { BACKUP_ENV_FILE: 'missing.env' }, dir)],
  ])('a named file that is missing is a ConfigError naming %s and the path', (variable, load) => {
    const dir = tmp();
    let err: unknown;
    try {
      load(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.variable).toBe(variable);
    expect(e.message).toContain(variable);
    expect(e.message).toContain(path.join(dir, 'missing.env'));
    expect(e.message).toContain('ENOENT');
    expect(e.hint).toMatch(/path/);
  });

  it('a named file among good ones that is missing is still an error', () => {
    const dir = tmp();
    write(dir, 'a.env', 'DB_NAME=a\n');
    expect(() => loadEnv(['a.env', 'b.env'], {}, dir)).toThrow(/cannot read env file .*b\.env \(ENOENT\)/);
  });

  it('describeConfig shows secrets as *** and where each value came from', () => {
    const dir = tmp();
    write(dir, 'app.env', `DB_NAME=x\nDB_PASSWORD=${DB_SECRET}\nSMTP_HOST=mail\nSMTP_USER=u\nSMTP_PASSWORD=${SMTP_SECRET}\nALERT_EMAIL_TO=a@b.c\n`);
    const loaded = loadConfig(['app.env'], { DATABASE_URL: `postgresql://app:${DB_SECRET}@db/x` }, dir);
    const rows = describeConfig(loaded);
    const row = (name: string) => rows.find((r) => r.variable === name)!;
    expect(row('DB_PASSWORD')).toEqual({ variable: 'DB_PASSWORD', value: '***', source: path.join(dir, 'app.env') });
    expect(row('SMTP_PASSWORD').value).toBe('***');
    expect(row('DATABASE_URL')).toEqual({ variable: 'DATABASE_URL', value: 'postgresql://app:***@db/x', source: 'environment' });
    expect(row('DB_PORT')).toEqual({ variable: 'DB_PORT', value: '5432', source: 'default' });
    expect(row('DB_NAME').value).toBe('x');
    expect(JSON.stringify(rows)).not.toContain(DB_SECRET);
    expect(JSON.stringify(rows)).not.toContain(SMTP_SECRET);
  });

  it('parseAlertConfig gives the alert settings alone, or undefined when they are unusable', () => {
    expect(parseAlertConfig({ DB_PORT: 'broken', SMTP_HOST: 'mail', ALERT_EMAIL_TO: 'ops@example.com' })).toMatchObject({
      smtp: { host: 'mail', port: 587 },
      to: ['ops@example.com'],
    });
    expect(parseAlertConfig({ SMTP_HOST: 'mail' })).toBeUndefined();
    expect(parseAlertConfig({})).toBeUndefined();
  });
});

describe('redact', () => {
  it('masks registered secrets wherever they appear, longest first', () => {
    registerSecret('hunter2hunter2');
    registerSecret('hunter2');
    expect(redact('a hunter2hunter2 b hunter2 c')).toBe('a *** b *** c');
  });

  it('ignores empty and very short secrets (they would mask ordinary text)', () => {
    registerSecret(undefined);
    registerSecret('');
    registerSecret('ab');
    expect(redact('about a tab')).toBe('about a tab');
  });

  it.each([
    ['postgresql://app:s3cr3t@db:5432/x', 'postgresql://app:***@db:5432/x'],
    ['connect to postgres://u:p%40ss@h/db failed', 'connect to postgres://u:***@h/db failed'],
    ['smtp://mailer:topsecret@mail.example.com', 'smtp://mailer:***@mail.example.com'],
    ['postgresql://app@db/x', 'postgresql://app@db/x'],
    ['password=hunter3 host=db', 'password=*** host=db'],
    ['PGPASSWORD=abc123 pg_dump', 'PGPASSWORD=*** pg_dump'],
    ['DB_PASSWORD: "two words"', 'DB_PASSWORD: ***'],
    ["SMTP_PASSWORD='q w e'", 'SMTP_PASSWORD=***'],
    ['Password = letmein', 'Password = ***'],
    ['nothing secret here', 'nothing secret here'],
  ])('%s', (input, out) => {
    expect(redact(input)).toBe(out);
  });

  it('clearSecrets forgets them', () => {
    registerSecret('forget-me');
    clearSecrets();
    expect(redact('forget-me')).toBe('forget-me');
  });
});

describe('manifest naming', () => {
  const at = new Date('2026-01-22T02:00:00.123Z');

  it('ids sort by time and say what they are', () => {
    expect(compactTimestamp(at)).toBe('20260122T020000Z');
    expect(backupId('webserver_db', at)).toBe('webserver_db_20260122T020000Z');
    expect(backupId('webserver_db', at, 1)).toBe('webserver_db_20260122T020000Z_2');
    expect(backupId('webserver db/2', at)).toBe('webserver_db_2_20260122T020000Z');
    const ids = [new Date('2026-01-22T02:00:00Z'), new Date('2025-12-31T23:59:59Z'), new Date('2026-01-03T00:00:00Z')].map((d) => backupId('db', d));
    expect([...ids].sort()).toEqual([ids[1], ids[2], ids[0]]);
  });

  it('data and manifest file names', () => {
    expect(dataFileName('webserver_db_20260122T020000Z', 'custom')).toBe('webserver_db_20260122T020000Z.dump');
    expect(dataFileName('webserver_db_20260122T020000Z', 'plain')).toBe('webserver_db_20260122T020000Z.sql.gz');
    expect(manifestFileName('webserver_db_20260122T020000Z')).toBe('webserver_db_20260122T020000Z.manifest.json');
  });

  it.each([
    ['webserver_db', 'webserver_db_20260122T020000Z.dump', true],
    ['webserver_db', 'webserver_db_20260122T020000Z.manifest.json', true],
    ['webserver_db', 'webserver_db_20260122T020000Z_2.sql.gz', true],
    ['webserver', 'webserver_db_20260122T020000Z.dump', false],
    ['webserver_db', 'webserver_db_old_20260122T020000Z.dump', false],
    ['webserver_db', 'other_20260122T020000Z.dump', false],
    ['webserver_db', 'webserver_db_notes.txt', false],
    ['my db', 'my_db_20260122T020000Z.dump', true],
  ])('belongsTo(%s, %s) is %s', (db, name, expected) => {
    expect(belongsTo(db, name)).toBe(expected);
  });

  it('safeName keeps letters, digits, _ . - and replaces the rest', () => {
    expect(safeName('webserver_db')).toBe('webserver_db');
    expect(safeName('a.b-c_D9')).toBe('a.b-c_D9');
    expect(safeName('my db/../x')).toBe('my_db_.._x');
    expect(safeName('dätä')).toBe('d_t_');
  });

  it.each([
    [null, false],
    ['forever', true],
    ['2026-02-01T00:00:00.000Z', true],
    ['2026-01-01T00:00:00.000Z', false],
    ['2026-01-22T02:00:00.123Z', false],
    ['not a date', true],
  ])('isKept(%s) at 2026-01-22T02:00:00.123Z is %s', (keep, expected) => {
    expect(isKept({ keep_until: keep }, at)).toBe(expected);
  });

  it('parseManifest accepts complete manifests only', () => {
    const m = { manifest_version: 1, id: 'x', file: 'x.dump', sha256: 'ab', created_at: '2026-01-22T02:00:00Z', size_bytes: 3 };
    expect(parseManifest(JSON.stringify(m))).toEqual(m);
    expect(parseManifest(JSON.stringify({ ...m, manifest_version: 2 }))).toBeUndefined();
    expect(parseManifest(JSON.stringify({ ...m, size_bytes: '3' }))).toBeUndefined();
    expect(parseManifest('{"manifest_version":1,')).toBeUndefined();
    expect(parseManifest('')).toBeUndefined();
  });
});

describe('format', () => {
  it.each([
    [0, '0 B'],
    [999, '999 B'],
    [1000, '1 kB'],
    [1500, '1.5 kB'],
    [28_000, '28 kB'],
    [123_456, '123 kB'],
    [1_400_000, '1.4 MB'],
    [3_200_000_000, '3.2 GB'],
    [5e15, '5 PB'],
    [2e18, '2000 PB'],
  ])('formatBytes(%d) = %s', (n, s) => {
    expect(formatBytes(n)).toBe(s);
  });

  it.each([
    [0, '0s'],
    [-5000, '0s'],
    [45_000, '45s'],
    [59_400, '59s'],
    [12 * 60_000, '12m'],
    [(5 * 60 + 3) * 60_000, '5h 3m'],
    [47 * 3600_000, '47h 0m'],
    [(52 * 60 + 10) * 60_000, '2d 4h'],
    [30 * 86400_000, '30d 0h'],
  ])('formatAge(%d) = %s', (ms, s) => {
    expect(formatAge(ms)).toBe(s);
  });

  const FROM = new Date('2026-01-31T10:00:00Z');
  it.each([
    ['30d', '2026-03-02T10:00:00.000Z'],
    ['12h', '2026-01-31T22:00:00.000Z'],
    ['2w', '2026-02-14T10:00:00.000Z'],
    ['6m', '2026-07-31T10:00:00.000Z'],
    ['1m', '2026-02-28T10:00:00.000Z'],
    ['13m', '2027-02-28T10:00:00.000Z'],
    ['1y', '2027-01-31T10:00:00.000Z'],
    [' 7D ', '2026-02-07T10:00:00.000Z'],
    ['10 d', '2026-02-10T10:00:00.000Z'],
    ['30', undefined],
    ['1.5d', undefined],
    ['-1d', undefined],
    ['forever', undefined],
    ['30s', undefined],
    ['', undefined],
  ])('addDuration(2026-01-31T10:00Z, %j) = %s', (text, iso) => {
    expect(addDuration(FROM, text)?.toISOString()).toBe(iso);
  });
});

describe('cron-time', () => {
  it('nextRun follows the time zone, winter and summer', () => {
    expect(nextRun('0 2 * * *', 'UTC', new Date('2026-01-22T00:00:00Z')).toISOString()).toBe('2026-01-22T02:00:00.000Z');
    expect(nextRun('0 2 * * *', 'Europe/Berlin', new Date('2026-01-22T00:00:00Z')).toISOString()).toBe('2026-01-22T01:00:00.000Z');
    expect(nextRun('0 2 * * *', 'Europe/Berlin', new Date('2026-06-30T23:00:00Z')).toISOString()).toBe('2026-07-01T00:00:00.000Z');
    expect(nextRun('0 2 * * *', 'America/New_York', new Date('2026-01-22T00:00:00Z')).toISOString()).toBe('2026-01-22T07:00:00.000Z');
  });

  it('nextRun is strictly after `from`', () => {
    expect(nextRun('0 2 * * *', 'UTC', new Date('2026-01-22T02:00:00Z')).toISOString()).toBe('2026-01-23T02:00:00.000Z');
  });

  it('previousRun is at or before `from`', () => {
    expect(previousRun('0 2 * * *', 'Europe/Berlin', new Date('2026-01-22T01:00:00Z')).toISOString()).toBe('2026-01-22T01:00:00.000Z');
    expect(previousRun('0 2 * * *', 'Europe/Berlin', new Date('2026-01-22T00:59:59Z')).toISOString()).toBe('2026-01-21T01:00:00.000Z');
    expect(previousRun('0 2 * * *', 'UTC', new Date('2026-01-22T12:00:00Z')).toISOString()).toBe('2026-01-22T02:00:00.000Z');
  });

  it('6 fields: seconds first', () => {
    expect(nextRun('*/10 * * * * *', 'UTC', new Date('2026-01-22T12:00:05Z')).toISOString()).toBe('2026-01-22T12:00:10.000Z');
    expect(previousRun('*/10 * * * * *', 'UTC', new Date('2026-01-22T12:00:05Z')).toISOString()).toBe('2026-01-22T12:00:00.000Z');
  });

  it.each([
    ['0 2 * * *', true],
    ['*/15 * * * *', true],
    ['0 3 * * 1-5', true],
    ['*/5 * * * * *', true],
    ['30 0 2 * * *', true],
    ['0 2 * *', false],
    ['* * * * * * *', false],
    ['61 2 * * *', false],
    ['0 25 * * *', false],
    ['0 2 * * 8', false],
    ['@daily', false],
    ['', false],
  ])('validateCron(%j) accepts: %s', (expr, ok) => {
    const problem = validateCron(expr, 'UTC');
    if (ok) expect(problem).toBeUndefined();
    else expect(problem).toEqual(expect.any(String));
  });

  it('validateCron names the field count', () => {
    expect(validateCron('0 2 * *', 'UTC')).toBe('4 fields; expected 5 or 6');
    expect(validateCron('0 0 2 * * * *', 'UTC')).toBe('7 fields; expected 5 or 6');
  });

  it('validateTimezone', () => {
    expect(validateTimezone('UTC')).toBeUndefined();
    expect(validateTimezone('Europe/Berlin')).toBeUndefined();
    expect(validateTimezone('Europe/Atlantis')).toBe('is not a known time zone');
  });
});

describe('notify policy', () => {
  const now = new Date('2026-01-22T12:00:00Z');
  const minutesAgo = (m: number) => new Date(now.getTime() - m * 60_000).toISOString();
  const state = (failure_streak: number, last_alert_at: string | null): DbState => ({
    last_failure: failure_streak > 0 ? { at: minutesAgo(1), code: 'DB_AUTH', message: 'x' } : null,
    failure_streak,
    last_alert_at,
  });

  it.each([
    { what: 'first failure of a streak', s: state(1, null), repeat: 60, expected: true },
    { what: 'first failure even right after an old streak alert', s: state(1, minutesAgo(1)), repeat: 60, expected: true },
    { what: 'streak with no alert sent yet', s: state(5, null), repeat: 60, expected: true },
    { what: 'streak, alert 10 minutes ago, repeat 60', s: state(5, minutesAgo(10)), repeat: 60, expected: false },
    { what: 'streak, alert 59 minutes ago, repeat 60', s: state(5, minutesAgo(59)), repeat: 60, expected: false },
    { what: 'streak, alert 60 minutes ago, repeat 60', s: state(5, minutesAgo(60)), repeat: 60, expected: true },
    { what: 'streak, alert 2 hours ago', s: state(2, minutesAgo(120)), repeat: 60, expected: true },
    { what: 'repeat 0: every failure', s: state(9, minutesAgo(0)), repeat: 0, expected: true },
  ])('shouldAlertFailure: $what -> $expected', ({ s, repeat, expected }) => {
    expect(shouldAlertFailure(s, now, repeat)).toBe(expected);
  });

  it.each([
    { what: 'no failures before', s: state(0, null), expected: false },
    { what: 'failures that were alerted', s: state(3, minutesAgo(30)), expected: true },
    { what: 'failures that were never alerted (mail off or failed)', s: state(3, null), expected: false },
  ])('shouldAlertRecovery: $what -> $expected', ({ s, expected }) => {
    expect(shouldAlertRecovery(s)).toBe(expected);
  });
});

describe('composeAlert', () => {
  const now = new Date('2026-01-22T02:05:00.000Z');
  const newest = {
    id: 'webserver_db_20260120T020000Z',
    file: 'webserver_db_20260120T020000Z.dump',
    created_at: '2026-01-20T02:00:00.000Z',
    size_bytes: 28_000,
  } as Manifest;
  const failure = () =>
    new BackupError('DB_AUTH', `login refused for app@localhost:5432/webserver_db: password authentication failed (pw ${DB_SECRET})`, {
      hint: 'Check DB_USER and DB_PASSWORD.',
      detail: `pg_dump: error: connection to server failed\npg_dump: detail: PGPASSWORD=${DB_SECRET} rejected\nlast line`,
    });

  it('a failed backup: subject, what failed, hint, stderr tail, newest good backup and age, next attempt, first checks', () => {
    registerSecret(DB_SECRET);
    const { subject, text } = composeAlert(
      {
        kind: 'backup-failed',
        database: 'webserver_db',
        error: failure(),
        newestGood: newest,
        nextAttempt: new Date('2026-01-23T02:00:00.000Z'),
        failureStreak: 3,
        backupDir: '/var/backups/pg',
      },
      'srv1',
      now,
    );
    expect(subject).toBe('[basement-backup] FAILED: webserver_db backup on srv1');
    expect(text).toContain('The backup of database "webserver_db" on srv1 FAILED at 2026-01-22T02:05:00.000Z');
    expect(text).toContain('What failed: database login refused (DB_AUTH)');
    expect(text).toContain('login refused for app@localhost:5432/webserver_db');
    expect(text).toContain('What to do: Check DB_USER and DB_PASSWORD.');
    expect(text).toMatch(
      /Last lines from pg_dump:\n {2}pg_dump: error: connection to server failed\n {2}pg_dump: detail: PGPASSWORD=\*\*\* rejected\n {2}last line/,
    );
    expect(text).toContain('Newest good backup: webserver_db_20260120T020000Z.dump (28 kB), taken 2026-01-20T02:00:00.000Z, 2d 0h old.');
    expect(text).toContain('This is failure 3 in a row.');
    expect(text).toContain('Next attempt: 2026-01-23T02:00:00.000Z');
    expect(text).toMatch(/First things to check:\n {2}1\. .*basement-backup backup/);
    expect(text).toContain('config check');
    expect(text).not.toContain(DB_SECRET);
  });

  it('says NONE when there is no good backup, and leaves out what it does not know', () => {
    const { text } = composeAlert(
      {
        kind: 'backup-failed',
        database: 'webserver_db',
        error: new BackupError('DUMP_FAILED', 'pg_dump exited with code 1'),
        newestGood: undefined,
        nextAttempt: undefined,
        failureStreak: 1,
        backupDir: '/var/backups/pg',
      },
      'srv1',
      now,
    );
    expect(text).toContain('Newest good backup: NONE in /var/backups/pg.');
    expect(text).toContain('Next attempt: at the next scheduled run of the daemon.');
    expect(text).not.toContain('in a row');
    expect(text).not.toContain('Last lines from pg_dump');
    expect(text).not.toContain('What to do');
  });

  it('recovery, problem and test mails never contain a registered secret', () => {
    registerSecret(SMTP_SECRET);
    const recovered = composeAlert(
      { kind: 'backup-recovered', database: 'webserver_db', manifest: newest, failedAttempts: 4, failingSince: '2026-01-19T02:00:00.000Z' },
      'srv1',
      now,
    );
    expect(recovered.subject).toBe('[basement-backup] RECOVERED: webserver_db backup on srv1');
    expect(recovered.text).toContain('It follows 4 failed attempt(s) since 2026-01-19T02:00:00.000Z.');
    const problem = composeAlert(
      { kind: 'problem', what: 'basement-backup backup cannot start', error: new ConfigError('SMTP_USER', `rejected with ${SMTP_SECRET}`, 'Fix it.') },
      'srv1',
      now,
    );
    expect(problem.subject).toBe('[basement-backup] PROBLEM: basement-backup backup cannot start on srv1');
    expect(problem.text).toContain('configuration error (CONFIG): SMTP_USER: rejected with ***');
    expect(problem.text).toContain('What to do: Fix it.');
    expect(problem.text).not.toContain(SMTP_SECRET);
    const test = composeAlert({ kind: 'test' }, 'srv1', now);
    expect(test.subject).toBe('[basement-backup] test alert from srv1');
  });
});

describe('file lock', () => {
  it('a second acquire in the same process is LOCKED; release frees it', () => {
    const file = path.join(tmp(), 'locks', 'db.lock');
    const lock = acquireLock(file, 'backup of db');
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toMatchObject({ pid: process.pid, host: os.hostname(), purpose: 'backup of db' });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(lockHolder(file)).toMatchObject({ pid: process.pid });
    let err: unknown;
    try {
      acquireLock(file, 'prune of db');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BackupError);
    expect((err as BackupError).code).toBe('LOCKED');
    expect((err as BackupError).exitCode).toBe(3);
    expect((err as BackupError).message).toContain(`backup of db (pid ${process.pid}`);
    expect((err as BackupError).hint).toBeTruthy();
    lock.release();
    expect(fs.existsSync(file)).toBe(false);
    expect(lockHolder(file)).toBeUndefined();
    lock.release(); // twice is harmless
    const again = acquireLock(file, 'prune of db');
    again.release();
    expect(fs.existsSync(file)).toBe(false);
  });

  it('takes over a stale lock whose process is gone', () => {
    const file = path.join(tmp(), 'db.lock');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    fs.writeFileSync(file, JSON.stringify({ pid: dead, host: os.hostname(), purpose: 'backup of db', acquired_at: '2026-01-01T00:00:00Z' }));
    expect(lockHolder(file)).toBeUndefined();
    const lock = acquireLock(file, 'backup of db');
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toMatchObject({ pid: process.pid });
    expect(fs.readdirSync(path.dirname(file))).toEqual(['db.lock']); // the stale file moved aside is gone too
    lock.release();
    expect(fs.existsSync(file)).toBe(false);
  });

  it('does not take over a live process’s lock, nor one from another host', () => {
    const dir = tmp();
    const live = path.join(dir, 'live.lock');
    fs.writeFileSync(live, JSON.stringify({ pid: process.ppid, host: os.hostname(), purpose: 'daemon backup', acquired_at: '2026-01-01T00:00:00Z' }));
    expect(() => acquireLock(live, 'x')).toThrow(/daemon backup \(pid/);
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    const remote = path.join(dir, 'remote.lock');
    fs.writeFileSync(remote, JSON.stringify({ pid: dead, host: 'some-other-host', purpose: 'backup', acquired_at: '2026-01-01T00:00:00Z' }));
    expect(() => acquireLock(remote, 'x')).toThrow(expect.objectContaining({ code: 'LOCKED' }));
  });

  it('an unreadable lock file is stale only once it is old', () => {
    const file = path.join(tmp(), 'db.lock');
    fs.writeFileSync(file, '{"pid":');
    expect(() => acquireLock(file, 'x')).toThrow(/another process holds the lock/);
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(file, old, old);
    const lock = acquireLock(file, 'x');
    lock.release();
    expect(fs.existsSync(file)).toBe(false);
  });

  it('release does not remove a lock that another process has taken over', () => {
    const file = path.join(tmp(), 'db.lock');
    const lock = acquireLock(file, 'x');
    const theirs = JSON.stringify({ pid: process.ppid, host: os.hostname(), purpose: 'other', acquired_at: new Date().toISOString() });
    fs.writeFileSync(file, theirs);
    lock.release();
    expect(fs.readFileSync(file, 'utf8')).toBe(theirs);
  });
});

describe('BACKUP_RESTORE_JOBS', () => {
  it('is chosen per backup by default (auto), or fixed at 1–16', () => {
    expect(parseConfig({ DB_NAME: 'db' }, '/').restoreJobs).toBeUndefined();
    expect(parseConfig({ DB_NAME: 'db', BACKUP_RESTORE_JOBS: 'AUTO' }, '/').restoreJobs).toBeUndefined();
    expect(parseConfig({ DB_NAME: 'db', BACKUP_RESTORE_JOBS: '3' }, '/').restoreJobs).toBe(3);
    for (const bad of ['0', '17', 'two', '1.5']) {
      expect(() => parseConfig({ DB_NAME: 'db', BACKUP_RESTORE_JOBS: bad }, '/')).toThrow(/BACKUP_RESTORE_JOBS/);
    }
  });
});

describe('the WAL receiver settings', () => {
  it('are off, with slot basement_backup, by default; WAL_RECEIVE=on and a slot name of its own are read', () => {
    expect(parseConfig(BASE, CWD).pitr).toMatchObject({ receive: false, slotName: 'basement_backup' });
    expect(parseConfig({ ...BASE, WAL_RECEIVE: 'on', WAL_SLOT_NAME: 'bb_shop_1' }, CWD).pitr).toMatchObject({ receive: true, slotName: 'bb_shop_1' });
  });

  it('run the PITR drill on Sundays at 04:30 by default, after the base backup; PITR_VERIFY_SCHEDULE sets it or turns it off', () => {
    expect(parseConfig(BASE, CWD).pitr.drillSchedule).toBe('30 4 * * 0');
    expect(parseConfig({ ...BASE, PITR_VERIFY_SCHEDULE: '0 5 * * 3' }, CWD).pitr.drillSchedule).toBe('0 5 * * 3');
    expect(parseConfig({ ...BASE, PITR_VERIFY_SCHEDULE: 'off' }, CWD).pitr.drillSchedule).toBeUndefined();
  });
});

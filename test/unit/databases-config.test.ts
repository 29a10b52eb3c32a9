import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { forDatabase, parseConfig } from '../../src/config';
import type { Configuration } from '../../src/config/types';
import { ConfigError } from '../../src/errors';
import { redact } from '../../src/redact';
import { clearSecretsAroundEachTest, tempDir } from '../helpers/temp';

clearSecretsAroundEachTest();

const BILLING_SECRET = 'billing-PaSsWoRd-81f3';
const ENV = {
  DB_HOST: 'db.internal',
  DB_USER: 'app',
  DB_PASSWORD: 'shared-pw-never-shown',
  BILLING_URL: `postgresql://billing:${BILLING_SECRET}@10.0.0.7:6543/billing`,
};

const FILE = `
targets:
  - { name: local, type: local, path: ./backups, retention: { days: 7, min_count: 7 } }
  - { name: far, type: local, path: /mnt/far, retention: { days: 30, min_count: 3, monthly: 12 } }
databases:
  - name: app
    database: cloudedbasement
    schedule: "0 2 * * *"
    verify_schedule: "0 4 * * 0"
  - name: billing
    url: \${BILLING_URL}
    schedule: "30 2 * * *"
    verify_schedule: "off"
    format: plain
    targets: [far]
    retention: { daily: 14 }
`;

function load(text: string, extra: Record<string, string> = {}): Configuration {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'c.yml'), text);
  return parseConfig({ ...ENV, BACKUP_CONFIG_FILE: 'c.yml', ...extra }, dir);
}

function problem(text: string, extra: Record<string, string> = {}): string {
  try {
    load(text, extra);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const all = (err as ConfigError & { all: ConfigError[] }).all.map((e) => `${e.message}\nfix: ${e.hint}`).join('\n');
    expect(all).not.toContain(BILLING_SECRET);
    expect(all).not.toContain(ENV.DB_PASSWORD);
    return all;
  }
  throw new Error('expected a ConfigError');
}

describe('several databases from BACKUP_CONFIG_FILE', () => {
  it('reads each entry like the DB_* settings, over the environment, with its own schedules, format, targets and retention', () => {
    const c = load(FILE, { BACKUP_MAX_PARALLEL: '2' });
    expect(c.maxParallel).toBe(2);
    expect(c.databases.map((d) => d.name)).toEqual(['app', 'billing']);
    const [app, billing] = c.databases;
    // app: DB_HOST/DB_USER/DB_PASSWORD from the environment, its own database
    expect(app!.db).toMatchObject({ host: 'db.internal', user: 'app', password: ENV.DB_PASSWORD, database: 'cloudedbasement', port: 5432 });
    expect(app!).toMatchObject({ schedule: '0 2 * * *', verifySchedule: '0 4 * * 0', format: 'custom', digest: 'full' });
    expect(app!.targets.map((t) => [t.name, t.retention.days, t.retention.monthly])).toEqual([
      ['local', 7, 0],
      ['far', 30, 12],
    ]);
    // billing: everything from its URL, which is a secret now
    expect(billing!.db).toMatchObject({ host: '10.0.0.7', port: 6543, user: 'billing', password: BILLING_SECRET, database: 'billing' });
    expect(redact(`x ${BILLING_SECRET} y`)).not.toContain(BILLING_SECRET);
    expect(billing!).toMatchObject({ schedule: '30 2 * * *', verifySchedule: undefined, format: 'plain' });
    // its own retention over the target's: daily 14 added, the rest the target's
    expect(billing!.targets.map((t) => [t.name, t.retention])).toEqual([['far', { days: 30, minCount: 3, daily: 14, weekly: 0, monthly: 12, yearly: 0 }]]);
    // the drills rotate among the targets unless told otherwise
    expect([app!.verifyTargets, billing!.verifyTargets]).toEqual(['rotate', 'rotate']);
    expect(
      load(FILE.replace('    verify_schedule: "0 4 * * 0"\n', '    verify_schedule: "0 4 * * 0"\n    verify_targets: all\n')).databases[0]!.verifyTargets,
    ).toBe('all');
    expect(load(FILE, { VERIFY_TARGETS: 'all' }).databases.map((d) => d.verifyTargets)).toEqual(['all', 'all']);
    expect(problem(FILE.replace('    verify_schedule: "0 4 * * 0"\n', '    verify_schedule: "0 4 * * 0"\n    verify_targets: each\n'))).toMatch(
      /verify_targets.*each/,
    );
    // the whole configuration holds no one database's fields: a command reads its entry (forDatabase)
    expect(c).not.toHaveProperty('name');
    expect(c).not.toHaveProperty('db');
  });

  it('forDatabase gives one database’s view; --db is required with several, and an unknown one lists them', () => {
    const c = load(FILE);
    const billing = forDatabase(c, 'billing');
    expect(billing).toMatchObject({ name: 'billing', schedule: '30 2 * * *', format: 'plain' });
    expect(billing.db.database).toBe('billing');
    expect(billing.targets.map((t) => t.name)).toEqual(['far']);
    expect(billing.verifyDb).toMatchObject({ host: '10.0.0.7', port: 6543 });
    expect(() => forDatabase(c, undefined)).toThrow(/--db: is required: 2 databases are configured \(app, billing\)/);
    expect(() => forDatabase(c, 'payroll')).toThrow(/--db: no database is named "payroll"/);
    try {
      forDatabase(c, 'payroll');
    } catch (err) {
      expect((err as ConfigError).hint).toBe('The databases configured: app, billing.');
      expect((err as ConfigError).exitCode).toBe(2);
    }
  });

  it('without databases: the DB_* setup is the one entry, named after the database, and needs no --db', () => {
    const c = parseConfig({ DB_NAME: 'webserver_db' }, '/srv/app');
    expect(c.databases).toHaveLength(1);
    expect(c.databases[0]).toMatchObject({ name: 'webserver_db', schedule: '0 2 * * *' });
    expect(forDatabase(c, undefined)).toEqual(c.databases[0]);
    expect(forDatabase(c, 'webserver_db').db.database).toBe('webserver_db');
    expect(() => forDatabase(c, 'other')).toThrow(/no database is named "other"/);
    expect(c.maxParallel).toBe(1);
  });

  it('the file may list databases without targets: the environment’s targets are used', () => {
    const s3 = { S3_BUCKET: 'bk', S3_ACCESS_KEY_ID: 'id', S3_SECRET_ACCESS_KEY: 'secret-s3-key-1' };
    const c = load('databases:\n  - { database: a }\n  - { database: b }\n', { BACKUP_DIR: '/var/bk', ...s3 });
    expect(c.databases.map((d) => [d.name, d.targets.map((t) => t.name)])).toEqual([
      ['a', ['local', 's3']],
      ['b', ['local', 's3']],
    ]);
    // a file with targets still refuses the S3_* variables beside them
    expect(problem(FILE, s3)).toMatch(/S3_BUCKET: is set and so is BACKUP_CONFIG_FILE/);
  });

  it.each([
    ['two entries with one name', FILE.replace('name: billing', 'name: app'), /two databases are named "app"/],
    [
      'one database name on two servers writing the same target',
      `targets:\n  - { name: local, type: local, path: /b }\ndatabases:\n  - { name: a1, database: app, host: one }\n  - { name: a2, database: app, host: two }\n`,
      /databases "a1" and "a2" both back up a database named app to the same place \(target "local"\)/,
    ],
    ['an unknown target', FILE.replace('targets: [far]', 'targets: [nowhere]'), /databases\[1\]: no target is named "nowhere"[^]*The targets are: local, far/],
    ['an unknown setting', FILE.replace('format: plain', 'fromat: plain'), /databases\[1\]: unknown setting "fromat"/],
    ['an entry naming no database', 'databases:\n  - { name: x, schedule: "0 1 * * *" }\n', /databases\[0\]: names no database/],
    [
      'a bad schedule, named by the entry and its key',
      FILE.replace('"30 2 * * *"', '"half past two"'),
      /databases\[1\]: \(billing\) "schedule": "half past two" is not a valid cron/,
    ],
    ['a bad format', FILE.replace('format: plain', 'format: tar'), /databases\[1\]: \(billing\) "format": .*not one of custom, plain/],
    ['an unset ${VAR}', FILE.replace('${BILLING_URL}', '${NOPE_URL}'), /"url" refers to \$\{NOPE_URL\}, which is not set/],
    ['negative retention', FILE.replace('daily: 14', 'daily: -1'), /databases\[1\]\.retention: daily -1 is not a whole number/],
    ['a name --db cannot take', FILE.replace('name: billing', 'name: "bill ing"'), /name "bill ing" is not a short name/],
    ['databases that is not a list', 'targets:\n  - { name: l, type: local, path: /b }\ndatabases: {}\n', /"databases" is not a list/],
  ])('%s is exit 2 naming the file and the entry, nothing else changed', (_name, text, message) => {
    expect(problem(text)).toMatch(message);
  });

  it('one database name on two servers sharing a target under another spelling is refused: a symlink, a folder not made yet under one, an S3 endpoint or prefix written differently', () => {
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'real'));
    fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'link'));
    const two = (t1: string, t2: string) =>
      `targets:\n  - ${t1}\n  - ${t2}\ndatabases:\n  - { name: a1, database: app, host: one, targets: [t1] }\n  - { name: a2, database: app, host: two, targets: [t2] }\n`;
    const local = (name: string, p: string) => `{ name: ${name}, type: local, path: "${p}" }`;
    const s3 = (name: string, endpoint: string, prefix: string) =>
      `{ name: ${name}, type: s3, endpoint: "${endpoint}", bucket: bk, prefix: "${prefix}", access_key_id: id, secret_access_key: secret-key-1 }`;
    const shared = /databases "a1" and "a2" both back up a database named app to the same place \(target "t1"\)/;
    expect(problem(two(local('t1', `${dir}/real/backups`), local('t2', `${dir}/link/backups`)))).toMatch(shared);
    expect(problem(two(local('t1', `${dir}/real/not/made/yet`), local('t2', `${dir}/link/not/made/../made/yet/`)))).toMatch(shared);
    expect(problem(two(s3('t1', 'https://Fra1.Example.com/', '/basement'), s3('t2', 'https://fra1.example.com:443', 'basement/')))).toMatch(shared);
    expect(problem(two(s3('t1', 'https://s3.eu-west-1.amazonaws.com', 'x/'), s3('t2', 'https://s3.amazonaws.com', 'x')))).toMatch(shared);
    // really different places are allowed
    expect(() => load(two(local('t1', `${dir}/real/one`), local('t2', `${dir}/link/two`)))).not.toThrow();
    expect(() => load(two(s3('t1', 'https://fra1.example.com', 'one/'), s3('t2', 'https://fra1.example.com', 'two/')))).not.toThrow();
  });

  it('BACKUP_MAX_PARALLEL must be a whole number from 1', () => {
    expect(problem(FILE, { BACKUP_MAX_PARALLEL: '0' })).toMatch(/BACKUP_MAX_PARALLEL: "0" is not a whole number from 1 to 64/);
  });
});

describe('pings per database', () => {
  it("an entry's ping_url and verify_ping_url override BACKUP_PING_URL and BACKUP_VERIFY_PING_URL", () => {
    const text = FILE.replace('    verify_schedule: "0 4 * * 0"\n', '    verify_schedule: "0 4 * * 0"\n    ping_url: https://hc.example/app-check\n');
    const c = load(text, { BACKUP_PING_URL: 'https://hc.example/shared/', BACKUP_VERIFY_PING_URL: 'https://hc.example/drills' });
    expect(forDatabase(c, 'app').ping).toEqual({ backup: 'https://hc.example/app-check', verify: 'https://hc.example/drills' });
    expect(forDatabase(c, 'billing').ping).toEqual({ backup: 'https://hc.example/shared', verify: 'https://hc.example/drills' });
    expect(redact('pinging https://hc.example/app-check')).not.toContain('app-check');
  });

  it('a ping_url that is not http(s) is a CONFIG error naming the entry and the key', () => {
    const text = FILE.replace('    verify_schedule: "0 4 * * 0"\n', '    verify_schedule: "0 4 * * 0"\n    ping_url: hc-ping.com/abc\n');
    expect(problem(text)).toMatch(
      /databases\[0\]: \(app\) "ping_url": is not an http:\/\/ or https:\/\/ URL\nfix: Set BACKUP_PING_URL to a URL such as https:\/\/hc-ping.com\/<uuid>/,
    );
  });

  it('BACKUP_WEBHOOK_URL and BACKUP_PING_TIMEOUT_SECONDS are read once for every database', () => {
    const c = load(FILE, { BACKUP_WEBHOOK_URL: 'https://hooks.example/T/B/x', BACKUP_PING_TIMEOUT_SECONDS: '5' });
    expect(c.notify).toEqual({ webhookUrl: 'https://hooks.example/T/B/x', timeoutMs: 5000 });
    expect(problem(FILE, { BACKUP_WEBHOOK_URL: 'ftp://x' })).toMatch(/BACKUP_WEBHOOK_URL: is not an http/);
  });
});

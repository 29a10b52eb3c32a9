import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { backupEnv, CLI, runCli, smtpEnv, tempDir, type CliResult } from '../helpers/cli';
import { createTestDb, createWebserverDb, pgInfo, query } from '../helpers/pg';
import { smtpSink, startSmtpSink } from '../helpers/smtp';
import { startPingServer } from '../helpers/ping-server';

const SMTP_PASSWORD = 'smtp-pass-never-printed';

/**
 * Runs the built CLI the way the installed `basement-backup` binary runs: through its shebang line,
 * as the kernel does (interpreter, the rest of the line as one argument, the script, the arguments).
 * Needed for `--env-file` with a missing file: `node main.js --env-file X` makes Node itself look
 * for X and exit 9 before any of our code runs (nodejs/node#54232), which the shebang's `--` avoids.
 */
function runBin(args: string[], env: Record<string, string>, cwd = os.tmpdir()): Promise<CliResult> {
  const shebang = /^#!(\S+)(?:[ \t]+(.*))?$/.exec(fs.readFileSync(CLI, 'utf8').split('\n', 1)[0]!);
  if (!shebang) throw new Error(`${CLI} has no shebang line`);
  const argv = [...(shebang[2] ? [shebang[2].trim()] : []), CLI, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(shebang[1]!, argv, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Lines of the error output; a configuration error is "basement-backup: configuration error: ..." + "  fix: ...". */
function errorLines(r: CliResult): string[] {
  return r.stderr.split('\n').filter((l) => l.trim() !== '');
}

function expectConfigError(r: CliResult, variable: string, opts: { shows?: string; secrets?: string[] } = {}): void {
  const out = `${r.stdout}\n${r.stderr}`;
  expect(r.code, out).toBe(2);
  expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
  for (const s of [pgInfo().password, ...(opts.secrets ?? [])]) expect(out).not.toContain(s);
  const lines = errorLines(r);
  expect(lines, r.stderr).toHaveLength(2);
  expect(lines[0]).toMatch(new RegExp(`^basement-backup: configuration error: ${variable.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: \\S`));
  if (opts.shows !== undefined) expect(lines[0]).toContain(`"${opts.shows}"`);
  expect(lines[1]).toMatch(/^ {2}fix: \S.{10,}/);
}

/** The row of a cli-table3 table whose first cell is `first`. */
function row(stdout: string, first: string): string {
  const line = stdout.split('\n').find((l) => new RegExp(`^│ ${first} +│`).test(l));
  expect(line, `a "${first}" row in:\n${stdout}`).toBeDefined();
  return line!;
}

interface BadCase {
  name: string;
  args: string[];
  env: Record<string, string | undefined>;
  variable: string;
  shows?: string;
}

const BAD: BadCase[] = [
  { name: 'DB_PORT not a number', args: ['backup'], env: { DB_PORT: 'fivefour' }, variable: 'DB_PORT', shows: 'fivefour' },
  { name: 'DB_NAME missing', args: ['backup'], env: { DB_NAME: undefined }, variable: 'DB_NAME' },
  { name: 'BACKUP_SCHEDULE invalid', args: ['daemon'], env: { BACKUP_SCHEDULE: '0 25 * * *' }, variable: 'BACKUP_SCHEDULE', shows: '0 25 * * *' },
  { name: 'BACKUP_TIMEZONE unknown', args: ['daemon'], env: { BACKUP_TIMEZONE: 'Mars/Olympus_Mons' }, variable: 'BACKUP_TIMEZONE', shows: 'Mars/Olympus_Mons' },
  { name: 'BACKUP_FORMAT unknown', args: ['backup'], env: { BACKUP_FORMAT: 'tar' }, variable: 'BACKUP_FORMAT', shows: 'tar' },
  { name: 'BACKUP_RETENTION_DAYS zero', args: ['prune', '--dry-run'], env: { BACKUP_RETENTION_DAYS: '0' }, variable: 'BACKUP_RETENTION_DAYS', shows: '0' },
  {
    name: 'BACKUP_RETENTION_MIN_COUNT words',
    args: ['prune'],
    env: { BACKUP_RETENTION_MIN_COUNT: 'all' },
    variable: 'BACKUP_RETENTION_MIN_COUNT',
    shows: 'all',
  },
  { name: 'SMTP_HOST without ALERT_EMAIL_TO', args: ['backup'], env: { SMTP_HOST: '127.0.0.1' }, variable: 'ALERT_EMAIL_TO' },
  { name: 'ALERT_EMAIL_TO without SMTP_HOST', args: ['status'], env: { ALERT_EMAIL_TO: 'ops@example.test' }, variable: 'SMTP_HOST' },
  {
    name: 'ALERT_EMAIL_TO not an address',
    args: ['alert', 'test'],
    env: { SMTP_HOST: '127.0.0.1', ALERT_EMAIL_TO: 'ops-at-example.test' },
    variable: 'ALERT_EMAIL_TO',
    shows: 'ops-at-example.test',
  },
  { name: 'LOG_LEVEL unknown', args: ['list'], env: { LOG_LEVEL: 'chatty' }, variable: 'LOG_LEVEL', shows: 'chatty' },
  { name: 'BACKUP_COMPRESSION out of range', args: ['backup'], env: { BACKUP_COMPRESSION: '11' }, variable: 'BACKUP_COMPRESSION', shows: '11' },
  { name: 'DB_PORT out of range in config check', args: ['config', 'check'], env: { DB_PORT: '0' }, variable: 'DB_PORT', shows: '0' },
  {
    name: 'DATABASE_URL that does not parse (the password in it is not shown)',
    args: ['backup'],
    env: { DATABASE_URL: 'postgresql://app:url-secret-pw@db.example.com:99999/webserver_db' },
    variable: 'DATABASE_URL',
  },
];

describe('the CLI with bad configuration', () => {
  it.each(BAD)('$name: one line naming it, a fix, exit 2', async ({ args, env, variable, shows }) => {
    const dir = tempDir();
    const r = await runCli(args, backupEnv('webserver_db', dir, env));
    expectConfigError(r, variable, { shows, secrets: ['url-secret-pw'] });
    expect(r.stdout).toBe('');
    // nothing was started: no backup directory, no logs
    expect(fs.existsSync(path.join(dir, 'backups'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'logs'))).toBe(false);
  });

  it('several bad values are all reported, each with its fix', async () => {
    const dir = tempDir();
    const r = await runCli(['backup'], backupEnv('webserver_db', dir, { DB_PORT: 'x', BACKUP_FORMAT: 'zip', LOG_LEVEL: 'loud' }));
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    const lines = errorLines(r);
    expect(lines).toHaveLength(6);
    expect(lines.filter((l) => l.startsWith('basement-backup: configuration error: '))).toEqual([
      'basement-backup: configuration error: DB_PORT: "x" is not a whole number from 1 to 65535',
      'basement-backup: configuration error: BACKUP_FORMAT: "zip" is not one of custom, plain',
      'basement-backup: configuration error: LOG_LEVEL: "loud" is not one of error, warn, info, debug',
    ]);
    expect(lines.filter((l) => l.startsWith('  fix: '))).toHaveLength(3);
  });

  it('a bad --keep is a configuration error too', async () => {
    const r = await runCli(['backup', '--keep', 'a while'], backupEnv('webserver_db', tempDir()));
    expectConfigError(r, '--keep', { shows: 'a while' });
  });

  it('a named env file that does not exist: --env-file and BACKUP_ENV_FILE', async () => {
    const dir = tempDir();
    const missing = path.join(dir, 'server-ui', '.env');
    const env = backupEnv('webserver_db', dir);

    const viaOption = await runBin(['--env-file', missing, 'backup'], env);
    expectConfigError(viaOption, '--env-file');
    expect(errorLines(viaOption)[0]).toContain(`cannot read env file ${missing} (ENOENT)`);

    fs.writeFileSync(path.join(dir, 'exists.env'), 'LOG_LEVEL=info\n');
    const viaVariable = await runCli(['backup'], { ...env, BACKUP_ENV_FILE: `${path.join(dir, 'exists.env')},${missing}` });
    const viaVariable2 = await runCli(['status'], { ...env, BACKUP_ENV_FILE: `exists.env, ${missing}` }, { cwd: dir });
    for (const r of [viaVariable, viaVariable2]) {
      expectConfigError(r, 'BACKUP_ENV_FILE');
      expect(errorLines(r)[0]).toContain(missing);
    }
  });
});

describe('config check', () => {
  it('prints the configuration with secrets as ***, checks database, pg_dump, directory and SMTP, exits 0', async () => {
    const smtp = await smtpSink({ user: 'mailer', password: SMTP_PASSWORD });
    const db = await createTestDb('cfgcheck');
    const dir = tempDir();
    const env = backupEnv(db, dir, { ...smtpEnv(smtp.port), SMTP_USER: 'mailer', SMTP_PASSWORD, BACKUP_RETENTION_DAYS: '14' });
    const r = await runCli(['config', 'check'], env);
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.code, out).toBe(0);
    expect(out).not.toContain(pgInfo().password);
    expect(out).not.toContain(SMTP_PASSWORD);
    expect(row(r.stdout, 'DB_PASSWORD')).toMatch(/│ DB_PASSWORD +│ \*\*\* +│ environment +│$/);
    expect(row(r.stdout, 'SMTP_PASSWORD')).toMatch(/│ \*\*\* +│/);
    expect(row(r.stdout, 'DB_NAME')).toContain(`│ ${db} `);
    expect(row(r.stdout, 'BACKUP_RETENTION_DAYS')).toMatch(/│ 14 +│ environment +│$/);
    expect(row(r.stdout, 'BACKUP_RETENTION_MIN_COUNT')).toMatch(/│ 7 +│ default +│$/);
    expect(row(r.stdout, 'pg_dump')).toMatch(/│ ok +│ \d+\.\d+.* in /);
    expect(row(r.stdout, 'database')).toMatch(new RegExp(`│ ok +│ connected to ${pgInfo().user}@${pgInfo().host}:${pgInfo().port}/${db}: PostgreSQL`));
    expect(row(r.stdout, 'target local')).toMatch(/│ ok +│ .* writable, mode 700/);
    expect(row(r.stdout, 'email alerts')).toMatch(
      new RegExp(`│ ok +│ SMTP 127\\.0\\.0\\.1:${smtp.port} accepted the connection; alerts go to ops@example\\.test`),
    );
    expect(smtp.mails).toHaveLength(0); // it checks, it does not send
  });

  it('with a wrong DB password: FAIL for the database with the fix, non-zero exit, no password shown', async () => {
    const db = await createTestDb('cfgcheck');
    const dir = tempDir();
    const wrong = 'wrong-db-password-42';
    const r = await runCli(['config', 'check'], backupEnv(db, dir, { DB_PASSWORD: wrong }));
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.code, out).not.toBe(0);
    expect(r.code).toBe(2);
    expect(out).not.toContain(wrong);
    expect(out).not.toContain(pgInfo().password);
    expect(out).not.toMatch(/^\s+at /m);
    expect(row(r.stdout, 'DB_PASSWORD')).toMatch(/│ \*\*\* +│/);
    expect(row(r.stdout, 'database')).toMatch(/│ FAIL +│ login refused for .*password authentication failed/);
    expect(r.stdout).toMatch(/fix: Check DB_USER and DB_PASSWORD/);
    expect(row(r.stdout, 'pg_dump')).toMatch(/│ ok +│/);
    // SMTP is not configured: a warning, not a failure
    expect(row(r.stdout, 'email alerts')).toMatch(/│ WARN +│ off: SMTP_HOST is not set/);
  });

  it('with an SMTP server that does not answer: FAIL for email alerts', async () => {
    const closed = await startSmtpSink();
    await closed.close();
    const db = await createTestDb('cfgcheck');
    const r = await runCli(['config', 'check'], backupEnv(db, tempDir(), smtpEnv(closed.port)));
    expect(r.code).toBe(2);
    expect(row(r.stdout, 'database')).toMatch(/│ ok +│/);
    expect(row(r.stdout, 'email alerts')).toMatch(new RegExp(`│ FAIL +│ mail server 127\\.0\\.0\\.1:${closed.port}: `));
  });
});

describe('alert test', () => {
  it('delivers a test mail to the SMTP sink', async () => {
    const smtp = await smtpSink();
    const r = await runCli(['alert', 'test'], backupEnv('webserver_db', tempDir(), smtpEnv(smtp.port)));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Test alert sent to ops@example.test.');
    const [mail] = await smtp.waitFor(1);
    expect(mail!.subject).toBe(`[basement-backup] test alert from ${os.hostname()}`);
    expect(mail!.from?.text).toContain('backup@example.test');
    expect(JSON.stringify(mail!.to)).toContain('ops@example.test');
    expect(mail!.text).toContain('If you read this, failure alerts will reach you.');
  });

  it('without SMTP settings: exits non-zero and says what to set', async () => {
    const r = await runCli(['alert', 'test'], backupEnv('webserver_db', tempDir()));
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    const lines = errorLines(r);
    expect(lines[0]).toBe('basement-backup: configuration error: SMTP_HOST is not set, so no alert can be sent');
    expect(lines[1]).toMatch(/^ {2}fix: Set SMTP_HOST.*ALERT_EMAIL_TO/);
  });

  it('when the mail server cannot be reached: a mail error, not a crash', async () => {
    const closed = await startSmtpSink();
    await closed.close();
    const r = await runCli(['alert', 'test'], backupEnv('webserver_db', tempDir(), smtpEnv(closed.port)));
    expect(r.code).toBe(40);
    expect(r.stderr).toMatch(/^basement-backup: cannot send email: mail server 127\.0\.0\.1:\d+: /m);
    expect(r.stderr).toMatch(/^ {2}fix: Check SMTP_HOST/m);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});

describe('a configuration error in an unattended command is mailed when the mail settings work', () => {
  it('backup and daemon mail it; interactive commands only print it', async () => {
    const smtp = await smtpSink();
    const dir = tempDir();
    const env = backupEnv('webserver_db', dir, { ...smtpEnv(smtp.port), DB_PORT: 'abc' });

    const r = await runCli(['backup'], env);
    expect(r.code).toBe(2);
    expect(errorLines(r)[0]).toBe('basement-backup: configuration error: DB_PORT: "abc" is not a whole number from 1 to 65535');
    expect(r.stderr).not.toMatch(/^\s+at /m);
    const [mail] = await smtp.waitFor(1);
    expect(mail!.subject).toBe(`[basement-backup] PROBLEM: basement-backup backup cannot start: bad configuration on ${os.hostname()}`);
    expect(mail!.text).toContain('configuration error (CONFIG): DB_PORT: "abc" is not a whole number from 1 to 65535');
    expect(mail!.text).toContain('What to do: Set DB_PORT to a number like 5432');
    expect(mail!.text).not.toContain(pgInfo().password);

    // list is run by a person who sees the error: no mail (the mail would have been accepted before the exit)
    const list = await runCli(['list'], env);
    expect(list.code).toBe(2);
    expect(smtp.mails).toHaveLength(1);

    // the daemon, with the mail settings in an env file given with --env-file
    const mailEnv = path.join(dir, 'mail.env');
    fs.writeFileSync(
      mailEnv,
      Object.entries(smtpEnv(smtp.port))
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
    );
    const noMail = Object.fromEntries(Object.entries(env).filter(([k]) => !(k in smtpEnv(smtp.port))));
    const daemon = await runCli(['--env-file', mailEnv, 'daemon'], { ...noMail, DB_PORT: '5432', BACKUP_SCHEDULE: 'at two' });
    expect(daemon.code).toBe(2);
    expect(errorLines(daemon)[0]).toContain('BACKUP_SCHEDULE: "at two" is not a valid cron expression');
    const mails = await smtp.waitFor(2);
    expect(mails[1]!.subject).toBe(`[basement-backup] PROBLEM: basement-backup daemon cannot start: bad configuration on ${os.hostname()}`);
    expect(mails[1]!.text).toContain('BACKUP_SCHEDULE');
  });
});

describe('a configuration error in an unattended command goes to the webhook too', () => {
  it('backup with a broken setting and only BACKUP_WEBHOOK_URL: the problem is posted as JSON, without the URL in the output', async () => {
    const hook = await startPingServer();
    const env = backupEnv('webserver_db', tempDir(), { DB_PORT: 'abc', BACKUP_WEBHOOK_URL: hook.url });
    const r = await runCli(['backup'], env);
    expect(r.code).toBe(2);
    const [posted] = await hook.waitFor(1);
    const alert = JSON.parse(posted!.body) as Record<string, unknown>;
    expect(alert).toMatchObject({ kind: 'problem', code: 'CONFIG', exit_code: 2 });
    expect(alert.title).toBe(`[basement-backup] PROBLEM: basement-backup backup cannot start: bad configuration on ${os.hostname()}`);
    expect(alert.text).toContain('DB_PORT: "abc" is not a whole number');
    expect(r.stderr).not.toContain(hook.url);
  });
});

describe('env files end to end', () => {
  it('DB_* from the app’s env file via --env-file: backup succeeds; BACKUP_ENV_FILE and ./.env work too; the environment wins', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const { DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME, ...rest } = backupEnv(db, dir);
    const appEnv = path.join(dir, 'server-ui.env');
    fs.writeFileSync(
      appEnv,
      `# the app's own settings\nPORT=3000\nDB_HOST=${DB_HOST}\nDB_PORT=${DB_PORT}\nDB_USER=${DB_USER}\nDB_PASSWORD="${DB_PASSWORD}"\nDB_NAME=${DB_NAME}\n`,
    );
    fs.writeFileSync(path.join(dir, 'backup.env'), 'BACKUP_RETENTION_MIN_COUNT=3\n');

    const r = await runCli(['--env-file', appEnv, '--env-file', 'backup.env', 'backup', '--label', 'via-env-file'], rest, { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Backup completed: ${path.join(dir, 'backups', db)}_\\d{8}T\\d{6}Z\\.dump\\.zst \\(`));
    expect(`${r.stdout}${r.stderr}`).not.toContain(DB_PASSWORD);

    // the option also works after the command name
    const list = await runCli(['list', '--json', '--env-file', appEnv], rest);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { label: string }[]).map((m) => m.label)).toEqual(['via-env-file']);

    // config check says where each value came from
    const check = await runCli(['--env-file', appEnv, '--env-file', 'backup.env', 'config', 'check'], rest, { cwd: dir });
    expect(check.code, check.stdout).toBe(0);
    expect(row(check.stdout, 'DB_PASSWORD')).toMatch(new RegExp(`│ \\*\\*\\* +│ ${appEnv} +│$`));
    expect(row(check.stdout, 'BACKUP_RETENTION_MIN_COUNT')).toMatch(new RegExp(`│ 3 +│ ${path.join(dir, 'backup.env')} +│$`));
    expect(check.stdout).not.toContain(DB_PASSWORD);

    // BACKUP_ENV_FILE as a comma list
    const viaVariable = await runCli(['backup', '--label', 'via-variable'], { ...rest, BACKUP_ENV_FILE: `${appEnv},backup.env` }, { cwd: dir });
    expect(viaVariable.code, viaVariable.stderr).toBe(0);

    // ./.env in the working directory, when nothing is named
    fs.copyFileSync(appEnv, path.join(dir, '.env'));
    const viaDotenv = await runCli(['list', '--json'], rest, { cwd: dir });
    expect((JSON.parse(viaDotenv.stdout) as { label: string }[]).map((m) => m.label)).toEqual(['via-variable', 'via-env-file']);

    // the process environment wins over the file
    const other = await createTestDb('other');
    const envWins = await runCli(['--env-file', appEnv, 'backup', '--label', 'env-wins'], { ...rest, DB_NAME: other });
    expect(envWins.code, envWins.stderr).toBe(0);
    expect(envWins.stdout).toContain(`${path.join(dir, 'backups', other)}_`);
  });
});

/** Every file under `dir` (recursively): its path relative to `dir` and its text. */
function filesUnder(dir: string): { name: string; text: string }[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).flatMap((name) => {
    const file = path.join(dir, name);
    return fs.statSync(file).isFile() ? [{ name, text: fs.readFileSync(file, 'utf8') }] : [];
  });
}

describe('a DATABASE_URL whose password is not percent-encoded', () => {
  it('is refused, and no part of the password reaches the output, the logs, the mail or a file name; encoded, it works', async () => {
    const db = await createWebserverDb(3);
    const role = `bb_url_${crypto.randomBytes(4).toString('hex')}`;
    const password = 'leakA@leakB/leakC%rd';
    const parts = ['leakA', 'leakB', 'leakC'];
    await query('postgres', `CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD '${password}'`);
    onTestFinished(() => query('postgres', `DROP ROLE IF EXISTS ${role}`).then(() => undefined));
    const smtp = await smtpSink();
    const dir = tempDir();
    const { host, port } = pgInfo();
    const url = (pw: string) => `postgresql://${role}:${pw}@${host}:${port}/${db}`;
    const env = (pw: string) => backupEnv(db, dir, { ...smtpEnv(smtp.port), DATABASE_URL: url(pw), DB_NAME: undefined, DB_PASSWORD: undefined });
    const leaks = () => {
      const texts = [
        ...[...filesUnder(path.join(dir, 'logs')), ...filesUnder(path.join(dir, 'backups'))].flatMap((f) => [f.name, f.text]),
        ...smtp.mails.flatMap((m) => [m.subject ?? '', m.text ?? '']),
      ];
      return texts.filter((t) => parts.some((p) => t.includes(p)));
    };

    const r = await runCli(['backup'], env(password));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr).toMatch(
      /^basement-backup: configuration error: DATABASE_URL: cannot be read one way only: .* \(nothing of it after the scheme is shown here\)$/m,
    );
    expect(r.stderr).toMatch(
      /fix: Percent-encode the special characters of the password in the URL \(@ as %40, .* or leave the password out of the URL and set DB_PASSWORD/,
    );
    const [mail] = await smtp.waitFor(1);
    expect(mail!.text).toContain('DATABASE_URL: cannot be read one way only');
    for (const p of parts) expect(`${r.stdout}${r.stderr}`).not.toContain(p);
    expect(leaks()).toEqual([]);

    // the fix the message gives: the same password percent-encoded
    const ok = await runCli(['backup'], env(encodeURIComponent(password)));
    expect(ok.code, ok.stderr).toBe(0);
    for (const p of parts) expect(`${ok.stdout}${ok.stderr}`).not.toContain(p);
    expect(leaks()).toEqual([]);
  });
});

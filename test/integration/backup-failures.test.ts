import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import type { ParsedMail } from 'mailparser';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DUMP, backupEnv, backupFiles, listJson, runCli, smtpEnv, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { createTestDb, createWebserverDb, lockTable, pgInfo, query, tableCounts } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';
import { jsonLog } from '../helpers/daemon';
import { freePort } from '../../scripts/lib/cluster';

interface Listed {
  id: string;
  file: string;
  database: string;
  sha256: string;
  size_bytes: number;
  format: string;
}

const HOST = os.hostname();

async function goodBackup(env: Record<string, string>): Promise<Listed> {
  const r = await runCli(['backup'], env);
  expect(r.code, r.stderr).toBe(0);
  const list = await listJson<Listed>(env);
  expect(list).toHaveLength(1);
  return list[0]!;
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Every file below `dir`, recursively, with its contents. */
function readTree(dir: string): { file: string; text: string }[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => {
      const file = path.join(e.parentPath, e.name);
      return { file, text: fs.readFileSync(file, 'latin1') };
    });
}

/** Lock files still present in the state directory. */
function locksLeft(dir: string): string[] {
  const locks = path.join(dir, 'backups', '.basement-backup', 'locks');
  return fs.existsSync(locks) ? fs.readdirSync(locks) : [];
}

/** Pids of the direct children of `ppid` whose command name is `comm`, read from /proc. */
function childPids(ppid: number, comm: string): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    const name = stat.slice(open + 1, close);
    const fields = stat
      .slice(close + 2)
      .trim()
      .split(' ');
    if (name === comm && Number(fields[1]) === ppid) out.push(Number(entry));
  }
  return out;
}

function cmdline(pid: number): string[] | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  } catch {
    return undefined; // exited meanwhile
  }
}

/** The pg_dump child of the CLI that dumps (not the `pg_dump --version` probe that runs first). */
async function waitForDumpChild(cliPid: number): Promise<number> {
  let pid: number | undefined;
  await waitFor(
    () => {
      pid = childPids(cliPid, 'pg_dump').find((p) => {
        const argv = cmdline(p);
        return argv !== undefined && !argv.includes('--version');
      });
      return pid !== undefined;
    },
    20_000,
    `the pg_dump child of ${cliPid}`,
  );
  return pid!;
}

/** Waits until some backend of `database` waits for a heavyweight lock (pg_dump behind our LOCK TABLE). */
async function waitForLockWaiter(database: string): Promise<void> {
  await waitFor(
    async () =>
      (
        await query<{ n: number }>(
          'postgres',
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND application_name = 'basement-backup'`,
          [database],
        )
      )[0]!.n > 0,
    20_000,
    `a backend of ${database} waiting for a lock`,
  );
}

function expectFailureMail(mail: ParsedMail, database: string, opts: { cause: RegExp[]; newest: string | undefined; secrets: string[] }): void {
  expect(mail.subject).toBe(`[basement-backup] FAILED: ${database} backup on ${HOST}`);
  const body = mail.text ?? '';
  for (const re of opts.cause) expect(body).toMatch(re);
  if (opts.newest) expect(body).toContain(`Newest good backup: ${path.basename(opts.newest)} (`);
  else expect(body).toContain('Newest good backup: NONE');
  for (const s of opts.secrets) {
    expect(body).not.toContain(s);
    expect(mail.subject).not.toContain(s);
  }
}

describe('a failing dump', () => {
  const wrongPassword = `wrong-${crypto.randomBytes(8).toString('hex')}`;
  const cases: {
    cause: string;
    exit: number;
    /** Settings that break the backup of `db`. */
    breakIt: (db: string) => Promise<Record<string, string>>;
    /** Whether the broken run still backs up the same database as the earlier good one. */
    sameDb: boolean;
    mailSays: (db: string) => RegExp[];
    stderrSays: RegExp;
  }[] = [
    {
      cause: 'bad credentials',
      exit: 11,
      breakIt: () => Promise.resolve({ DB_PASSWORD: wrongPassword }),
      sameDb: true,
      mailSays: () => [/database login refused \(DB_AUTH\)/, /password authentication failed/, /DB_PASSWORD/],
      stderrSays: /database login refused/,
    },
    {
      cause: 'missing database',
      exit: 12,
      breakIt: (db) => Promise.resolve({ DB_NAME: `${db}_missing` }),
      sameDb: false,
      mailSays: (db) => [/database does not exist \(DB_MISSING\)/, new RegExp(`database "${db}_missing" does not exist`), /DB_NAME/],
      stderrSays: /does not exist/,
    },
    {
      cause: 'server down',
      exit: 10,
      breakIt: async () => ({ DB_PORT: String(await freePort()) }),
      sameDb: true,
      mailSays: () => [/cannot reach the database \(DB_CONNECT\)/, /ECONNREFUSED/, /DB_HOST\/DB_PORT/],
      stderrSays: /cannot reach the database/,
    },
  ];

  it.each(cases)('$cause: exit $exit, no new file, earlier backup intact, alert mailed', async (c) => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const sink = await smtpSink();
    const goodEnv = backupEnv(db, dir, smtpEnv(sink.port));
    const earlier = await goodBackup(goodEnv);
    const earlierHash = sha256(earlier.file);
    expect(earlierHash).toBe(earlier.sha256);
    const before = backupFiles(dir);
    expect(before).toEqual(expect.arrayContaining([path.basename(earlier.file), `${earlier.id}.manifest.json`]));
    expect(sink.mails).toHaveLength(0); // a success after no failure sends nothing

    const badEnv = { ...goodEnv, ...(await c.breakIt(db)) };
    const r = await runCli(['backup'], badEnv);
    expect(r.code, r.stderr).toBe(c.exit);
    expect(r.stderr).toMatch(c.stderrSays);
    expect(r.stdout).not.toContain('Backup completed');

    // nothing new in the backup directory, not even a hidden temporary file
    expect(backupFiles(dir)).toEqual(before);
    expect(locksLeft(dir)).toEqual([]);
    expect(sha256(earlier.file)).toBe(earlierHash);
    const listed = await listJson<Listed>(goodEnv);
    expect(listed.map((m) => [m.id, m.sha256, m.file])).toEqual([[earlier.id, earlierHash, earlier.file]]);
    if (!c.sameDb) expect(await listJson(badEnv)).toEqual([]);

    const [mail] = await sink.waitFor(1);
    expect(sink.mails).toHaveLength(1);
    const secrets = [pgInfo().password, wrongPassword];
    expectFailureMail(mail!, badEnv.DB_NAME!, { cause: c.mailSays(db), newest: c.sameDb ? earlier.file : undefined, secrets });
    for (const s of secrets) expect(r.stdout + r.stderr).not.toContain(s);
    expect(fs.readFileSync(path.join(dir, 'logs', 'backup.log'), 'utf8')).toMatch(/❌ Backup failed: /);
  });
});

describe('pg_dump killed mid-way', () => {
  it('exits non-zero, lists nothing, leaves no temporary file, alerts', async () => {
    const db = await createTestDb('big');
    await query(db, `CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, md5((-g)::text) AS b FROM generate_series(1, 1200000) g`);
    const dir = tempDir();
    const sink = await smtpSink();
    const env = backupEnv(db, dir, smtpEnv(sink.port));

    const cli = spawnCli(['backup'], env);
    const backups = path.join(dir, 'backups');
    const tmpName = new RegExp(`^\\.${db}_\\d{8}T\\d{6}Z\\.dump\\.zst\\.tmp-\\d+\\.\\d+-[0-9a-f]+$`);
    let tmp: string | undefined;
    await waitFor(
      () => {
        tmp = backupFiles(dir).find((n) => tmpName.test(n));
        try {
          return tmp !== undefined && fs.statSync(path.join(backups, tmp)).size > 0;
        } catch {
          return false;
        }
      },
      20_000,
      'pg_dump to start writing',
    );
    const dumpPid = await waitForDumpChild(cli.child.pid!);
    process.kill(dumpPid, 'SIGKILL');

    const code = await cli.exited;
    const out = cli.output();
    expect(code, out).toBe(20); // DUMP_FAILED
    expect(out).toMatch(/pg_dump was killed by SIGKILL/);

    expect(fs.existsSync(path.join(backups, tmp!))).toBe(false);
    expect(backupFiles(dir)).toEqual([]);
    expect(locksLeft(dir)).toEqual([]);
    expect(await listJson<Listed>(env)).toEqual([]);

    const [mail] = await sink.waitFor(1);
    expectFailureMail(mail!, db, { cause: [/pg_dump failed \(DUMP_FAILED\)/, /killed by SIGKILL/], newest: undefined, secrets: [pgInfo().password] });
  });
});

describe('two concurrent backups of one database', () => {
  it('the second is refused with exit 3 naming the lock; the first completes', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const sink = await smtpSink();
    const env = backupEnv(db, dir, smtpEnv(sink.port));
    const tableLock = await lockTable(db, 'users');

    const first = spawnCli(['backup', '--label', 'first'], env);
    await waitForLockWaiter(db); // the first backup holds our lock and its pg_dump is blocked
    expect(first.child.exitCode).toBeNull();

    const second = await runCli(['backup', '--label', 'second'], env);
    expect(second.code, second.stderr).toBe(3);
    expect(second.stderr).toMatch(/another backup is running/);
    expect(second.stderr).toMatch(/holds the lock .*\.lock/);
    expect(second.stderr).toContain(`pid ${first.child.pid}`);
    expect(second.stdout).not.toContain('Backup completed');

    await tableLock.release();
    const code = await first.exited;
    expect(code, first.output()).toBe(0);
    expect(first.output()).toMatch(/Backup completed: .*\.dump\.zst \(/);

    const list = await listJson<Listed>(env);
    expect(list).toHaveLength(1);
    expect((list[0] as Listed & { label: string }).label).toBe('first');
    expect(backupFiles(dir)).toEqual(expect.arrayContaining([path.basename(list[0]!.file), `${list[0]!.id}.manifest.json`]));
    expect(backupFiles(dir).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(locksLeft(dir)).toEqual([]);
    // the refusal is not a failure: nothing was alerted
    expect(sink.mails).toHaveLength(0);
  });
});

describe('secrets', () => {
  it('the password is not in pg_dump argv, the logs, or the output', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const { password } = pgInfo();
    const env = backupEnv(db, dir, { LOG_LEVEL: 'debug' });
    const tableLock = await lockTable(db, 'payments');

    const cli = spawnCli(['backup'], env);
    await waitForLockWaiter(db);
    const dumpPid = await waitForDumpChild(cli.child.pid!);
    const argv = cmdline(dumpPid)!;
    expect(path.basename(argv[0]!)).toBe('pg_dump');
    expect(argv.join(' ')).not.toContain(password);
    expect(fs.readFileSync(`/proc/${cli.child.pid}/cmdline`, 'utf8')).not.toContain(password);

    await tableLock.release();
    expect(await cli.exited, cli.output()).toBe(0);
    expect(cli.output()).not.toContain(password);

    const logs = readTree(path.join(dir, 'logs'));
    expect(logs.map((f) => path.basename(f.file))).toEqual(expect.arrayContaining(['backup.log', 'basement-backup.jsonl']));
    for (const f of logs) expect(f.text, f.file).not.toContain(password);
    // manifests and state too
    for (const f of readTree(path.join(dir, 'backups')).filter((x) => !x.file.endsWith(DUMP))) expect(f.text, f.file).not.toContain(password);
  });
});

describe('not enough disk space', () => {
  it('exits 22 naming BACKUP_MIN_FREE_MB, writes nothing, alerts', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const sink = await smtpSink();
    // the largest reserve the validation accepts: 10 TB
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), BACKUP_MIN_FREE_MB: '10000000' });
    const r = await runCli(['backup'], env);
    expect(r.code, r.stderr).toBe(22);
    expect(r.stderr).toMatch(/not enough disk space/);
    expect(r.stderr).toContain('BACKUP_MIN_FREE_MB');
    expect(backupFiles(dir)).toEqual([]);
    expect(await listJson<Listed>(env)).toEqual([]);

    const [mail] = await sink.waitFor(1);
    expectFailureMail(mail!, db, { cause: [/not enough disk space \(NO_SPACE\)/, /BACKUP_MIN_FREE_MB/], newest: undefined, secrets: [pgInfo().password] });
  });
});

describe('the disk fills up while writing', () => {
  it('exits 22 (not "pg_dump failed"), removes the partial file, alerts', async (ctx) => {
    // A small tmpfs as BACKUP_DIR: big enough for the pre-check (half the database size), too
    // small for the dump. Needs root with the right to mount; skipped elsewhere.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-test-'));
    const backups = path.join(dir, 'backups');
    fs.mkdirSync(backups, { mode: 0o700 });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32m,mode=0700', 'tmpfs', backups], { stdio: 'ignore' });
    } catch {
      fs.rmSync(dir, { recursive: true, force: true });
      ctx.skip(true, 'cannot mount a tmpfs here');
    }
    onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
    onTestFinished(() => void execFileSync('umount', [backups], { stdio: 'ignore' })); // runs first

    const db = await createTestDb('full');
    // ~40 MB of table data, written uncompressed: the pre-check expects ~27 MB, 32 MB are free
    await query(db, `CREATE TABLE wide AS SELECT g AS id, repeat(md5(g::text), 30) AS t FROM generate_series(1, 40000) g`);
    const sink = await smtpSink();
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), BACKUP_COMPRESSION: '0' });
    const r = await runCli(['backup'], env);
    expect(r.code, r.stderr).toBe(22);
    expect(r.stderr).toMatch(/not enough disk space: the disk filled up while writing the backup/);
    expect(backupFiles(dir)).toEqual([]);
    expect(await listJson<Listed>(env)).toEqual([]);
    expect(fs.statfsSync(backups).bfree).toBeGreaterThan(fs.statfsSync(backups).blocks - 64); // the space is given back

    const [mail] = await sink.waitFor(1);
    expectFailureMail(mail!, db, {
      cause: [/not enough disk space \(NO_SPACE\)/, /disk filled up while writing/],
      newest: undefined,
      secrets: [pgInfo().password],
    });
  });
});

describe('alert throttling', () => {
  it('one mail per failure streak by default, a recovery mail, every failure with ALERT_REPEAT_MINUTES=0', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const sink = await smtpSink();
    const goodEnv = backupEnv(db, dir, smtpEnv(sink.port));
    const badEnv = { ...goodEnv, DB_PASSWORD: 'not-the-password' };
    const subjects = () => sink.mails.map((m) => m.subject);

    expect((await runCli(['backup'], badEnv)).code).toBe(11);
    expect(subjects()).toEqual([`[basement-backup] FAILED: ${db} backup on ${HOST}`]);
    expect((await runCli(['backup'], badEnv)).code).toBe(11);
    // the CLI has exited, so a second mail would already be in the sink
    expect(subjects()).toHaveLength(1);
    const status = JSON.parse((await runCli(['status', '--json'], goodEnv)).stdout) as { failure_streak: number; last_failure: { code: string } };
    expect(status.failure_streak).toBe(2);
    expect(status.last_failure.code).toBe('DB_AUTH');

    const good = await runCli(['backup'], goodEnv);
    expect(good.code, good.stderr).toBe(0);
    await sink.waitFor(2);
    expect(subjects()[1]).toBe(`[basement-backup] RECOVERED: ${db} backup on ${HOST}`);
    const [m] = await listJson<Listed>(goodEnv);
    expect(sink.mails[1]!.text).toContain(path.basename(m!.file));
    expect(sink.mails[1]!.text).toContain('2 failed attempt(s)');

    const noRepeat = { ...badEnv, ALERT_REPEAT_MINUTES: '0' };
    expect((await runCli(['backup'], noRepeat)).code).toBe(11);
    expect((await runCli(['backup'], noRepeat)).code).toBe(11);
    expect(subjects()).toHaveLength(4);
    expect(subjects().slice(2)).toEqual([`[basement-backup] FAILED: ${db} backup on ${HOST}`, `[basement-backup] FAILED: ${db} backup on ${HOST}`]);
    expect(sink.mails[3]!.text).toContain('This is failure 2 in a row.');
    expect(sink.mails[3]!.text).toContain(`Newest good backup: ${path.basename(m!.file)}`);
    for (const mail of sink.mails) expect(mail.text).not.toContain('not-the-password');
  });
});

describe('BACKUP_ALERT_AFTER_FAILURES', () => {
  it('=2: no mail at the first failure, the alert at the second, a recovery after; a lone failure below it sends no recovery', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const sink = await smtpSink();
    const goodEnv = backupEnv(db, dir, { ...smtpEnv(sink.port), BACKUP_ALERT_AFTER_FAILURES: '2' });
    const badEnv = { ...goodEnv, DB_PASSWORD: 'not-the-password' };
    const subjects = () => sink.mails.map((m) => m.subject);

    expect((await runCli(['backup'], badEnv)).code).toBe(11);
    await sink.settled();
    expect(subjects()).toEqual([]);
    expect(jsonLog(dir)).toContain('failure alert suppressed (BACKUP_ALERT_AFTER_FAILURES is 2)');
    expect((await runCli(['backup'], badEnv)).code).toBe(11);
    await sink.waitFor(1);
    expect(subjects()).toEqual([`[basement-backup] FAILED: ${db} backup on ${HOST}`]);
    expect(sink.mails[0]!.text).toContain('This is failure 2 in a row.');
    expect((await runCli(['backup'], goodEnv)).code).toBe(0);
    await sink.waitFor(2);
    expect(subjects()[1]).toBe(`[basement-backup] RECOVERED: ${db} backup on ${HOST}`);

    // one failure, below the threshold, then a success: nothing was alerted, so nothing recovers
    expect((await runCli(['backup'], badEnv)).code).toBe(11);
    expect((await runCli(['backup'], goodEnv)).code).toBe(0);
    await sink.settled();
    expect(subjects()).toHaveLength(2);
  });
});

describe('plain format', () => {
  it('with BACKUP_COMPRESSION=gzip writes <id>.sql.gz that gunzips and restores with psql to identical rows', async () => {
    const db = await createWebserverDb(25);
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_FORMAT: 'plain', BACKUP_COMPRESSION: 'gzip' });
    const r = await runCli(['backup'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Backup completed: .*\.sql\.gz \(/);

    const [m, ...rest] = await listJson<Listed>(env);
    expect(rest).toEqual([]);
    expect(m!.format).toBe('plain');
    expect(path.basename(m!.file)).toBe(`${m!.id}.sql.gz`);
    expect(path.basename(m!.file)).toMatch(new RegExp(`^${db}_\\d{8}T\\d{6}Z\\.sql\\.gz$`));
    expect(sha256(m!.file)).toBe(m!.sha256);
    expect(fs.statSync(m!.file).size).toBe(m!.size_bytes);

    const sql = zlib.gunzipSync(fs.readFileSync(m!.file)).toString('utf8');
    expect(sql).toContain('-- PostgreSQL database dump complete');

    const target = await createTestDb('restored_plain');
    const info = pgInfo();
    execFileSync(path.join(info.binDir, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', target], {
      input: sql,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH, PGHOST: info.host, PGPORT: String(info.port), PGUSER: info.user, PGPASSWORD: info.password },
    });
    const counts = await tableCounts(target);
    expect(counts).toEqual(await tableCounts(db));
    expect(counts['public.users']).toBe(25);
  });
});

describe('alerts of a database entry named in BACKUP_CONFIG_FILE', () => {
  it('name the entry (what --db takes) in the subject, not the PostgreSQL database', async () => {
    const db = await createWebserverDb(3);
    const dir = tempDir();
    const sink = await smtpSink();
    const file = path.join(dir, 'backup.json');
    const entry = { name: 'billing', database: db, password: '${BILLING_PASSWORD}', verify_schedule: 'off' };
    fs.writeFileSync(file, JSON.stringify({ targets: [{ name: 'local', type: 'local', path: path.join(dir, 'backups') }], databases: [entry] }));
    const env = { ...backupEnv(db, dir, smtpEnv(sink.port)), BACKUP_CONFIG_FILE: file, ALERT_REPEAT_MINUTES: '0' };
    const subjects = () => sink.mails.map((m) => m.subject);

    expect((await runCli(['backup'], { ...env, BILLING_PASSWORD: 'not-the-password' })).code).toBe(11);
    await sink.waitFor(1);
    expect(subjects()).toEqual([`[basement-backup] FAILED: billing backup on ${HOST}`]);
    expect(sink.mails[0]!.text).toContain(`The backup of "billing" (database "${db}") on ${HOST} FAILED`);

    const good = await runCli(['backup'], { ...env, BILLING_PASSWORD: pgInfo().password });
    expect(good.code, good.stderr).toBe(0);
    await sink.waitFor(2);
    expect(subjects()[1]).toBe(`[basement-backup] RECOVERED: billing backup on ${HOST}`);

    // a problem alert names it too
    const [m] = await listJson<Listed>({ ...env, BILLING_PASSWORD: pgInfo().password });
    const data = path.join(dir, 'backups', path.basename(m!.file));
    const bytes = fs.readFileSync(data);
    bytes[bytes.length >> 1]! ^= 0xff;
    fs.writeFileSync(data, bytes);
    expect((await runCli(['verify', '--checksums-only'], { ...env, BILLING_PASSWORD: pgInfo().password })).code).toBe(31);
    await sink.waitFor(3);
    expect(subjects()[2]).toBe(`[basement-backup] PROBLEM: 1 stored backup(s) of billing fail their checksum or cannot be read on ${HOST}`);
    for (const s of subjects()) expect(s).not.toContain(db);
  });
});

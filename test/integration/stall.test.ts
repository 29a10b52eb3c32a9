import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { explainQueryError } from '../../src/pg/activity';
import { startBlackholeProxy } from '../helpers/blackhole';
import { backupEnv, backupFiles, listJson, runCli, smtpEnv, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { createWebserverDb, pgInfo, query } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';

/** 3 seconds: short enough for a test, far longer than any pause of a working pg_dump here. */
const STALL = { BACKUP_STALL_MINUTES: '0.05' };
const EVERY_2S = '*/2 * * * * *';

/**
 * A migration of the app "cloudedbasement" that altered `table` and left its transaction open
 * (ACCESS EXCLUSIVE held, idle in transaction) until commit().
 */
async function openMigration(database: string, table: string): Promise<{ pid: number; commit(): Promise<void> }> {
  const info = pgInfo();
  const client = new pg.Client({ host: info.host, port: info.port, user: info.user, password: info.password, database, application_name: 'cloudedbasement' });
  client.on('error', () => undefined); // the database is dropped under it at the end
  await client.connect();
  let ended = false;
  const end = async () => {
    if (ended) return;
    ended = true;
    await client.end().catch(() => undefined);
  };
  onTestFinished(end);
  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  await client.query(`BEGIN; ALTER TABLE ${table} ADD COLUMN nickname text`);
  return {
    pid,
    async commit() {
      await client.query('COMMIT');
      await end();
    },
  };
}

/** Sessions basement-backup (or its children) still has in `database`. */
async function ourSessions(database: string): Promise<string[]> {
  const rows = await query<{ a: string }>(
    'postgres',
    `SELECT application_name AS a FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'basement-backup%'`,
    [database],
  );
  return rows.map((r) => r.a);
}

function locksLeft(dir: string): string[] {
  const locks = path.join(dir, 'backups', '.basement-backup', 'locks');
  return fs.existsSync(locks) ? fs.readdirSync(locks) : [];
}

describe('a dump stalled behind a lock (BACKUP_STALL_MINUTES)', () => {
  it('`backup` exits 25 within the stall time, keeps nothing, ends its sessions and alerts naming the blocking session', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const sink = await smtpSink();
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), ...STALL });
    const migration = await openMigration(db, 'users');

    const started = Date.now();
    const r = await runCli(['backup'], env, { timeoutMs: 60_000 });
    const took = Date.now() - started;
    expect(r.code, r.stderr).toBe(25);
    expect(took).toBeLessThan(30_000);
    expect(r.stdout).not.toContain('Backup completed');
    expect(r.stderr).toMatch(
      new RegExp(
        `pg_dump waited \\d+ s for a lock on public\\.users held by pid ${migration.pid} \\(application cloudedbasement, user \\w+, from 127\\.0\\.0\\.1, idle in transaction since \\d{4}-`,
      ),
    );
    expect(r.stderr).toMatch(/ALTER TABLE users ADD COLUMN nickname/);
    expect(r.stderr).toContain(`pg_terminate_backend(${migration.pid})`);
    expect(r.stderr).not.toMatch(/\n\s+at .*\.js:\d+/); // no stack trace

    // nothing kept, not even a temporary file; the lock file is released
    expect(backupFiles(dir)).toEqual([]);
    expect(locksLeft(dir)).toEqual([]);
    expect(await listJson(env)).toEqual([]);
    // pg_dump's and our own sessions are gone from the server, so they no longer queue for the lock
    await waitFor(async () => (await ourSessions(db)).length === 0, 10_000, 'the backup sessions to end');

    const [mail] = await sink.waitFor(1);
    expect(mail!.subject).toBe(`[basement-backup] FAILED: ${db} backup on ${os.hostname()}`);
    expect(mail!.text).toMatch(/pg_dump or pg_restore stalled \(STALLED\)/);
    expect(mail!.text).toContain(`held by pid ${migration.pid} (application cloudedbasement`);
    expect(mail!.text).toContain(`pg_terminate_backend(${migration.pid})`);
    expect(mail!.text).not.toContain(pgInfo().password);
    expect(fs.readFileSync(path.join(dir, 'logs', 'backup.log'), 'utf8')).toMatch(/❌ Backup failed: pg_dump waited/);

    // the migration was not disturbed, and the next backup works once it is done
    await migration.commit();
    const again = await runCli(['backup'], env);
    expect(again.code, again.stderr).toBe(0);
  });

  it('the daemon stops a stalled scheduled backup, alerts, keeps running and recovers once the lock is gone', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const sink = await smtpSink();
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), ...STALL, BACKUP_SCHEDULE: EVERY_2S, BACKUP_CATCH_UP: 'false' });
    const migration = await openMigration(db, 'payments');
    const d = spawnCli(['daemon'], env);

    const [failed] = await sink.waitFor(1, 30_000);
    expect(failed!.subject).toMatch(/FAILED/);
    expect(failed!.text).toContain(`a lock on public.payments held by pid ${migration.pid}`);
    expect(d.child.exitCode).toBeNull();
    expect(backupFiles(dir).filter((n) => !n.startsWith('.'))).toEqual([]);

    await migration.commit();
    await sink.waitFor(2, 30_000);
    expect(sink.mails[1]!.subject).toMatch(/RECOVERED/);
    expect(d.child.exitCode).toBeNull();
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
  });
});

/** Scratch databases of drills of `db` left on the server. */
async function scratchLeft(db: string): Promise<string[]> {
  const rows = await query<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, [`bb_verify_${db}_`]);
  return rows.map((r) => r.datname);
}

/** Server sessions of basement-backup's pg_restore or psql children, anywhere in the cluster. */
async function restoreSessions(): Promise<number> {
  const rows = await query<{ n: number }>(
    'postgres',
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name ~ '^basement-backup (pg_restore|psql) '`,
  );
  return rows[0]!.n;
}

describe('a restore whose connection the network stops carrying (BACKUP_STALL_MINUTES)', () => {
  // A restore goes into a database created a moment before, which no other session uses: a table
  // lock cannot stall it. What does, realistically, is a connection a firewall or NAT silently
  // dropped: pg_restore waits for an answer that never comes, and the server for a query.
  it('`verify`: pg_restore is stopped, exit 25, the scratch database dropped, the drill recorded as STALLED (not damaged) and alerted', async () => {
    const db = await createWebserverDb(20);
    const dir = tempDir();
    const sink = await smtpSink();
    const info = pgInfo();
    // the first connection to the scratch database is pg_restore's
    let seen = 0;
    const proxy = await startBlackholeProxy(info, (p) => (p.database ?? '').startsWith(`bb_verify_${db}_`) && seen++ === 0, 3000);
    const env = backupEnv(db, dir, {
      ...smtpEnv(sink.port),
      ...STALL,
      VERIFY_DB_HOST: '127.0.0.1',
      VERIFY_DB_PORT: String(proxy.port),
      VERIFY_DB_PASSWORD: info.password,
    });
    const backup = await runCli(['backup'], env);
    expect(backup.code, backup.stderr).toBe(0);

    const started = Date.now();
    const r = await runCli(['verify'], env, { timeoutMs: 60_000 });
    expect(r.code, r.stdout + r.stderr).toBe(25);
    expect(Date.now() - started).toBeLessThan(40_000);
    expect(proxy.swallowed).toBe(1);
    expect(r.stdout).toMatch(
      /FAILED: pg_restore made no progress for \d+ s: its session on the server is [\w ]+, waiting for pg_restore: the connection between them may be broken/,
    );
    expect(r.stdout).toMatch(/checksum\s+│?\s*not checked/);
    expect(r.stdout + r.stderr).not.toMatch(/\n\s+at .*\.js:\d+/);

    expect(await scratchLeft(db)).toEqual([]);
    await waitFor(async () => (await restoreSessions()) === 0, 10_000, "pg_restore's session to end");

    const listed = await listJson<{ id: string; state: string; verification: { ok: boolean; error_code: string } }>(env);
    expect(listed).toHaveLength(1);
    expect(listed[0]!.verification).toMatchObject({ ok: false, error_code: 'STALLED', checksum_ok: null });
    const status = JSON.parse((await runCli(['status', '--json'], env)).stdout) as { last_drill: { ok: boolean; error_code: string } };
    expect(status.last_drill).toMatchObject({ ok: false, error_code: 'STALLED' });

    const [mail] = await sink.waitFor(1);
    expect(mail!.subject).toMatch(/PROBLEM: Restore drill of backup .* failed/);
    expect(mail!.text).toMatch(/pg_dump or pg_restore stalled \(STALLED\): pg_restore made no progress/);
  });

  it('`restore` of a plain backup: psql is stopped, exit 25, the half-restored database removed', async () => {
    const db = await createWebserverDb(20);
    const dir = tempDir();
    const info = pgInfo();
    const env = backupEnv(db, dir, { ...STALL, BACKUP_FORMAT: 'plain' });
    const backup = await runCli(['backup'], env);
    expect(backup.code, backup.stderr).toBe(0);

    const target = `${db}_copy`;
    // the first connection to the new database is psql's
    let seen = 0;
    const proxy = await startBlackholeProxy(info, (p) => p.database === target && seen++ === 0, 3000);
    const r = await runCli(['restore', '--target-db', target], { ...env, DB_HOST: '127.0.0.1', DB_PORT: String(proxy.port) }, { timeoutMs: 60_000 });
    expect(r.code, r.stdout + r.stderr).toBe(25);
    expect(proxy.swallowed).toBe(1);
    expect(r.stderr).toMatch(/psql made no progress for \d+ s: its session on the server is [\w ]+, waiting for psql/);
    expect(await query('postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [target])).toEqual([]);
    await waitFor(async () => (await restoreSessions()) === 0, 10_000, "psql's session to end");
  });
});

describe("the backup's own snapshot connection behind a lock", () => {
  // The digest reads every table in the dump's snapshot with lock_timeout = BACKUP_STALL_MINUTES;
  // its timeout becomes a STALLED error naming who holds the table.
  it('a lock timeout is reported as STALLED naming the table and the session holding it', async () => {
    const db = await createWebserverDb(5);
    const migration = await openMigration(db, 'servers');
    const info = pgInfo();
    const dbConfig = {
      host: info.host,
      port: info.port,
      user: info.user,
      password: info.password,
      database: db,
      sslmode: undefined,
      connectTimeoutSeconds: 10,
    };
    const client = new pg.Client({ host: info.host, port: info.port, user: info.user, password: info.password, database: db });
    await client.connect();
    onTestFinished(() => client.end());
    const err = await client.query('SET lock_timeout = 300; SELECT count(*) FROM servers').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as { code?: string }).code).toBe('55P03');
    const e = await explainQueryError(err, dbConfig, "the backup's snapshot connection", 3000);
    expect(e.code).toBe('STALLED');
    expect(e.message).toMatch(
      new RegExp(
        `^the backup's snapshot connection waited 3 s \\(BACKUP_STALL_MINUTES\\) for a lock on public\\.servers held by pid ${migration.pid} \\(application cloudedbasement`,
      ),
    );
    expect(e.hint).toContain(`pg_terminate_backend(${migration.pid})`);
  });
});

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { backupEnv, holdsFor, smtpEnv, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { backupLog, childrenNamed, count, exited, jsonLog, lockFile, manifestsOnDisk, pgDumpBlocked, smallDb, tempFiles } from '../helpers/daemon';
import { lockTable, query } from '../helpers/pg';
import { pm2Sandbox } from '../helpers/pm2';
import { smtpSink } from '../helpers/smtp';

/** Once a year: the catch-up runs at start, the next scheduled run is far away. */
const YEARLY = '0 0 1 1 *';

/** Server sessions of basement-backup's pg_dump runs in `database`. */
async function dumpSessions(database: string): Promise<number> {
  const rows = await query('postgres', `SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'basement-backup pg_dump %'`, [database]);
  return rows.length;
}

function mode(p: string): string {
  return (fs.statSync(p).mode & 0o777).toString(8).padStart(4, '0');
}

describe('under pm2 (the repository ecosystem.config.js)', () => {
  it('pm2 stop during a backup lets it finish within the grace period: pg_dump is not killed, no FAILED mail', async () => {
    const sink = await smtpSink();
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), BACKUP_SCHEDULE: YEARLY, SHUTDOWN_GRACE_SECONDS: '20' });
    const { pm2, app, ecosystem } = pm2Sandbox(dir, env, { ownAppDir: true });
    const lock = await lockTable(db, 'items');
    await pm2('start', ecosystem);
    await pgDumpBlocked(db); // the catch-up backup is under way

    const [dump] = childrenNamed((await app())!.pid, 'pg_dump');
    expect(dump).toBeDefined();

    const stopping = pm2('stop', 'basement-backup');
    // The daemon logs this once pm2's signal reached it: what pm2 signals has been signalled.
    await waitFor(() => jsonLog(dir).includes('waiting up to 20s for the running backup to finish'), 15_000, 'the daemon to wait for the backup');
    // pg_dump still runs (pm2 signalled the daemon only: treekill false); a signalled pg_dump
    // would be gone within this window. The completed backup below proves it was never stopped.
    await holdsFor(() => !exited(dump!), 1000, 'pg_dump still running');
    expect(await dumpSessions(db)).toBe(1);
    await lock.release();
    await stopping;

    const stopped = await app();
    expect(stopped?.pm2_env.status).toBe('stopped');
    expect(stopped?.pm2_env.restart_time).toBe(0);
    const backups = manifestsOnDisk(dir);
    expect(backups.map((b) => b.trigger)).toEqual(['catch-up']);
    expect(backupLog(dir)).toMatch(/✅ Backup completed/);
    expect(backupLog(dir)).not.toMatch(/❌/);
    expect(jsonLog(dir)).toContain('daemon stopped');
    expect(tempFiles(dir)).toEqual([]);
    expect(fs.existsSync(lockFile(dir, db))).toBe(false);
    // The daemon has exited, and it sends each alert, and logs it, before it goes on: a mail would
    // be in its log and, once the sink has settled, in the sink.
    expect(jsonLog(dir)).not.toMatch(/alert sent|could not send alert/);
    await sink.settled();
    expect(sink.mails.map((m) => m.subject)).toEqual([]);
  });

  it('pm2 restart during a backup aborts it cleanly after the grace period, and the restarted daemon takes it as a catch-up', async () => {
    const sink = await smtpSink();
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), BACKUP_SCHEDULE: YEARLY, SHUTDOWN_GRACE_SECONDS: '1' });
    const { pm2, app, ecosystem, appDir } = pm2Sandbox(dir, env, { ownAppDir: true });
    const lock = await lockTable(db, 'items');
    await pm2('start', ecosystem);
    await pgDumpBlocked(db);
    const firstPid = (await app())!.pid;

    await pm2('restart', 'basement-backup');
    const restarted = await app();
    expect(restarted?.pm2_env.status).toBe('online');
    expect(restarted?.pm2_env.restart_time).toBe(1);
    expect(restarted?.pid).not.toBe(firstPid);
    // pm2's own log holds the output of both daemons.
    const log = fs.readFileSync(path.join(appDir, 'logs', 'pm2-out.log'), 'utf8');
    expect(log).toContain('the running backup did not finish within SHUTDOWN_GRACE_SECONDS; aborting it');
    expect(log).not.toMatch(/killed by SIGINT/);
    expect(count(backupLog(dir), /❌ Backup failed: the backup was stopped before it finished/)).toBe(1);

    // The new daemon finds no backup for the last scheduled time and takes one.
    await pgDumpBlocked(db);
    await lock.release();
    await waitFor(() => manifestsOnDisk(dir).length === 1, 30_000, 'the catch-up backup after the restart');
    expect(manifestsOnDisk(dir)[0]!.trigger).toBe('catch-up');
    await waitFor(() => tempFiles(dir).length === 0, 10_000, 'no temporary files');
    await pm2('stop', 'basement-backup');
    expect(fs.existsSync(lockFile(dir, db))).toBe(false);
    expect(sink.mails.map((m) => m.subject)).toEqual([]);
  });

  it('a configuration error leaves the app stopped, not waiting to restart', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: 'every night' });
    const { pm2, app, ecosystem } = pm2Sandbox(dir, env, { ownAppDir: true });
    await pm2('start', ecosystem).catch(() => undefined); // pm2 may report that the app did not get ready
    // pm2 decides in the same step as it records the exit code (God.handleExit): a restart would
    // be under way (restart_delay 0) by the time another `pm2 jlist` is answered.
    await waitFor(async () => (await app())?.pm2_env.exit_code === 2, 30_000, 'the daemon to exit with code 2');
    const a = await app();
    expect(a?.pm2_env.status).toBe('stopped');
    expect(a?.pm2_env.restart_time).toBe(0);
  });

  it("pm2's own log files are private (0600) and the log folders 0700", async () => {
    const previous = process.umask(0o022); // a usual login umask: pm2 creates its files 0644 under it
    onTestFinished(() => void process.umask(previous));
    const db = await smallDb();
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'logs'), { mode: 0o755 });
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY, BACKUP_CATCH_UP: 'false' });
    const { pm2, app, ecosystem, appDir } = pm2Sandbox(dir, env, { ownAppDir: true });
    await pm2('start', ecosystem);
    const out = path.join(appDir, 'logs', 'pm2-out.log');
    const err = path.join(appDir, 'logs', 'pm2-error.log');
    expect((await app())?.pm2_env.pm_out_log_path).toBe(out);
    await waitFor(() => fs.existsSync(out) && fs.readFileSync(out, 'utf8').includes('next scheduled backup at'), 15_000, 'the daemon in pm2-out.log');
    expect({ out: mode(out), err: mode(err), pm2Logs: mode(path.dirname(out)), logDir: mode(path.join(dir, 'logs')) }).toEqual({
      out: '0600',
      err: '0600',
      pm2Logs: '0700',
      logDir: '0700',
    });
  });
});

describe('a daemon killed with SIGKILL (what pm2 does after kill_timeout)', () => {
  it('pg_dump, which keeps waiting for a table lock, is ended by the next start, which removes its partial file', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY });
    const lock = await lockTable(db, 'items');
    const first = spawnCli(['daemon'], env);
    await pgDumpBlocked(db);
    const [orphan] = childrenNamed(first.child.pid!, 'pg_dump');
    expect(orphan).toBeDefined();
    const partial = tempFiles(dir);
    expect(partial).toHaveLength(1);
    first.child.kill('SIGKILL');
    await first.exited;
    // blocked, it writes nothing and does not notice its parent is gone
    await holdsFor(() => !exited(orphan!), 1000, 'the orphaned pg_dump still running');

    const second = spawnCli(['daemon'], env);
    await waitFor(() => exited(orphan!), 15_000, 'the orphaned pg_dump to exit');
    // pg_dump exits as its session ends, a moment before the daemon logs that it ended it
    const ended = 'ended the database sessions of a pg_dump whose daemon was killed';
    await waitFor(() => second.output().includes(ended), 15_000, `"${ended}" in the output`);
    expect(second.output()).toContain(partial[0]!);
    expect(tempFiles(dir)).not.toContain(partial[0]);

    await lock.release();
    await waitFor(() => manifestsOnDisk(dir).length === 1, 30_000, 'the catch-up backup');
    second.child.kill('SIGTERM');
    expect(await second.exited, second.output()).toBe(0);
    expect(await dumpSessions(db)).toBe(0);
    expect(tempFiles(dir)).toEqual([]);
  });

  it('pg_dump that is writing exits on the broken pipe', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY });
    const lock = await lockTable(db, 'items');
    const d = spawnCli(['daemon'], env);
    await pgDumpBlocked(db);
    const [dump] = childrenNamed(d.child.pid!, 'pg_dump');
    d.child.kill('SIGKILL');
    await d.exited;
    await lock.release(); // pg_dump goes on and writes into the pipe nobody reads
    await waitFor(() => exited(dump!), 10_000, 'pg_dump to exit on the broken pipe');
    await waitFor(async () => (await dumpSessions(db)) === 0, 10_000, 'its session to end');
  });
});

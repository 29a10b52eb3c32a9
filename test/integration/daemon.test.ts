import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backupEnv, backupFiles, holdsFor, runCli, smtpEnv, spawnCli, tempDir, waitFor, type Spawned } from '../helpers/cli';
import { backupLog, count, listed, manifestsOnDisk, pgDumpBlocked, smallDb, tempFiles, type ListedBackup } from '../helpers/daemon';
import { lockTable } from '../helpers/pg';
import { pm2Sandbox } from '../helpers/pm2';
import { smtpSink } from '../helpers/smtp';

const REPO = path.resolve(__dirname, '../..');
const EVERY_2S = '*/2 * * * * *';
/** Once a year: the previous scheduled time is long past, the next one far away. */
const YEARLY = '0 0 1 1 *';

function expectNoOverlap(backups: ListedBackup[]): void {
  const sorted = [...backups].sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const next = sorted[i]!;
    expect(Date.parse(prev.finished_at), `${prev.id} (until ${prev.finished_at}) overlaps ${next.id} (from ${next.created_at})`).toBeLessThanOrEqual(
      Date.parse(next.created_at),
    );
  }
}

function startDaemon(env: Record<string, string>): Spawned {
  return spawnCli(['daemon'], env);
}

async function stopDaemon(d: Spawned): Promise<void> {
  d.child.kill('SIGTERM');
  const code = await d.exited;
  expect(code, d.output()).toBe(0);
  expect(d.output()).toContain('daemon stopped');
}

describe('the daemon', () => {
  it('takes backups on a seconds schedule one at a time, and exits 0 on SIGTERM', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: EVERY_2S, BACKUP_CATCH_UP: 'false' });
    const d = startDaemon(env);
    await d.waitForOutput(/next scheduled backup at/);

    await waitFor(() => manifestsOnDisk(dir).length >= 3, 30_000, 'three scheduled backups');
    await stopDaemon(d);

    const backups = await listed(env);
    expect(backups.length).toBeGreaterThanOrEqual(3);
    for (const b of backups) {
      expect(b.trigger).toBe('schedule');
      expect(b.state).toBe('ok');
      expect(fs.existsSync(b.file)).toBe(true);
    }
    expectNoOverlap(backups);
    expect(new Set(backups.map((b) => b.id)).size).toBe(backups.length);
    expect(d.output()).not.toMatch(/catch-up/);
    expect(tempFiles(dir)).toEqual([]);
    expect(count(backupLog(dir), /✅ Backup completed/)).toBe(backups.length);
  });

  it('skips ticks while a backup runs longer than the schedule, then completes exactly that one backup', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: EVERY_2S, BACKUP_CATCH_UP: 'false' });
    const lock = await lockTable(db, 'items');
    const d = startDaemon(env);

    await d.waitForOutput(/backup started/);
    await pgDumpBlocked(db);
    await waitFor(() => count(d.output(), /backup: skipped a scheduled run, the previous one is still running/) >= 2, 15_000, 'two skipped ticks');
    expect(count(d.output(), /backup started/)).toBe(1);
    expect(manifestsOnDisk(dir)).toEqual([]);
    expect(tempFiles(dir)).toHaveLength(1); // the one running backup's partial file

    const releasedAt = Date.now();
    await lock.release();
    await waitFor(() => manifestsOnDisk(dir).length >= 1, 15_000, 'the blocked backup to complete');
    await stopDaemon(d);

    const backups = await listed(env);
    const blocked = backups.filter((b) => Date.parse(b.created_at) < releasedAt);
    expect(blocked).toHaveLength(1);
    expect(Date.parse(blocked[0]!.finished_at)).toBeGreaterThanOrEqual(releasedAt);
    expect(blocked[0]!.duration_ms).toBeGreaterThanOrEqual(3000);
    expectNoOverlap(backups);
    expect(tempFiles(dir)).toEqual([]);
  });

  describe('SIGTERM during a backup', () => {
    it('waits the grace period, aborts pg_dump, removes the partial file and exits 0', async () => {
      const db = await smallDb();
      const dir = tempDir();
      const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY, SHUTDOWN_GRACE_SECONDS: '1' });
      await lockTable(db, 'items');
      const d = startDaemon(env);
      await d.waitForOutput(/backup started/);
      await pgDumpBlocked(db);
      expect(tempFiles(dir)).toHaveLength(1);

      const t0 = Date.now();
      await stopDaemon(d);
      const elapsed = Date.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(900);
      expect(elapsed).toBeLessThan(10_000);
      expect(d.output()).toContain('waiting up to 1s for the running backup to finish');
      expect(d.output()).toContain('did not finish within SHUTDOWN_GRACE_SECONDS; aborting it');
      expect(backupFiles(dir)).toEqual([]); // no partial file, no data, no manifest
      expect(await listed(env)).toEqual([]);
      expect(backupLog(dir)).toMatch(/❌ Backup failed: the backup was stopped before it finished/);
    });

    it('lets the backup finish when it does so within the grace period', async () => {
      const db = await smallDb();
      const dir = tempDir();
      const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY, SHUTDOWN_GRACE_SECONDS: '20' });
      const lock = await lockTable(db, 'items');
      const d = startDaemon(env);
      await d.waitForOutput(/backup started/);
      await pgDumpBlocked(db);

      const t0 = Date.now();
      d.child.kill('SIGTERM');
      await d.waitForOutput(/waiting up to 20s for the running backup to finish/);
      await holdsFor(() => d.child.exitCode === null, 500, 'the daemon still running');
      await lock.release();
      expect(await d.exited, d.output()).toBe(0);
      expect(Date.now() - t0).toBeLessThan(15_000);
      expect(d.output()).toContain('daemon stopped');
      expect(d.output()).not.toContain('aborting');

      const backups = await listed(env);
      expect(backups).toHaveLength(1);
      expect(backups[0]!.trigger).toBe('catch-up');
      expect(backups[0]!.state).toBe('ok');
      expect(tempFiles(dir)).toEqual([]);
    });

    it('a second SIGTERM aborts the backup before the grace period ends', async () => {
      const db = await smallDb();
      const dir = tempDir();
      const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY, SHUTDOWN_GRACE_SECONDS: '20' });
      await lockTable(db, 'items');
      const d = startDaemon(env);
      await d.waitForOutput(/backup started/);
      await pgDumpBlocked(db);

      const t0 = Date.now();
      d.child.kill('SIGTERM');
      await d.waitForOutput(/waiting up to 20s/);
      d.child.kill('SIGTERM');
      expect(await d.exited, d.output()).toBe(0);
      expect(Date.now() - t0).toBeLessThan(8_000);
      expect(d.output()).toContain('SIGTERM received again: forcing');
      expect(d.output()).toContain('forcing stop: aborting the running backup');
      expect(d.output()).not.toContain('did not finish within SHUTDOWN_GRACE_SECONDS');
      expect(d.output()).toContain('daemon stopped');
      expect(tempFiles(dir)).toEqual([]);
      expect(await listed(env)).toEqual([]);
    });
  });

  describe('catch-up on start', () => {
    it('runs one backup at start when the last scheduled run has no backup', async () => {
      const db = await smallDb();
      const dir = tempDir();
      const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY });
      const d = startDaemon(env);
      await waitFor(() => manifestsOnDisk(dir).length >= 1, 20_000, 'the catch-up backup');
      await stopDaemon(d);

      const backups = await listed(env);
      expect(backups).toHaveLength(1);
      expect(backups[0]!.trigger).toBe('catch-up');
      expect(d.output()).toMatch(/catch-up: the run due at \d{4}-01-01T00:00:00\.000Z has no backup \(newest: none\)/);
      expect(d.output()).toMatch(new RegExp(`next scheduled backup at ${new Date().getUTCFullYear() + 1}-01-01T00:00:00\\.000Z`));
    });

    it('runs one when the newest backup is older than the last scheduled run', async () => {
      const db = await smallDb();
      const dir = tempDir();
      const manual = await runCli(['backup'], backupEnv(db, dir));
      expect(manual.code, manual.stderr).toBe(0);
      // A daily schedule whose last run came after that backup was taken.
      const due = new Date(Math.ceil((Date.now() + 1000) / 1000) * 1000);
      await waitFor(() => Date.now() > due.getTime() + 200, 5000, 'the scheduled time to pass');
      const schedule = `${due.getUTCSeconds()} ${due.getUTCMinutes()} ${due.getUTCHours()} * * *`;
      const env = backupEnv(db, dir, { BACKUP_SCHEDULE: schedule });
      const d = startDaemon(env);
      await waitFor(() => manifestsOnDisk(dir).length >= 2, 20_000, 'the catch-up backup');
      await stopDaemon(d);

      const backups = await listed(env);
      expect(backups.map((b) => b.trigger)).toEqual(['manual', 'catch-up']);
      expect(d.output()).toContain(`catch-up: the run due at ${due.toISOString()} has no backup (newest: ${backups[0]!.created_at})`);
    });

    it('does not run when a backup newer than the last scheduled run exists', async () => {
      const db = await smallDb();
      const dir = tempDir();
      const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY });
      const manual = await runCli(['backup'], env);
      expect(manual.code, manual.stderr).toBe(0);
      const d = startDaemon(env);
      await d.waitForOutput(/next scheduled backup at/);
      await d.waitForOutput(/the run due at .* has a backup \(.*\); nothing to catch up/);
      expect(manifestsOnDisk(dir)).toHaveLength(1);
      expect(d.output()).not.toMatch(/catch-up|backup started/);
      await stopDaemon(d);
      expect((await listed(env)).map((b) => b.trigger)).toEqual(['manual']);
    });

    it('does not run with BACKUP_CATCH_UP=false', async () => {
      const db = await smallDb();
      const dir = tempDir();
      const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY, BACKUP_CATCH_UP: 'false' });
      const d = startDaemon(env);
      await d.waitForOutput(/next scheduled backup at/);
      await d.waitForOutput(/nothing to catch up at start: BACKUP_CATCH_UP=false/);
      expect(manifestsOnDisk(dir)).toEqual([]);
      expect(d.output()).not.toMatch(/catch-up|backup started/);
      await stopDaemon(d);
      expect(await listed(env)).toEqual([]);
    });
  });

  it('a failing scheduled backup alerts by mail, logs FAILED and the daemon stays up', async () => {
    const sink = await smtpSink();
    const db = await smallDb();
    const dir = tempDir();
    const badPassword = 'not-the-password-4711';
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), DB_PASSWORD: badPassword, BACKUP_SCHEDULE: EVERY_2S, BACKUP_CATCH_UP: 'false' });
    const d = startDaemon(env);

    const [mail] = await sink.waitFor(1, 20_000);
    expect(mail!.subject).toBe(`[basement-backup] FAILED: ${db} backup on ${os.hostname()}`);
    expect(mail!.text).toMatch(/password authentication failed/);
    expect(mail!.text).not.toContain(badPassword);
    await waitFor(() => count(backupLog(dir), /❌ Backup failed/) >= 1, 10_000, 'a FAILED line in backup.log');
    expect(backupLog(dir)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: ❌ Backup failed: .*password authentication failed/m);

    // The next ticks fail again; the daemon keeps running and does not mail every time.
    await waitFor(() => count(backupLog(dir), /❌ Backup failed/) >= 3, 15_000, 'more failed attempts');
    expect(d.child.exitCode).toBeNull();
    expect(d.output()).toContain('failure alert suppressed');
    expect(sink.mails).toHaveLength(1);
    expect(d.output()).not.toContain(badPassword);
    expect(backupLog(dir)).not.toContain(badPassword);
    await stopDaemon(d);
    expect(manifestsOnDisk(dir)).toEqual([]);
    expect(tempFiles(dir)).toEqual([]);
  });

  it('runs under pm2 with the repo ecosystem.config.js', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY });
    const { pm2, app } = pm2Sandbox(dir, env);
    await pm2('start', path.join(REPO, 'ecosystem.config.js'));
    const started = await app();
    expect(started?.pm2_env.status).toBe('online');
    expect(started?.pm2_env.pm_exec_path).toBe(path.join(REPO, 'dist/src/cli/main.js'));

    await waitFor(() => manifestsOnDisk(dir).length >= 1, 30_000, 'the catch-up backup under pm2');
    const backups = await listed(env);
    expect(backups).toHaveLength(1);
    expect(backups[0]!.trigger).toBe('catch-up');
    expect(backups[0]!.file.startsWith(path.join(dir, 'backups'))).toBe(true);

    await pm2('stop', 'basement-backup');
    const stopped = await app();
    expect(stopped?.pm2_env.status).toBe('stopped');
    expect(stopped?.pm2_env.restart_time).toBe(0);
    const jsonl = fs.readFileSync(path.join(dir, 'logs', 'basement-backup.jsonl'), 'utf8');
    expect(jsonl).toContain('daemon stopped');
    expect(tempFiles(dir)).toEqual([]);
  });
});

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { performBackup } from '../../src/backup/job';
import { acquireLock } from '../../src/lock/file-lock';
import { verifyBackup, verifyLockFile } from '../../src/restore/verify';
import { appFor } from '../helpers/app';
import { backupEnv, holdsFor, runCli, spawnCli, tempDir } from '../helpers/cli';
import { createTestDb, query } from '../helpers/pg';
import { startPingServer } from '../helpers/ping-server';
import { freePort } from '../../scripts/lib/cluster';

/** The check's secret part as the helper's URL has it: it must never reach a log. */
const CHECK = '0b5e4f7e-secret-check';

function logsOf(dir: string): string {
  const logs = path.join(dir, 'logs');
  return fs
    .readdirSync(logs)
    .map((f) => fs.readFileSync(path.join(logs, f), 'utf8'))
    .join('\n');
}

describe("BACKUP_PING_URL: a dead-man's switch", () => {
  it('a backup pings start, then success with the same rid and what it stored', async () => {
    const db = await createTestDb('ping');
    const server = await startPingServer();
    const dir = tempDir();
    const r = await runCli(['backup'], backupEnv(db, dir, { BACKUP_PING_URL: server.url }));
    expect(r.code, r.stderr).toBe(0);
    const [start, end] = await server.waitFor(2);
    expect(start).toMatchObject({ method: 'GET', path: `/ping/${CHECK}/start` });
    expect(start!.rid).toMatch(/^[0-9a-f-]{36}$/);
    expect(end).toMatchObject({ method: 'POST', path: `/ping/${CHECK}`, rid: start!.rid });
    expect(end!.body).toMatch(/^Backup completed: .*\.dump\.zst/);
    expect(server.received).toHaveLength(2);
  });

  it('a failing backup pings its exit code with the error and no password; the webhook gets the alert as JSON', async () => {
    const db = await createTestDb('pingfail');
    const server = await startPingServer();
    const hook = await startPingServer();
    const dir = tempDir();
    const password = 'not-the-password-x9';
    const env = backupEnv(db, dir, { BACKUP_PING_URL: server.url, BACKUP_WEBHOOK_URL: hook.url, DB_PASSWORD: password });
    const r = await runCli(['backup'], env);
    expect(r.code).toBe(11);
    const [start, end] = await server.waitFor(2);
    expect(end).toMatchObject({ method: 'POST', path: `/ping/${CHECK}/11`, rid: start!.rid });
    expect(end!.body).toMatch(/database login refused \(DB_AUTH\)/);
    expect(end!.body).toMatch(/What to do: .*DB_PASSWORD/);
    const [posted] = await hook.waitFor(1);
    expect(posted!.headers['content-type']).toMatch(/application\/json/);
    const alert = JSON.parse(posted!.body) as Record<string, unknown>;
    expect(alert).toMatchObject({ kind: 'backup-failed', database: db, code: 'DB_AUTH', exit_code: 11 });
    expect(alert.text).toMatch(/FAILED/);
    expect(alert.fix).toMatch(/DB_PASSWORD/);
    for (const text of [end!.body, posted!.body, logsOf(dir), r.stderr]) expect(text).not.toContain(password);
  });

  it('a backup refused by the lock (another run holds it) pings nothing: no start left without its end', async () => {
    const db = await createTestDb('pinglocked');
    const server = await startPingServer();
    const dir = tempDir();
    // in this process, as in the daemon, a ping started is sent (a CLI that exits at once may lose it)
    const app = appFor(backupEnv(db, dir, { BACKUP_PING_URL: server.url, BACKUP_STATE_DIR: path.join(dir, 'state') }));
    // held by this (live) process, as a running backup of the same database would hold it
    const lock = acquireLock(app.lockFile(db), `backup of ${db}`);
    try {
      await expect(performBackup(app, { trigger: 'manual' })).rejects.toMatchObject({ code: 'LOCKED' });
      await holdsFor(() => server.received.length === 0, 1000, 'no ping from a run refused by the lock');
    } finally {
      lock.release();
    }
  });

  it('a drill refused by the lock (another drill holds it) pings nothing either', async () => {
    const db = await createTestDb('pingdrilllocked');
    const server = await startPingServer();
    const dir = tempDir();
    const app = appFor(backupEnv(db, dir, { BACKUP_VERIFY_PING_URL: server.url, BACKUP_STATE_DIR: path.join(dir, 'state') }));
    const lock = acquireLock(verifyLockFile(app, db), `restore drill of ${db}`);
    try {
      await expect(verifyBackup(app, 'latest')).rejects.toMatchObject({ code: 'LOCKED' });
      await holdsFor(() => server.received.length === 0, 1000, 'no ping from a drill refused by the lock');
    } finally {
      lock.release();
    }
  });

  it('a ping server that never answers delays the backup by at most the deadline; the backup succeeds and the failure is logged without the URL', async () => {
    const db = await createTestDb('pinghang');
    const server = await startPingServer({ hang: true });
    const dir = tempDir();
    const r = await runCli(['backup'], backupEnv(db, dir, { BACKUP_PING_URL: server.url, BACKUP_PING_TIMEOUT_SECONDS: '2' }), { timeoutMs: 60_000 });
    const exitedAt = Date.now();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Backup completed/);
    // both pings arrived (the start one beside the work, the last one after it) and were given up on
    await server.waitFor(2);
    expect(server.received.map((x) => x.path)).toEqual([`/ping/${CHECK}/start`, `/ping/${CHECK}`]);
    expect(r.stderr).toMatch(/could not send the success ping .*no answer within/);
    expect(r.stderr).toContain(`url=http://127.0.0.1:`);
    expect(r.stderr + logsOf(dir)).not.toContain(CHECK);
    // the last ping was given up on after its 2 s: the process did not wait for the hung server beyond that
    expect(exitedAt - server.received[1]!.at).toBeLessThan(2000 + 5000);
    expect(exitedAt - server.received[1]!.at).toBeGreaterThanOrEqual(1900);
  });

  it('an URL that is not http(s) is a configuration error naming the variable', async () => {
    const db = await createTestDb('pingbad');
    const r = await runCli(['backup'], backupEnv(db, tempDir(), { BACKUP_PING_URL: 'hc-ping.com/abc' }));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/BACKUP_PING_URL: is not an http:\/\/ or https:\/\/ URL/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('BACKUP_VERIFY_PING_URL: the drills', () => {
  it('a restore drill pings start, then success with the same rid; a drill of a missing backup pings its exit code', async () => {
    const db = await createTestDb('pingdrill');
    const server = await startPingServer();
    const env = backupEnv(db, tempDir(), { BACKUP_VERIFY_PING_URL: server.url });
    expect((await runCli(['backup'], env)).code).toBe(0);
    expect(server.received).toHaveLength(0); // a backup does not use the drill's check
    const r = await runCli(['verify'], env);
    expect(r.code, r.stderr).toBe(0);
    const [start, end] = await server.waitFor(2);
    expect(start).toMatchObject({ path: `/ping/${CHECK}/start` });
    expect(end).toMatchObject({ method: 'POST', path: `/ping/${CHECK}`, rid: start!.rid });
    expect(end!.body).toMatch(/^Restore drill of .* passed/);
    const missing = await runCli(['verify', 'no-such-backup'], env);
    expect(missing.code).toBe(30);
    const [, , again, failed] = await server.waitFor(4);
    expect(failed).toMatchObject({ path: `/ping/${CHECK}/30`, rid: again!.rid });
    expect(failed!.body).toMatch(/^Restore drill failed: /);
  });
});

describe('the daemon with the webhook only', () => {
  it('says alerts go to the webhook only, not that alerts are off', async () => {
    const db = await createTestDb('webhookonly');
    const hook = await startPingServer();
    const d = spawnCli(['daemon'], backupEnv(db, tempDir(), { BACKUP_WEBHOOK_URL: hook.url, BACKUP_SCHEDULE: '0 0 1 1 *', BACKUP_CATCH_UP: 'false' }));
    await d.waitForOutput(/next scheduled backup at/);
    expect(d.output()).toContain('alerts go to the webhook only (BACKUP_WEBHOOK_URL)');
    expect(d.output()).toMatch(/alerts=webhook only/);
    expect(d.output()).not.toContain('email alerts are off: set SMTP_HOST');
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});

describe('the gate of backup --verify', () => {
  it('a stored backup whose gate drill fails (exit 37) pings /37, not success: the ping says how the command ended', async () => {
    const db = await createTestDb('pinggate');
    await query(db, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1)');
    const server = await startPingServer();
    const env = backupEnv(db, tempDir(), { BACKUP_PING_URL: server.url, VERIFY_DB_HOST: '127.0.0.1', VERIFY_DB_PORT: String(await freePort()) });
    const r = await runCli(['backup', '--verify'], env);
    expect(r.code, r.stderr).toBe(37);
    const [start, end] = await server.waitFor(2);
    expect(end).toMatchObject({ method: 'POST', path: `/ping/${CHECK}/37`, rid: start!.rid });
    expect(end!.body).toMatch(/^Backup completed: /);
    expect(end!.body).toContain('Backup gate failed: backup taken, but its restore drill failed (GATE_DRILL)');
    expect(server.received).toHaveLength(2);
  });
});

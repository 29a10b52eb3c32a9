import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/repository/manifest';
import { backupEnv, holdsFor, smtpEnv, spawnCli, tempDir, waitFor, type Spawned } from '../helpers/cli';
import { ageDays, backupsDir, cli, listNames } from '../helpers/damaged';
import { count, exactly, twoMoreChecks } from '../helpers/daemon';
import { createTestDb, query } from '../helpers/pg';
import { startPingServer } from '../helpers/ping-server';
import { smtpSink } from '../helpers/smtp';

const HOST = os.hostname();
/** Once a year: no scheduled run during a test, and no catch-up. */
const YEARLY = '0 0 1 1 *';
const HOUR = 3600_000;

/** The daemon checking every ~1 s, nothing scheduled, its debug lines (one per check) on stdout. */
function startDaemon(env: Record<string, string>): Spawned {
  return spawnCli(['daemon'], { ...env, BACKUP_SCHEDULE: YEARLY, BACKUP_CATCH_UP: 'false', BACKUP_CHECK_MINUTES: '0.02', LOG_LEVEL: 'debug' });
}

async function stop(d: Spawned): Promise<void> {
  d.child.kill('SIGTERM');
  expect(await d.exited, d.output().slice(-3000)).toBe(0);
}

/** Rewrites when a stored backup was taken (as a history of backups taken over time would have it). */
function takenAt(dir: string, m: Manifest, at: Date): void {
  const file = path.join(backupsDir(dir), `${m.id}.manifest.json`);
  const next = { ...(JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest), created_at: at.toISOString(), finished_at: at.toISOString() };
  fs.writeFileSync(file, JSON.stringify(next, null, 2) + '\n');
}

/** Sets the table `bulk` to `units` × ~1 MB of data that compresses little (md5 text). */
async function bulk(db: string, units: number): Promise<void> {
  await query(db, `CREATE TABLE IF NOT EXISTS bulk (id int, t text); TRUNCATE bulk`);
  if (units > 0) await query(db, `INSERT INTO bulk SELECT g, md5(random()::text) FROM generate_series(1, ${units * 60_000}) g`);
}

describe('early-warning alerts from the daemon', () => {
  it('stale: one warning with no scheduled run at all, one recovery after a good backup; both on the webhook too', async () => {
    const db = await createTestDb('ewstale');
    await query(db, 'CREATE TABLE t (id int); INSERT INTO t VALUES (1)');
    const dir = tempDir();
    const sink = await smtpSink();
    const hook = await startPingServer();
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), BACKUP_MAX_AGE_HOURS: '1', BACKUP_WEBHOOK_URL: hook.url });
    await cli(['backup'], env);
    const [m] = await listNames(env);
    ageDays(dir, m!, 2 / 24);

    const d = startDaemon(env);
    const title = `No recent backup of ${db} on local`;
    expect(await exactly(sink, d, 1)).toEqual([`[basement-backup] WARNING: ${title} on ${HOST}`]);
    expect(sink.mails[0]!.text).toMatch(new RegExp(`The newest good backup on local \\(${m!.id}\\) is 2h 0m old; the limit is 1h 0m\\.`));
    expect(sink.mails[0]!.text).toContain('What to do: Check that the daemon runs');

    await cli(['backup'], env);
    expect(await exactly(sink, d, 2)).toEqual([`[basement-backup] WARNING: ${title} on ${HOST}`, `[basement-backup] CLEARED: ${title} on ${HOST}`]);
    const posted = (await hook.waitFor(2)).map((r) => JSON.parse(r.body) as Record<string, unknown>);
    expect(posted[0]).toMatchObject({ kind: 'warning', code: 'stale', database: db, target: 'local', key: `stale:${db}:local` });
    expect(posted[0]!.fix).toMatch(/pm2 status/);
    expect(posted[1]).toMatchObject({ kind: 'warning-cleared', code: 'stale', target: 'local' });

    // a restart does not send it again: what was alerted is kept in the state directory
    await stop(d);
    const saved = path.join(dir, 'backups', '.basement-backup', 'monitor-alerts.json');
    expect(fs.statSync(saved).mode & 0o777).toBe(0o600);
    ageDays(dir, (await listNames(env))[0]!, 2 / 24);
    const again = startDaemon(env);
    await exactly(sink, again, 3);
    await stop(again);
    const restarted = startDaemon(env);
    await twoMoreChecks(restarted);
    await sink.settled();
    expect(sink.mails).toHaveLength(3);
    await stop(restarted);
  });

  it('size: one "unusual size" warning after a big table was emptied, one recovery at the next normal backup', async () => {
    const db = await createTestDb('ewsize');
    await bulk(db, 2);
    const dir = tempDir();
    const sink = await smtpSink();
    const env = backupEnv(db, dir, smtpEnv(sink.port));
    for (let i = 0; i < 3; i++) await cli(['backup'], env);
    const d = startDaemon(env);
    await twoMoreChecks(d);
    await sink.settled();
    expect(sink.mails).toHaveLength(0);

    await query(db, 'TRUNCATE bulk');
    await cli(['backup'], env);
    const [small] = await listNames(env);
    const title = `Backup size of ${db} is unusual`;
    expect(await exactly(sink, d, 1)).toEqual([`[basement-backup] WARNING: ${title} on ${HOST}`]);
    expect(sink.mails[0]!.text).toContain(`Backup ${small!.id} is`);
    expect(sink.mails[0]!.text).toContain('Check that no table was emptied or dropped by mistake');
    // kept, and shown as such by list and status (text and JSON)
    const rows = await listNames(env);
    expect(rows[0]!.size_anomaly).toMatchObject({ kind: 'small', median_bytes: expect.any(Number) as number });
    expect(rows[0]!.size_anomaly!.ratio).toBeLessThan(0.5);
    expect(rows.slice(1).map((r) => r.size_anomaly)).toEqual([null, null, null]);
    const list = await cli(['list'], env);
    expect(list.stdout).toMatch(new RegExp(`${small!.id} .*\\(!small\\)`));
    expect(list.stdout).toContain('(!small), (!large): below 0.5 or above 2 times the median size');
    const status = JSON.parse((await cli(['status', '--json'], env)).stdout) as { newest: { id: string; size_anomaly: { kind: string } | null } };
    expect(status.newest).toMatchObject({ id: small!.id, size_anomaly: { kind: 'small' } });
    expect((await cli(['status'], env)).stdout).toMatch(/UNUSUAL SIZE: (?:0\.\d\d|under 0\.01) times the median .*was a table emptied\?/);

    await bulk(db, 2);
    await cli(['backup'], env);
    expect((await exactly(sink, d, 2))[1]).toBe(`[basement-backup] CLEARED: ${title} on ${HOST}`);
    await stop(d);
  });

  it('disk: one warning when the growth of the last backups fills the disk within BACKUP_DISK_ALERT_DAYS, one recovery when it stops', async () => {
    const db = await createTestDb('ewdisk');
    const dir = tempDir();
    const sink = await smtpSink();
    // the free space here is what it is (tens of GB): ~1 MB an hour over 3 backups fills it within 10 years
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), BACKUP_DISK_ALERT_DAYS: '3650' });
    const now = Date.now();
    for (const units of [4, 5, 6]) {
      await bulk(db, units);
      await cli(['backup'], env);
    }
    const taken = (await listNames(env)).reverse();
    taken.forEach((m, i) => takenAt(dir, m, new Date(now - (3 - i) * HOUR)));

    const d = startDaemon(env);
    const title = 'The disk of local fills up within 3650 days';
    expect(await exactly(sink, d, 1)).toEqual([`[basement-backup] WARNING: ${title} on ${HOST}`]);
    // the test cluster's data directory is on the same disk as the backups, and the role may read
    // data_directory: the database's own growth (recorded by each backup) is counted too
    expect(sink.mails[0]!.text).toMatch(
      /At the growth of the last backups \([\d.]+ [kMG]B a day, [\d.]+ [kMG]?B of it PostgreSQL's data directory on the same disk\), the [\d.]+ [kMG]B free at .* last about \d+ days\./,
    );

    // the next backup is smaller (still above half the usual size): the backups no longer grow
    await bulk(db, 3);
    await cli(['backup'], env);
    expect(await exactly(sink, d, 2)).toEqual([`[basement-backup] WARNING: ${title} on ${HOST}`, `[basement-backup] CLEARED: ${title} on ${HOST}`]);
    await stop(d);
  });
});

describe('early warnings that must not page', () => {
  it('a new installation with no backup yet warns nothing before its maximum age has passed', async () => {
    const db = await createTestDb('ewnew');
    const dir = tempDir();
    const sink = await smtpSink();
    const d = startDaemon(backupEnv(db, dir, { ...smtpEnv(sink.port), BACKUP_MAX_AGE_HOURS: '1' }));
    await twoMoreChecks(d);
    await sink.settled();
    await holdsFor(() => sink.mails.length === 0, 500, 'no warning for a target that never held a backup yet');
    expect(d.output()).not.toMatch(/early warning: /);
    await stop(d);
  });
});

describe('the summary mail', () => {
  it('on BACKUP_SUMMARY_SCHEDULE: one mail (and post) per slot, covering the backups since the previous one', async () => {
    const db = await createTestDb('summary');
    await query(db, 'CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)');
    const dir = tempDir();
    const sink = await smtpSink();
    const hook = await startPingServer();
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), BACKUP_WEBHOOK_URL: hook.url, VERIFY_SCHEDULE: '0 4 * * 0' });
    await cli(['backup'], env);
    await cli(['verify'], env);
    const d = startDaemon({ ...env, BACKUP_SUMMARY_SCHEDULE: '*/3 * * * * *' });
    const summaries = () => sink.mails.filter((m) => /^\[basement-backup\] SUMMARY: /.test(m.subject ?? ''));
    await d.waitForOutput(/summary sent/, 30_000);
    await cli(['backup'], env);
    const [m] = await listNames(env);
    // the first summary that counts it: taken since the previous slot. On a fast machine the first
    // slot's period can hold the backup taken before the daemon started, so the summary is told by the
    // two good backups it sees, not only by 'Backups taken: 1'
    const countsNew = (text = '') => text.includes('Backups taken: 1 ') && text.includes('Target local: 2 good backup(s)');
    await waitFor(() => summaries().some((x) => countsNew(x.text)), 30_000, 'a summary counting the new backup');
    const mail = summaries().find((x) => countsNew(x.text))!;
    expect(mail.subject).toBe(`[basement-backup] SUMMARY: 1 backup(s) since ${new Date().toISOString().slice(0, 10)}, all well on ${HOST}`);
    expect(mail.text).toContain(`Database ${db}`);
    expect(mail.text).toMatch(/Size: newest [\d.]+ k?B, [+-][\d.]+ % since/);
    expect(mail.text).toMatch(/No drill in the period; the last restored in \d+s/);
    expect(mail.text).toMatch(/Target local: 2 good backup\(s\), [\d.]+ k?B stored; [\d.]+ [GT]B free/);
    expect(mail.text).toContain('No open warnings.');
    expect(mail.text).not.toContain(m!.id); // counts, not a list of ids
    const posted = hook.received.map((r) => JSON.parse(r.body) as { kind: string; title: string });
    expect(posted.filter((p) => p.kind === 'summary').length).toBeGreaterThanOrEqual(summaries().length - 1);
    // one mail per slot: the daemon's own count of summaries sent matches the mails
    await stop(d);
    await sink.settled();
    expect(summaries()).toHaveLength(count(d.output(), /summary sent/));
    expect(fs.statSync(path.join(dir, 'backups', '.basement-backup', 'monitor-summary.json')).mode & 0o777).toBe(0o600);
  });
});

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { freePort } from '../../scripts/lib/cluster';
import type { Manifest } from '../../src/repository/manifest';
import { backupEnv, runCli, smtpEnv, spawnCli, tempDir, type Spawned } from '../helpers/cli';
import { smallDb } from '../helpers/daemon';
import { startSmtpSink } from '../helpers/smtp';

/** Once a year: the previous scheduled time is long past, the next one far away. */
const YEARLY = '0 0 1 1 *';

/**
 * BACKUP_CONFIG_FILE with two targets: "first", an S3 endpoint that refuses connections (a
 * provider outage), and "second", a local directory.
 */
async function twoTargets(dir: string): Promise<string> {
  const file = path.join(dir, 'targets.json');
  const first = {
    name: 'first',
    type: 's3',
    endpoint: `http://127.0.0.1:${await freePort()}`,
    bucket: 'down',
    access_key_id: 'key-id',
    secret_access_key: 'secret-key',
    force_path_style: true,
  };
  fs.writeFileSync(file, JSON.stringify({ targets: [first, { name: 'second', type: 'local', path: path.join(dir, 'second') }] }));
  return file;
}

async function listOn(env: Record<string, string>, target: string): Promise<Manifest[]> {
  const r = await runCli(['list', '--json', '--target', target], env);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Manifest[];
}

async function stop(d: Spawned): Promise<void> {
  d.child.kill('SIGTERM');
  expect(await d.exited, d.output()).toBe(0);
}

/** A daily 6-field cron expression for `at` (UTC). */
function dailyAt(at: Date): string {
  return `${at.getUTCSeconds()} ${at.getUTCMinutes()} ${at.getUTCHours()} * * *`;
}

describe('several targets, the first unreachable', () => {
  it('the failure alert and status name the newest good backup on the second target', async () => {
    const sink = await startSmtpSink();
    onTestFinished(() => sink.close());
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_CONFIG_FILE: await twoTargets(dir) });
    const ok = await runCli(['backup'], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('Stored on: second.');
    const [m] = await listOn(env, 'second');

    const failed = await runCli(['backup'], { ...env, ...smtpEnv(sink.port), DB_PASSWORD: 'not-the-password-4711' });
    expect(failed.code).not.toBe(0);
    const [mail] = await sink.waitFor(1);
    expect(mail!.text).toContain(`Newest good backup: ${path.basename(m!.file)} (`);
    expect(mail!.text).toMatch(/\) on second, taken /);
    expect(mail!.text).not.toContain('There is no backup to restore from');

    const status = await runCli(['status', '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    const s = JSON.parse(status.stdout) as {
      newest: { id: string; target: string };
      count: number | null;
      error: string | null;
      targets: { name: string; count: number | null }[];
    };
    expect(s.newest).toMatchObject({ id: m!.id, target: 'second' });
    expect(s.count).toBeNull();
    expect(s.error).toMatch(/first/);
    expect(s.targets.map((t) => [t.name, t.count])).toEqual([
      ['first', null],
      ['second', 1],
    ]);
    const text = await runCli(['status'], env);
    expect(text.stdout).toMatch(new RegExp(`newest good backup *│ *${path.basename(m!.file)} \\(.*\\) on second,`));
    expect(text.stdout).toMatch(/good backups *│ *UNREACHABLE: /);
  });

  it('the daemon does not catch up when the second target holds a backup since the run that was due', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_CONFIG_FILE: await twoTargets(dir), BACKUP_SCHEDULE: YEARLY, VERIFY_SCHEDULE: 'off' });
    const ok = await runCli(['backup'], env);
    expect(ok.code, ok.stderr).toBe(0);
    const [m] = await listOn(env, 'second');

    const d = spawnCli(['daemon'], env);
    await d.waitForOutput(/nothing to catch up|backing up now/, 30_000);
    expect(d.output()).toContain(`has a backup (${m!.id} on second); nothing to catch up`);
    await stop(d);
    expect(d.output()).not.toMatch(/starting the catch-up run|backup started/);
  });
});

describe('restore drill catch-up at start', () => {
  it('a drill missed while the daemon was down runs at start; once it has run, the next start leaves it', async () => {
    const db = await smallDb();
    const dir = tempDir();
    // The last backup slot was 20 minutes ago, the last drill slot a moment ago; the backup was
    // taken between them (10 minutes ago), so the backup ran and the drill was missed.
    const now = Date.now();
    const drillDue = new Date(Math.floor((now - 2000) / 1000) * 1000);
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: dailyAt(new Date(now - 20 * 60_000)), VERIFY_SCHEDULE: dailyAt(drillDue) });
    const ok = await runCli(['backup'], env);
    expect(ok.code, ok.stderr).toBe(0);
    const [m] = await listOn(env, 'local');
    const manifestFile = path.join(dir, 'backups', `${m!.id}.manifest.json`);
    const taken = new Date(now - 10 * 60_000).toISOString();
    const stored = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Manifest;
    fs.writeFileSync(manifestFile, JSON.stringify({ ...stored, created_at: taken, finished_at: taken }, null, 2) + '\n');

    const d = spawnCli(['daemon'], env);
    await d.waitForOutput(/restore drill (passed|FAILED)|restore drill: .*nothing to catch up/, 40_000);
    expect(d.output()).toContain(`catch-up: the restore drill due at ${drillDue.toISOString()} did not run (last drill: never); drilling now`);
    expect(d.output()).toContain('restore drill: starting the catch-up run');
    expect(d.output()).toContain('restore drill passed');
    expect(d.output()).toContain('nothing to catch up'); // the backup it drilled was taken after the last backup slot
    expect(d.output()).not.toContain('backup: starting the catch-up run');
    await stop(d);

    const again = spawnCli(['daemon'], env);
    await again.waitForOutput(/restore drill: the one due at .* ran \(it ended .*\); nothing to catch up|drilling now/, 30_000);
    await stop(again);
    expect(again.output()).not.toContain('restore drill: starting');
  });
});

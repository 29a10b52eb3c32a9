/**
 * Issue 11: several databases from one daemon, from BACKUP_CONFIG_FILE's `databases:` list: each
 * on its own schedule and with its own retention, under pm2; `--db` required and checked.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/repository/manifest';
import { backupEnv, runCli, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { jsonLog, manifestsOnDisk as onDisk, pgDumpBlocked, smallDb } from '../helpers/daemon';
import { lockTable } from '../helpers/pg';
import { pm2Sandbox } from '../helpers/pm2';

const DAY = 86400_000;

function configFile(dir: string, one: string, two: string): string {
  const file = path.join(dir, 'backup.json');
  fs.writeFileSync(
    file,
    JSON.stringify({
      targets: [{ name: 'local', type: 'local', path: path.join(dir, 'backups') }],
      databases: [
        // short retention: backups older than a day go as soon as one newer exists
        { name: 'one', database: one, schedule: '*/4 * * * * *', verify_schedule: 'off', retention: { days: 1, min_count: 1 } },
        // long retention: nothing of the last 30 days goes
        { name: 'two', database: two, schedule: '*/6 * * * * *', verify_schedule: 'off', retention: { days: 30, min_count: 1 } },
      ],
    }),
  );
  return file;
}

async function cli(args: string[], env: Record<string, string>, expected = 0) {
  const r = await runCli(args, env);
  expect(r.code, `basement-backup ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(expected);
  return r;
}

/** The manifests in the local target, as stored. */
const manifestsOnDisk = (dir: string) => onDisk(dir) as unknown as Manifest[];

/** Rewrites a stored manifest as if the backup had been taken `days` earlier. */
function age(dir: string, m: Manifest, days: number): void {
  const file = path.join(dir, 'backups', `${m.id}.manifest.json`);
  const created = new Date(Date.parse(m.created_at) - days * DAY).toISOString();
  fs.writeFileSync(file, JSON.stringify({ ...m, created_at: created, finished_at: created }, null, 2));
}

describe('several databases from one daemon', () => {
  it('--db is required with several and checked; each database is backed up on its own schedule and retained by its own rules, under pm2', async () => {
    const [one, two] = [await smallDb(), await smallDb()];
    const dir = tempDir();
    const env = backupEnv('', dir, { DB_NAME: '', BACKUP_CONFIG_FILE: configFile(dir, one, two) });

    // without --db, or with a name not configured: exit 2 listing the databases, nothing written
    const missing = await cli(['backup'], env, 2);
    expect(missing.stderr).toMatch(/--db: is required: 2 databases are configured \(one, two\)/);
    expect((await cli(['--db', 'three', 'list'], env, 2)).stderr).toMatch(/--db: no database is named "three"[^]*The databases configured: one, two\./);
    expect(manifestsOnDisk(dir)).toEqual([]);

    // one backup of each by hand, made ten days old
    await cli(['--db', 'one', 'backup', '--label', 'old-one'], env);
    await cli(['--db', 'two', 'backup', '--label', 'old-two'], env);
    for (const m of manifestsOnDisk(dir)) age(dir, m, 10);
    const listed = JSON.parse((await cli(['--db', 'two', 'list', '--json'], env)).stdout) as Manifest[];
    expect(listed.map((m) => [m.database, m.label])).toEqual([[two, 'old-two']]);

    const { pm2, ecosystem, app } = pm2Sandbox(dir, env, { ownAppDir: true });
    await pm2('start', ecosystem);
    const since = (db: string) => manifestsOnDisk(dir).filter((m) => m.database === db && m.label === null);
    await waitFor(() => since(one).length >= 2 && since(two).length >= 2, 60_000, 'two backups of each database from the daemon');
    await pm2('stop', 'basement-backup');
    expect((await app())?.pm2_env.restart_time).toBe(0);

    const log = jsonLog(dir);
    // each on its own schedule, the log naming the database
    expect(log).toContain('next scheduled backup of one at');
    expect(log).toContain('next scheduled backup of two at');
    expect(log).toMatch(/backup of one: starting the schedule run/);
    expect(log).toMatch(/backup of two: starting the schedule run/);
    // one's old backup went (older than a day, newer ones exist); two's stays (younger than 30 days)
    const labels = manifestsOnDisk(dir).map((m) => m.label);
    expect(labels).not.toContain('old-one');
    expect(labels).toContain('old-two');
    // state is kept per database
    const state = path.join(dir, 'backups', '.basement-backup');
    expect(
      fs
        .readdirSync(state)
        .filter((f) => f.startsWith('state-'))
        .sort(),
    ).toEqual(['state-one.json', 'state-two.json']);

    // status: one line per database
    const status = await cli(['status'], env);
    expect(status.stdout).toMatch(/│ one +│ .*\.dump\.zst/);
    expect(status.stdout).toMatch(/│ two +│ .*\.dump\.zst/);
    const json = JSON.parse((await cli(['status', '--json'], env)).stdout) as { name: string; database: string; count: number }[];
    expect(json.map((s) => [s.name, s.database])).toEqual([
      ['one', one],
      ['two', two],
    ]);
  });

  it('a backup waiting for a BACKUP_MAX_PARALLEL place is not "skipped": its slots are logged as waiting, and it runs once the place is free', async () => {
    const [one, two] = [await smallDb(), await smallDb()];
    const dir = tempDir();
    const file = path.join(dir, 'backup.json');
    const every2s = { schedule: '*/2 * * * * *', verify_schedule: 'off' };
    fs.writeFileSync(
      file,
      JSON.stringify({
        targets: [{ name: 'local', type: 'local', path: path.join(dir, 'backups') }],
        databases: [
          { name: 'one', database: one, ...every2s },
          { name: 'two', database: two, ...every2s },
        ],
      }),
    );
    const env = backupEnv('', dir, { DB_NAME: '', BACKUP_CONFIG_FILE: file, BACKUP_MAX_PARALLEL: '1', BACKUP_CATCH_UP: 'false' });
    // one's pg_dump waits on a table lock: it holds the only place
    const lock = await lockTable(one, 'items');
    const d = spawnCli(['daemon'], env);
    await pgDumpBlocked(one);
    await d.waitForOutput(/backup of two waits: 1 backup\(s\) of other databases are running/);
    const waitingSlot = /backup of two: the run due at \S+ is the one still waiting for a place among BACKUP_MAX_PARALLEL=1: it starts once there is one/g;
    await waitFor(() => (d.output().match(waitingSlot) ?? []).length >= 2, 20_000, "two of two's slots passing while it waits");
    // from the moment two waits (on a slow machine two may have taken the place first, and skipped
    // a slot while its own backup ran: that skip is right)
    const waiting = d.output().search(/backup of two waits: 1 backup\(s\) of other databases are running/);
    expect(d.output().slice(waiting)).not.toMatch(/backup of two: skipped/);
    const twoBefore = manifestsOnDisk(dir).filter((m) => m.database === two).length;

    // the place comes free: the waiting backup runs
    await lock.release();
    await waitFor(() => manifestsOnDisk(dir).filter((m) => m.database === two).length > twoBefore, 30_000, "two's waiting backup");
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
  });
});

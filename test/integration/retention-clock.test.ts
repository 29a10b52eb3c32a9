import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/lib/cluster';
import type { Manifest } from '../../src/repository/manifest';
import { backupEnv, smtpEnv, tempDir } from '../helpers/cli';
import { ageDays, backupsDir, cli, listNames, objectsOf } from '../helpers/damaged';
import { createWebserverDb } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';

// Every path that deletes (or decides) by age goes through one clock check: this process's clock,
// stepped with libfaketime, against the database server's, which stays right.

const libfaketime = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/faketime/libfaketime.so.1'].find((f) => fs.existsSync(f));
/** This process (only) sees a clock 40 days ahead. */
const AHEAD = { LD_PRELOAD: libfaketime ?? '', FAKETIME: '+40d' };

/** Four backups minutes old, oldest first: two pinned (30 days and 3 days), two not. */
async function fourBackups(env: Record<string, string>): Promise<Manifest[]> {
  await cli(['backup', '--label', 'pinned-30d', '--keep', '30d'], env);
  await cli(['backup', '--label', 'pinned-3d', '--keep', '3d'], env);
  await cli(['backup', '--label', 'b3'], env);
  await cli(['backup', '--label', 'b4'], env);
  return (await listNames(env)).reverse();
}

function expectIntact(dir: string, backups: Manifest[]): void {
  for (const m of backups) expect(objectsOf(dir, m.id), `${m.label} kept`).toEqual(expect.arrayContaining([`${m.id}.manifest.json`, m.file]));
}

describe('one clock check for every path that deletes or chooses by age', () => {
  it.skipIf(!libfaketime)(
    'with the clock 40 days ahead, prune, prune --dry-run and the backup delete nothing, pinned backups included, and say why and the fix',
    async () => {
      const smtp = await smtpSink();
      const db = await createWebserverDb(5);
      const dir = tempDir();
      const env = backupEnv(db, dir, { BACKUP_RETENTION_DAYS: '7', BACKUP_RETENTION_MIN_COUNT: '1', ...smtpEnv(smtp.port) });
      const backups = await fourBackups(env);
      const before = fs.readdirSync(backupsDir(dir)).sort();

      const dry = await cli(['prune', '--dry-run'], { ...env, ...AHEAD }, 26);
      expect(dry.stderr).toMatch(
        /the clock cannot be trusted: this machine's clock is 40d 0h ahead of the database server's; prune would refuse and delete nothing on local \(by this clock 3 backup\(s\) would go, 2 of them pinned until a date it has passed\)/,
      );
      expect(dry.stderr).toMatch(/fix: .*timedatectl/);
      expect(dry.stdout).not.toContain('would delete');

      const pruned = await cli(['prune'], { ...env, ...AHEAD }, 26);
      expect(pruned.stderr).toMatch(
        /the clock cannot be trusted: this machine's clock is 40d 0h ahead of the database server's; retention deleted nothing on local \(by this clock 3/,
      );
      expect(pruned.stderr).toMatch(/fix: .*timedatectl/);
      expect(fs.readdirSync(backupsDir(dir)).sort()).toEqual(before);
      const mails = await smtp.waitFor(1);
      expect(mails[0]!.text).toMatch(/40d 0h ahead of the database server's/);

      // the same backups with the right clock: nothing is due, so the refusals came from the clock alone
      expect((await cli(['prune'], env)).stdout).toContain('0 deleted, 4 kept.');

      const backup = await cli(['backup', '--label', 'ahead'], { ...env, ...AHEAD });
      expect(backup.stderr).toMatch(/retention on local failed: this machine's clock is 40d 0h ahead of the database server's; retention deleted nothing/);
      expectIntact(dir, backups);
    },
  );

  it('a database server that cannot be asked for the time: prune deletes nothing that is due unless --trust-clock', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_RETENTION_DAYS: '7', BACKUP_RETENTION_MIN_COUNT: '1' });
    const backups = await fourBackups(env);
    const down = { ...env, DB_PORT: String(await freePort()), DB_CONNECT_TIMEOUT_SECONDS: '2' };
    // nothing due: the doubt is only a warning
    const nothingDue = await cli(['prune'], down);
    expect(nothingDue.stdout).toContain('0 deleted, 4 kept.');

    const old = ageDays(dir, backups[2]!, 20); // b3: due by any clock
    const refused = await cli(['prune'], down, 26);
    expect(refused.stderr).toMatch(
      /cannot compare this machine's clock with the database server's \(cannot connect to .*\); retention deleted nothing on local \(by this clock 1 backup\(s\) would go\)/,
    );
    expect(refused.stderr).toMatch(/fix: .*--trust-clock/);
    expectIntact(dir, backups);
    const dry = await cli(['prune', '--dry-run'], down, 26);
    expect(dry.stderr).toMatch(/prune would refuse and delete nothing on local/);

    // the operator has checked the clock
    expect((await cli(['prune', '--trust-clock'], down)).stdout).toContain('1 deleted, 3 kept.');
    expect(objectsOf(dir, old.id)).toEqual([]);
    expect(nothingDue.stderr).toMatch(/retention on local cannot trust the clock: cannot compare this machine's clock with the database server's/);
  });

  it.skipIf(!libfaketime)('with the clock 40 days ahead, sync still copies the pinned backups to the second target', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_RETENTION_DAYS: '7', BACKUP_RETENTION_MIN_COUNT: '1' });
    const backups = await fourBackups(env);
    const file = path.join(dir, 'targets.json');
    const targets = [
      { name: 'first', type: 'local', path: backupsDir(dir) },
      { name: 'second', type: 'local', path: path.join(dir, 'second') },
    ];
    fs.writeFileSync(file, JSON.stringify({ targets }));
    const both = { ...env, BACKUP_CONFIG_FILE: file };

    const synced = await cli(['sync', '--json'], { ...both, ...AHEAD });
    const copied = JSON.parse(synced.stdout) as { id: string; to: string; ok: boolean }[];
    expect(copied.filter((c) => c.ok && c.to === 'second').map((c) => c.id)).toEqual(expect.arrayContaining(backups.map((b) => b.id)));
    const second = await listNames(both, ['--target', 'second']);
    expect(second.map((m) => m.label).sort()).toEqual(['b3', 'b4', 'pinned-30d', 'pinned-3d']);
    expect(second.find((m) => m.label === 'pinned-30d')!.keep_until).toBe(backups[0]!.keep_until);
    expect(synced.stderr).toMatch(/this machine's clock is 40d 0h ahead of the database server's; sync copies every good backup a target lacks/);
  });
});

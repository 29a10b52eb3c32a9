import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backupEnv, spawnCli, tempDir, waitFor, type Spawned } from '../helpers/cli';
import { childrenNamed, manifestsOnDisk, pgDumpBlocked, smallDb } from '../helpers/daemon';
import { lockTable } from '../helpers/pg';

// The daemon runs under libfaketime: its wall clock (Date) follows the offset written to a file,
// while monotonic time (Node's timers) stays real, as with an NTP step or a resumed VM.

const HOUR_S = 3600;

function libfaketime(): string {
  const candidates = ['/usr/lib/faketime/libfaketime.so.1'];
  for (const d of fs.readdirSync('/usr/lib')) candidates.push(path.join('/usr/lib', d, 'faketime', 'libfaketime.so.1'));
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error('libfaketime is not installed (Debian/Ubuntu: apt-get install libfaketime); the clock-jump tests need it');
  return found;
}

/** A wall clock for the daemon that the test steps: `set(s)` puts it `s` seconds from the real time. */
function fakeClock(dir: string): { env: Record<string, string>; set(offsetSeconds: number): void } {
  const file = path.join(dir, 'faketime');
  const set = (s: number) => fs.writeFileSync(file, `${s >= 0 ? '+' : ''}${s}\n`);
  set(0);
  return {
    env: { LD_PRELOAD: libfaketime(), FAKETIME_TIMESTAMP_FILE: file, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' },
    set,
  };
}

/**
 * The slots the daemon started backups for, in order, from its "backup: starting the … run due at …"
 * lines. (Not the restore drill's: a step that crosses 04:00, the default VERIFY_SCHEDULE, also
 * catches up a drill, which depends on the hour the test runs at.)
 */
function runsStarted(d: Spawned): { trigger: string; slot: string }[] {
  return [...d.output().matchAll(/backup: starting the (schedule|catch-up) run due at (\S+)/g)].map((m) => ({ trigger: m[1]!, slot: m[2]! }));
}

async function stopDaemon(d: Spawned): Promise<void> {
  d.child.kill('SIGTERM');
  expect(await d.exited, d.output()).toBe(0);
}

describe('clock steps under the daemon (libfaketime)', () => {
  it('a forward step over the scheduled time runs that backup at once, as a catch-up, and pg_dump does not inherit the fake clock', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const clock = fakeClock(dir);
    // A daily slot six hours from now: without the step, nothing would run during the test.
    const slot = new Date(Math.ceil((Date.now() + 6 * HOUR_S * 1000) / 1000) * 1000);
    const schedule = `${slot.getUTCSeconds()} ${slot.getUTCMinutes()} ${slot.getUTCHours()} * * *`;
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: schedule, BACKUP_CATCH_UP: 'false', ...clock.env });
    const lock = await lockTable(db, 'items');
    const d = spawnCli(['daemon'], env);
    await d.waitForOutput(new RegExp(`next scheduled backup at ${slot.toISOString()}`));

    clock.set(6 * HOUR_S + 60); // a minute past the slot
    const stepped = Date.now();
    await pgDumpBlocked(db); // the backup started: pg_dump waits for the table lock
    expect(Date.now() - stepped).toBeLessThan(10_000);
    expect(d.output()).toContain(`the run due at ${slot.toISOString()} was missed`);
    expect(d.output()).toMatch(/the clock jumped forward by \d+s/);

    // pg_dump runs without LD_PRELOAD or FAKETIME_*.
    const dumps = childrenNamed(d.child.pid!, 'pg_dump');
    expect(dumps).toHaveLength(1);
    const environ = fs.readFileSync(`/proc/${dumps[0]}/environ`, 'utf8').split('\0');
    expect(environ.filter((e) => /^(LD_PRELOAD|FAKETIME)/.test(e))).toEqual([]);
    await lock.release();

    await waitFor(() => manifestsOnDisk(dir).length === 1, 30_000, 'the catch-up backup');
    const [backup] = manifestsOnDisk(dir);
    expect(backup!.trigger).toBe('catch-up');
    expect(Date.parse(backup!.created_at)).toBeGreaterThan(slot.getTime()); // taken on the stepped clock
    // the run is over and the next one is the slot of tomorrow: once
    await d.waitForOutput(new RegExp(`backup: next run at ${new Date(slot.getTime() + 24 * HOUR_S * 1000).toISOString()}`));
    expect(manifestsOnDisk(dir)).toHaveLength(1);
    expect(runsStarted(d)).toEqual([{ trigger: 'catch-up', slot: slot.toISOString() }]);
    await stopDaemon(d);
  });

  it('after a step back the slot that ran does not run again, and the next slot of the new clock still runs', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const clock = fakeClock(dir);
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: '*/10 * * * * *', BACKUP_CATCH_UP: 'false', ...clock.env });
    const d = spawnCli(['daemon'], env);
    /** The slot each backup stands for: the run starts within a second or two of it. */
    const slotsOfBackups = () =>
      manifestsOnDisk(dir)
        .map((b) => Math.floor(Date.parse(b.created_at) / 10_000) * 10_000)
        .sort((a, b) => a - b);

    // A small step back across the slot that just ran: it must not run twice.
    await waitFor(() => manifestsOnDisk(dir).length >= 1, 30_000, 'the first scheduled backup');
    const first = slotsOfBackups()[0]!;
    clock.set(-6);
    const second = first + 10_000;
    await waitFor(() => manifestsOnDisk(dir).length >= 2, 30_000, 'the next scheduled backup');
    expect(slotsOfBackups()).toEqual([first, second]);

    // A long step back (a clock that was an hour fast, corrected): the next slot of the new
    // clock runs, rather than an hour later.
    clock.set(-HOUR_S);
    const stepped = Date.now();
    await waitFor(() => manifestsOnDisk(dir).length >= 3, 30_000, 'a backup after the clock went back an hour');
    expect(Date.now() - stepped).toBeLessThan(20_000);
    const third = slotsOfBackups()[0]!;
    expect(third).toBeLessThan(first - HOUR_S * 1000 + 60_000);
    expect(d.output()).toMatch(new RegExp(`the clock went back by \\d+\\.\\ds; next run at ${new Date(second).toISOString()}`));
    expect(d.output()).toMatch(/the clock went back by \d+s; next run at/);
    await stopDaemon(d);

    const started = runsStarted(d);
    expect(new Set(started.map((r) => r.slot)).size).toBe(started.length); // no slot twice
    expect(started.map((r) => r.trigger)).toEqual(started.map(() => 'schedule'));
    expect(manifestsOnDisk(dir).every((b) => b.trigger === 'schedule')).toBe(true);
  });
});

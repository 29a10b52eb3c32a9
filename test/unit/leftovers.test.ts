import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { findTempDirs, privateTempDir, removeTempLeftovers } from '../../src/restore/temp-dirs';
import { StateStore } from '../../src/state/store';
import { LocalStorage } from '../../src/storage/local';
import { processStart } from '../../src/util/owner';
import { tempDir } from '../helpers/temp';
import { ConfigError } from '../../src/errors';

/** Another process that keeps running until the test ends (or `stop`). */
async function otherProcess(): Promise<{ pid: number; start: string; stop(): Promise<void> }> {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('spawn', resolve));
  const ended = new Promise((resolve) => child.once('exit', resolve));
  const stop = async () => {
    child.kill('SIGKILL');
    await ended;
  };
  onTestFinished(stop);
  return { pid: child.pid!, start: processStart(child.pid!)!, stop };
}

/** A pid that no process has now. */
function deadPid(): number {
  for (let pid = 4_000_000; ; pid--) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return pid;
    }
  }
}

describe('BACKUP_TEMP_DIR: the directories of restores and drills', () => {
  it('each names its command and database and records its owner; only those whose owner is gone are removed', async () => {
    const temp = tempDir();
    const mine = privateTempDir(temp, 'restore', 'app db');
    expect(path.basename(mine)).toMatch(/^basement-backup-restore-app_db-\w{6}$/);
    expect(fs.statSync(mine).mode & 0o777).toBe(0o700);
    const other = await otherProcess();
    const dir = (name: string, owner?: object, ageMs = 0) => {
      const p = path.join(temp, name);
      fs.mkdirSync(p, { mode: 0o700 });
      fs.writeFileSync(path.join(p, 'archive.dump'), 'plaintext');
      if (owner) fs.writeFileSync(path.join(p, 'owner.json'), JSON.stringify({ command: 'verify', database: 'app', host: os.hostname(), ...owner }));
      const t = new Date(Date.now() - ageMs);
      fs.utimesSync(p, t, t);
      return p;
    };
    const running = dir('basement-backup-verify-app-aaaaaa', { pid: other.pid, pid_start: other.start });
    const reused = dir('basement-backup-verify-app-bbbbbb', { pid: other.pid, pid_start: '1' });
    const dead = dir('basement-backup-verify-app-cccccc', { pid: deadPid() });
    const elsewhere = dir('basement-backup-verify-app-dddddd', { pid: deadPid(), host: 'another-host' });
    const legacyNew = dir('basement-backup-restore-eeeeee');
    const legacyOld = dir('basement-backup-restore-ffffff', undefined, 120_000);
    fs.mkdirSync(path.join(temp, 'someone-elses'));

    const found = new Map(findTempDirs(temp).map((t) => [t.path, t]));
    expect([...found.keys()].sort()).toEqual([mine, running, reused, dead, elsewhere, legacyNew, legacyOld].sort());
    expect(found.get(dead)).toMatchObject({ command: 'verify', database: 'app', running: false, bytes: expect.any(Number) as number });
    expect(found.get(mine)).toMatchObject({ command: 'restore', database: 'app db', running: true, pid: process.pid });

    expect(
      removeTempLeftovers(temp)
        .map((t) => t.path)
        .sort(),
    ).toEqual([reused, dead, legacyOld].sort());
    expect(fs.readdirSync(temp).sort()).toEqual(
      [mine, running, elsewhere, legacyNew]
        .map((p) => path.basename(p))
        .concat('someone-elses')
        .sort(),
    );
    await other.stop();
    expect(removeTempLeftovers(temp).map((t) => t.path)).toEqual([running]);
  });
  it('a BACKUP_TEMP_DIR that does not exist is a configuration error whose fix is the mkdir to run; nothing is created for it', () => {
    const missing = path.join(tempDir(), 'not-mounted', 'scratch');
    let thrown: unknown;
    try {
      privateTempDir(missing, 'verify', 'app');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).message).toContain(`cannot create a temporary directory in ${missing} (ENOENT)`);
    expect((thrown as ConfigError).hint).toContain(`mkdir -p -m 700 ${missing}`);
    expect(fs.existsSync(path.dirname(missing))).toBe(false);
  });
});

describe('local storage: temporary files carry their writer', () => {
  it('cleanupTemporary leaves the temporary file of another running process, and removes it once that process is gone', async () => {
    const dir = tempDir();
    const storage = new LocalStorage(dir);
    const other = await otherProcess();
    const final = 'app_20260101T020000Z.dump';
    const theirs = `.${final}.tmp-${other.pid}.${other.start}-0123456789ab`;
    const dead = `.${final}.tmp-${deadPid()}.1-0123456789ab`;
    const legacy = `.${final}.tmp-0123456789ab`;
    for (const n of [theirs, dead, legacy]) fs.writeFileSync(path.join(dir, n), 'partial');

    expect((await storage.listTemporary(() => true)).map((t) => [t.name, t.finalName, t.size, t.inUse]).sort()).toEqual(
      [
        [theirs, final, 7, true],
        [dead, final, 7, false],
        [legacy, final, 7, false],
      ].sort(),
    );
    expect((await storage.cleanupTemporary(() => true)).sort()).toEqual([dead, legacy].sort());
    expect(fs.readdirSync(dir)).toEqual([theirs]);
    await other.stop();
    expect(await storage.cleanupTemporary(() => true)).toEqual([theirs]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('the state directory: a write killed between its temporary file and the rename', () => {
  it('leaves a state-….json.tmp-<pid> that the next write removes once that pid is gone, never a running writer’s', async () => {
    const dir = tempDir();
    const other = await otherProcess();
    const dead = `state-app.json.tmp-${deadPid()}`;
    const running = `state-app.json.tmp-${other.pid}`;
    for (const n of [dead, running]) fs.writeFileSync(path.join(dir, n), '{"last_failure":');
    const store = new StateStore(dir);
    store.write('other', { last_failure: null, failure_streak: 0, last_alert_at: null });
    expect(fs.readdirSync(dir).sort()).toEqual([running, 'state-other.json'].sort());
    await other.stop();
    store.removeLeftovers();
    expect(fs.readdirSync(dir)).toEqual(['state-other.json']);
  });
});

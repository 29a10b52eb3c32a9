import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backupEnv, smtpEnv, spawnCli, tempDir, waitFor, type Spawned } from '../helpers/cli';
import { jsonLog } from '../helpers/daemon';
import { createWebserverDb, pgInfo, query } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';
import { backup, cleanUp, contents, databases, expectStoppedAndStarted, PM2, pm2In, STAMP, type Pm2 } from '../helpers/restore';

// restore --replace --app stopped by a signal while pm2 stops the app (which takes 3 s here): the
// signal waits until the app is back, and the restore says what is true.

/** How long the app takes to stop after pm2's SIGINT. */
const STOP_MS = 3000;

/** A live database with 12 users, a backup of it, and the dummy app on pm2 (slow to stop). */
async function setUp(extra: Record<string, string> = {}) {
  const main = pgInfo();
  const db = await createWebserverDb(12);
  cleanUp(main, db);
  const dir = tempDir();
  await backup(backupEnv(db, dir));
  await query(db, `INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
  const live = await contents(main, db);
  const pm2 = pm2In(dir);
  const appName = `shop-${crypto.randomBytes(3).toString('hex')}`;
  const before = await pm2.startApp(appName, main, db, { stopMs: STOP_MS });
  const env = backupEnv(db, dir, { ...pm2.env, ...extra });
  return { main, db, dir, live, pm2, appName, before, env };
}

/** Starts the restore, as from a shell, and waits until pm2 is stopping the app (pm2 stop is running). */
async function restoreUntilPm2Stops(env: Record<string, string>, pm2: Pm2, appName: string, pid: number): Promise<Spawned> {
  const r = spawnCli(['restore', '--replace', '--yes', '--app', appName], env, { detached: true });
  await waitFor(() => pm2.log().includes(`stop ${pid}`) || r.child.exitCode !== null, 60_000, 'pm2 to stop the app');
  expect(pm2.log(), r.output()).toContain(`stop ${pid}`);
  return r;
}

/** A pm2 that takes 3 s to start an app, and marks `started` when it begins. */
function slowStartPm2(started: string): string {
  const bin = path.join(tempDir(), 'pm2');
  fs.writeFileSync(bin, `#!/bin/sh\nif [ "$1" = start ]; then touch "${started}"; sleep 3; fi\nexec "${process.execPath}" "${PM2}" "$@"\n`, { mode: 0o700 });
  return bin;
}

/** What every stop during `pm2 stop` ends with: exit 24, the app running on the unchanged live database, the checked copy kept. */
async function expectStoppedBeforeTheSwitch(s: Awaited<ReturnType<typeof setUp>>, r: Spawned): Promise<void> {
  expect(await r.exited, r.output()).toBe(24);
  const out = r.output();
  expect(out).toContain('deferred until the switch is done');
  expect(out).toMatch(/basement-backup: interrupted: the restore was stopped before the switch/);
  expect(out).toMatch(new RegExp(`fix: "${s.db}" was not changed and the app was started again; the restored copy is in "${s.db}_restored_${STAMP}"`));
  expect(out).not.toContain('backup interrupted');
  expect(out).not.toContain('did not finish within');
  expect(out).not.toContain('could not stop');
  expect(out).not.toMatch(/at .*\.js:\d+/);
  expect(await contents(s.main, s.db)).toEqual(s.live);
  expect(await databases(s.main, `${s.db}_restored_`)).toHaveLength(1);
  await expectStoppedAndStarted(s.pm2, s.appName, s.before, 13);
}

describe('restore --replace --app stopped while pm2 stops the app', () => {
  it('Ctrl-C (SIGINT to the process group): deferred until the app is started again; exit 24, the live database unchanged', async () => {
    const s = await setUp();
    try {
      const r = await restoreUntilPm2Stops(s.env, s.pm2, s.appName, s.before.pid);
      r.ctrlC();
      await expectStoppedBeforeTheSwitch(s, r);
      expect(r.output()).toContain('SIGINT received during the switch');
    } finally {
      await s.pm2.kill();
    }
  });

  it('two SIGTERMs: the second is deferred too; the same end', async () => {
    const s = await setUp();
    try {
      const r = await restoreUntilPm2Stops(s.env, s.pm2, s.appName, s.before.pid);
      r.child.kill('SIGTERM');
      await r.waitForOutput(/SIGTERM received/);
      r.child.kill('SIGTERM');
      await expectStoppedBeforeTheSwitch(s, r);
      expect(r.output()).toContain('SIGTERM received during the switch');
      expect(r.output()).toContain('SIGTERM received again during the switch');
    } finally {
      await s.pm2.kill();
    }
  });

  it('Ctrl-C once the databases are switched (pm2 start slow): the switch finishes, exit 0, the old database kept despite --drop-old', async () => {
    const started = path.join(tempDir(), 'start-begun');
    const s = await setUp({ PM2_BIN: slowStartPm2(started) });
    try {
      const r = spawnCli(['restore', '--replace', '--yes', '--drop-old', '--app', s.appName], s.env, { detached: true });
      await waitFor(() => fs.existsSync(started) || r.child.exitCode !== null, 60_000, 'pm2 start to begin');
      r.ctrlC();
      expect(await r.exited, r.output()).toBe(0);
      const out = r.output();
      expect(out).toContain('SIGINT received during the switch: deferred until the switch is done and the app is started again');
      expect(out).toContain(`Note: The stop asked for during the switch waited until it was done: "${s.db}" is the restored database.`);
      expect(out).toMatch(new RegExp(`The previous database "(${s.db}_before_restore_${STAMP})" was not dropped \\(--drop-old\\)`));
      expect(await databases(s.main, `${s.db}_before_restore_`)).toHaveLength(1);
      expect(await databases(s.main, `${s.db}_restored_`)).toEqual([]);
      await expectStoppedAndStarted(s.pm2, s.appName, s.before, 12);
    } finally {
      await s.pm2.kill();
    }
  });

  it('a `pm2 stop` that fails after stopping the app: pm2 jlist is asked, and the switch goes on', async () => {
    const bin = path.join(tempDir(), 'pm2');
    fs.writeFileSync(
      bin,
      `#!/bin/sh\nif [ "$1" = stop ]; then "${process.execPath}" "${PM2}" "$@"; echo "[PM2][ERROR] lost the answer" >&2; exit 1; fi\nexec "${process.execPath}" "${PM2}" "$@"\n`,
      { mode: 0o700 },
    );
    const s = await setUp({ PM2_BIN: bin });
    try {
      const r = spawnCli(['restore', '--replace', '--yes', '--app', s.appName], s.env);
      expect(await r.exited, r.output()).toBe(0);
      expect(r.output()).toContain(`pm2 stop ${s.appName} failed: [PM2][ERROR] lost the answer, but pm2 lists the app as stopped: going on with the switch`);
      expect(await databases(s.main, `${s.db}_before_restore_`)).toHaveLength(1);
      await expectStoppedAndStarted(s.pm2, s.appName, s.before, 12);
    } finally {
      await s.pm2.kill();
    }
  });

  it('an app pm2 cannot start again is named loudly, with the command to start it: stderr, log and mail; exit 34', async () => {
    const sink = await smtpSink();
    const bin = path.join(tempDir(), 'pm2');
    // pm2 that stops, lists and kills, but refuses to start anything
    fs.writeFileSync(
      bin,
      `#!/bin/sh\nif [ "$1" = start ]; then echo "[PM2][ERROR] no start today" >&2; exit 1; fi\nexec "${process.execPath}" "${PM2}" "$@"\n`,
      {
        mode: 0o700,
      },
    );
    const s = await setUp({ ...smtpEnv(sink.port), PM2_BIN: bin });
    try {
      const r = await restoreUntilPm2Stops(s.env, s.pm2, s.appName, s.before.pid);
      r.ctrlC();
      expect(await r.exited, r.output()).toBe(34);
      expect(r.output()).toContain(`the pm2 app "${s.appName}" is STOPPED`);
      expect(r.output()).toContain(`start it with \`pm2 start ${s.appName}\``);
      expect(r.output()).toContain('no start today');
      expect(r.output()).not.toContain('backup interrupted');
      expect(await contents(s.main, s.db)).toEqual(s.live);
      expect((await s.pm2.app(s.appName))?.pm2_env.status).toBe('stopped');
      const [mail] = await sink.waitFor(1);
      expect(mail!.subject).toMatch(new RegExp(`PROBLEM: The pm2 app "${s.appName}" is STOPPED after a restore of ${s.db} `));
      expect(mail!.text).toContain(`pm2 start ${s.appName}`);
      expect(mail!.text).not.toContain('backup interrupted');
      expect(jsonLog(s.dir)).toContain(`pm2 start ${s.appName}`);
    } finally {
      await s.pm2.kill();
    }
  });
});

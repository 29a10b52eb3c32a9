import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { WEBSERVER_SCHEMA, webserverRows } from '../../scripts/lib/seed-db';
import { backupEnv, runCli, tempDir } from '../helpers/cli';
import { createWebserverDb, pgInfo, query } from '../helpers/pg';
import {
  backup,
  cleanUp,
  contents,
  databases,
  expectStoppedAndStarted,
  holdFirstCopy,
  on,
  pm2In,
  printedCounts,
  restoredInto,
  secondCluster,
  sql,
  STAMP,
  waitsForAHoldInACopy,
} from '../helpers/restore';

// restore --replace (pm2): the switch, its refusal without --yes, and a rollback; the other half is in
// restore-replace-faults.test.ts.

describe('restore --replace', () => {
  it('stops the pm2 app, makes the backup live, keeps the old database, starts the app; --drop-old drops it', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(20);
    cleanUp(main, db);
    const dir = tempDir();
    const atBackup = await contents(main, db);
    await backup(backupEnv(db, dir));
    await query(
      db,
      `DELETE FROM support_tickets WHERE id > 3; DELETE FROM session; INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`,
    );
    const afterBackup = await contents(main, db);

    const pm2 = pm2In(dir);
    const appName = `shop-${crypto.randomBytes(3).toString('hex')}`;
    try {
      const before = await pm2.startApp(appName, main, db);
      const env = backupEnv(db, dir, pm2.env);
      const r = await runCli(['restore', '--replace', '--yes', '--app', appName], env);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`pm2 app "${appName}" will be stopped for the switch and started again.`);
      expect(restoredInto(r)).toBe(db);
      const previous = /The previous database is kept as "([^"]+)"/.exec(r.stdout)?.[1];
      expect(previous).toMatch(new RegExp(`^${db}_before_restore_${STAMP}$`));
      expect(printedCounts(r.stdout)['public.session']).toEqual(['20', '20', 'ok']);

      expect(await contents(main, db)).toEqual(atBackup); // the deleted rows are back, the late row is gone
      expect(await contents(main, previous!)).toEqual(afterBackup);
      expect(await databases(main, `${db}_restored_`)).toEqual([]);
      const after = await expectStoppedAndStarted(pm2, appName, before, 20);

      // Again with --drop-old: the database replaced this time is dropped.
      await sql(main, 'postgres', `DROP DATABASE "${previous}" WITH (FORCE)`);
      await query(db, `INSERT INTO users (email, password_hash) VALUES ('again@example.test', 'x')`);
      const r2 = await runCli(['restore', '--replace', '--yes', '--drop-old', '--app', appName], env);
      expect(r2.code, r2.stderr).toBe(0);
      expect(r2.stderr).toContain(`The current "${db}" will be DROPPED.`);
      expect(r2.stdout).toContain('The previous database was dropped.');
      expect(await contents(main, db)).toEqual(atBackup);
      expect(await databases(main, db)).toEqual([db]);
      const again = await pm2.app(appName);
      expect(again?.pm2_env.status).toBe('online');
      expect(again!.pid).not.toBe(after.pid);
      expect(pm2.log().filter((l) => !l.startsWith('connected'))).toEqual([
        `start ${before.pid}`,
        `stop ${before.pid}`,
        `start ${after.pid}`,
        `stop ${after.pid}`,
        `start ${again!.pid}`,
      ]);
    } finally {
      await pm2.kill();
    }
  });

  it('without --yes and not on a terminal it refuses and changes nothing', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(10);
    cleanUp(main, db);
    const env = backupEnv(db, tempDir());
    await backup(env);
    await query(db, `DELETE FROM session`);
    const live = await contents(main, db);
    const dbsBefore = await databases(main, db);

    for (const args of [['--replace'], ['--replace', '--drop-old']]) {
      const r = await runCli(['restore', ...args], env);
      expect(r.code, r.stderr).toBe(4);
      expect(r.stderr).toContain('refusing to replace the live database without confirmation');
      expect(r.stderr).toContain('fix: Not on a terminal: add --yes to confirm.');
      expect(r.stdout).toBe('');
    }
    expect(await contents(main, db)).toEqual(live);
    expect(await databases(main, db)).toEqual(dbsBefore);
    // The lock was released: a restore right after works.
    const ok = await runCli(['restore', '--target-db', `${db}_after`], env);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('rolls back when the restored copy cannot be moved in: the old database is renamed back', async () => {
    // A prepared transaction in the restored copy makes its rename fail after the live database was moved aside.
    const c2 = await secondCluster({ max_prepared_transactions: '5' });
    const db = `shop_${crypto.randomBytes(4).toString('hex')}`;
    cleanUp(c2, db);
    await c2.createDatabase(db);
    await c2.query(db, WEBSERVER_SCHEMA + webserverRows(8) + waitsForAHoldInACopy(db));
    const dir = tempDir();
    const atBackup = await contents(c2, db);
    await backup(backupEnv(db, dir, on(c2)));
    await c2.query(db, `DELETE FROM session; INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
    const live = await contents(c2, db);

    const pm2 = pm2In(dir);
    const appName = `shop-${crypto.randomBytes(3).toString('hex')}`;
    let hold: { stop(): Promise<string | undefined> } | undefined;
    try {
      const before = await pm2.startApp(appName, c2, db);
      hold = holdFirstCopy(c2, `${db}_restored_`);
      const r = await runCli(['restore', '--replace', '--yes', '--app', appName], backupEnv(db, dir, { ...on(c2), ...pm2.env }));
      const held = await hold.stop();
      expect(held, 'the prepared transaction came too late').toBeDefined();
      expect(r.code, r.stderr).toBe(32);
      expect(r.stderr).toContain(`the switch to the restored database failed: database "${held}" is being accessed by other users`);
      expect(r.stderr).toContain(`fix: "${db}" is back as it was and the app was started again; the restored copy is in "${held}".`);
      expect(await contents(c2, db)).toEqual(live);
      expect(await contents(c2, held!)).toEqual(atBackup);
      expect(await databases(c2, `${db}_before_restore_`)).toEqual([]);
      await expectStoppedAndStarted(pm2, appName, before, 9);
    } finally {
      await hold?.stop();
      await pm2.kill();
    }
  });
});

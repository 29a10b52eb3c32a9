import crypto from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { WEBSERVER_SCHEMA, webserverRows } from '../../scripts/lib/seed-db';
import { compactTimestamp } from '../../src/repository/manifest';
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
  restoredInto,
  secondCluster,
  sql,
  STAMP,
  userTables,
} from '../helpers/restore';

// restore --replace when a step fails, what restore says, and restore --app; split from
// restore-replace.test.ts so the two halves run in parallel.

describe('restore --replace', () => {
  it('rolls back when the old database cannot be moved aside: live unchanged, app started again, restored copy kept', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(12);
    cleanUp(main, db);
    const dir = tempDir();
    const atBackup = await contents(main, db);
    await backup(backupEnv(db, dir));
    await query(db, `DELETE FROM session WHERE expire > now(); INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
    const live = await contents(main, db);

    const pm2 = pm2In(dir);
    const appName = `shop-${crypto.randomBytes(3).toString('hex')}`;
    try {
      const before = await pm2.startApp(appName, main, db);
      // Every name the old database could be moved to from now until 15 seconds after the last one is created is taken.
      const admin = new pg.Client({ host: main.host, port: main.port, user: main.user, password: main.password, database: 'postgres' });
      await admin.connect();
      const taken: string[] = [];
      try {
        for (let t = Date.now() - 1000; t < Date.now() + 15_000; t += 1000) {
          const name = `${db}_before_restore_${compactTimestamp(new Date(t)).toLowerCase()}`;
          await admin.query(`CREATE DATABASE "${name}"`);
          taken.push(name);
        }
      } finally {
        await admin.end();
      }
      const env = backupEnv(db, dir, pm2.env);
      const r = await runCli(['restore', '--replace', '--yes', '--app', appName], env);
      expect(r.code, r.stderr).toBe(32);
      expect(r.stderr).toMatch(/restore failed: the switch to the restored database failed: database ".*_before_restore_.*" already exists/);
      const restored = new RegExp(`fix: "${db}" was not changed and the app was started again; the restored copy is in "(${db}_restored_${STAMP})"`).exec(
        r.stderr,
      )?.[1];
      expect(restored, r.stderr).toBeDefined();
      expect(await contents(main, db)).toEqual(live);
      expect(await contents(main, restored!)).toEqual(atBackup);
      for (const name of taken) expect(await userTables(main, name)).toEqual([]);
      await expectStoppedAndStarted(pm2, appName, before, 13);
    } finally {
      await pm2.kill();
    }
  });
});

describe('restore says what is true', () => {
  /**
   * An index whose expression fails in any database but `db`, so pg_restore fails after all data
   * is loaded. With a database `<db>_hold` present it first waits (up to 30 s) until a prepared
   * transaction holds the copy, which then cannot be dropped.
   */
  const failsInACopy = (db: string) => `
    CREATE FUNCTION bb_only_here(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
    BEGIN
      IF current_database() = '${db}' THEN RETURN v; END IF;
      IF EXISTS (SELECT 1 FROM pg_database WHERE datname = '${db}_hold') THEN
        FOR i IN 1..600 LOOP
          EXIT WHEN EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE database = current_database());
          PERFORM pg_sleep(0.05);
        END LOOP;
      END IF;
      RAISE EXCEPTION 'bb test: this index cannot be built in a copy';
    END $f$;
    CREATE INDEX users_only_here ON users (bb_only_here(id));`;

  it('a failed --replace says whether the partial copy was dropped, and that the live database was not changed', async () => {
    const c2 = await secondCluster({ max_prepared_transactions: '5' });
    const db = `shop_${crypto.randomBytes(4).toString('hex')}`;
    cleanUp(c2, db);
    await c2.createDatabase(db);
    await c2.query(db, WEBSERVER_SCHEMA + webserverRows(8) + failsInACopy(db));
    const env = backupEnv(db, tempDir(), on(c2));
    await backup(env);
    await c2.query(db, `DELETE FROM session`);
    const live = await contents(c2, db);

    // pg_restore fails; the copy is dropped, and the message says so.
    const r = await runCli(['restore', '--replace', '--yes'], env);
    expect(r.code, r.stderr).toBe(32);
    const partial = new RegExp(
      `restore failed: pg_restore failed restoring into "(${db}_restored_${STAMP})": .*bb test: this index cannot be built in a copy`,
    ).exec(r.stderr)?.[1];
    expect(partial, r.stderr).toBeDefined();
    expect(r.stderr).toContain(`fix: Read pg_restore's messages above. The partly restored database "${partial}" was dropped again; "${db}" was not changed.`);
    expect(await databases(c2, db)).toEqual([db]);
    expect(await contents(c2, db)).toEqual(live);

    // A prepared transaction in the copy keeps it from being dropped: the message says so, and how to drop it.
    await c2.createDatabase(`${db}_hold`);
    const hold = holdFirstCopy(c2, `${db}_restored_`);
    try {
      const r2 = await runCli(['restore', '--replace', '--yes'], env);
      const held = await hold.stop();
      expect(held).toBeDefined();
      expect(r2.code, r2.stderr).toBe(32);
      expect(r2.stderr).toContain(`pg_restore failed restoring into "${held}"`);
      expect(r2.stderr).toMatch(
        new RegExp(
          `fix: Read pg_restore's messages above\\. The partly restored database "${held}" could NOT be dropped \\(.*prepared transactions\\): ` +
            `drop it with DROP DATABASE "${held}" WITH \\(FORCE\\); "${db}" was not changed\\.`,
        ),
      );
      expect(r2.stderr).not.toContain('removed again');
      expect(await databases(c2, `${db}_restored_`)).toEqual([held]);
      expect(await contents(c2, db)).toEqual(live);
    } finally {
      await hold.stop();
    }
  });

  it('--replace where the live database is gone says it will be created, and creates it', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(10);
    cleanUp(main, db);
    const env = backupEnv(db, tempDir());
    const atBackup = await contents(main, db);
    await backup(env);
    await sql(main, 'postgres', `DROP DATABASE "${db}" WITH (FORCE)`);

    const r = await runCli(['restore', '--replace', '--yes'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`There is no database "${db}" now: it will be created from the backup, and nothing is kept.`);
    expect(r.stderr).not.toContain('_before_restore_');
    expect(r.stdout).not.toContain('previous database');
    expect(restoredInto(r)).toBe(db);
    expect(await contents(main, db)).toEqual(atBackup);
    expect(await databases(main, db)).toEqual([db]);
  });

  it('a long database name: every database restore creates fits in 63 bytes, and is the name it reports', async () => {
    const main = pgInfo();
    const prefix = `long_${crypto.randomBytes(4).toString('hex')}_`;
    const db = `${prefix}${'ä'.repeat(24)}`; // 62 bytes
    cleanUp(main, prefix);
    await query('postgres', `CREATE DATABASE "${db}"`);
    await query(db, WEBSERVER_SCHEMA + webserverRows(6));
    const env = backupEnv(db, tempDir());
    const atBackup = await contents(main, db);
    await backup(env);
    await query(db, 'DELETE FROM session');
    const live = await contents(main, db);

    const copy = await runCli(['restore'], env);
    expect(copy.code, copy.stderr).toBe(0);
    const side = await runCli(['restore', '--table', 'users'], env);
    expect(side.code, side.stderr).toBe(0);
    const replaced = await runCli(['restore', '--replace', '--yes'], env);
    expect(replaced.code, replaced.stderr).toBe(0);
    const previous = /The previous database is kept as "([^"]+)"/.exec(replaced.stdout)?.[1];

    const created = [restoredInto(copy), restoredInto(side), previous!];
    expect(created[0]).toMatch(new RegExp(`^${prefix}ä+_restored_${STAMP}$`));
    expect(created[1]).toMatch(new RegExp(`^${prefix}ä+_tables_${STAMP}$`));
    expect(created[2]).toMatch(new RegExp(`^${prefix}ä+_before_restore_${STAMP}$`));
    for (const name of created) expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
    expect((await databases(main, prefix)).sort()).toEqual([db, ...created].sort());
    expect(await contents(main, created[0]!)).toEqual(atBackup);
    expect(await userTables(main, created[1]!)).toEqual(['public.users']);
    expect(await contents(main, created[2]!)).toEqual(live);
    expect(await contents(main, db)).toEqual(atBackup);
  });
});

describe('restore --app', () => {
  it('an app pm2 does not have is refused before anything is restored: exit 34, named, with the fix and no colour codes', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(8);
    cleanUp(main, db);
    const dir = tempDir();
    await backup(backupEnv(db, dir));
    const pm2 = pm2In(dir);
    const other = `shop-${crypto.randomBytes(3).toString('hex')}`;
    try {
      const before = await pm2.startApp(other, main, db);
      const env = backupEnv(db, dir, pm2.env);
      const dbsBefore = await databases(main, db);
      for (const args of [
        ['restore', '--replace', '--yes', '--app', 'nosuch'],
        ['restore', '--replace', '--app', 'nosuch', '--dry-run'],
      ]) {
        const started = Date.now();
        const r = await runCli(args, env);
        expect(r.code, r.stderr).toBe(34);
        expect(r.stderr).toContain(`basement-backup: cannot stop or start the app: pm2 has no app "nosuch" (its apps: ${other}); nothing was restored`);
        expect(r.stderr).toContain('fix: Give the name `pm2 list` shows with --app. pm2 keeps a list per user: run this as the user that owns');
        expect(r.stderr).not.toContain('\x1b');
        expect(r.stderr).not.toContain('will be stopped'); // found before the plan is shown
        expect(r.stdout).toBe('');
        expect(Date.now() - started).toBeLessThan(20_000);
      }
      expect(await databases(main, db)).toEqual(dbsBefore);
      const after = await pm2.app(other);
      expect(after?.pid).toBe(before.pid);
      expect(after?.pm2_env.status).toBe('online');

      // pm2 is not where PM2_BIN points, or not on the PATH: how to install it
      const gone = await runCli(['restore', '--replace', '--yes', '--app', other], { ...env, PM2_BIN: path.join(dir, 'nowhere', 'pm2') });
      expect(gone.code, gone.stderr).toBe(34);
      expect(gone.stderr).toContain(`pm2 jlist failed: ${path.join(dir, 'nowhere', 'pm2')} was not found`);
      expect(gone.stderr).toContain('npm install -g pm2');
      const noPath = await runCli(['restore', '--replace', '--yes', '--app', other], { ...env, PATH: path.join(dir, 'nowhere') });
      expect(noPath.code, noPath.stderr).toBe(34);
      expect(noPath.stderr).toContain('pm2 jlist failed: pm2 was not found on the PATH');
      expect(noPath.stderr).toContain('fix: Install pm2 for the user that runs the app (`npm install -g pm2`)');
      expect(await databases(main, db)).toEqual(dbsBefore);
    } finally {
      await pm2.kill();
    }
  });
});

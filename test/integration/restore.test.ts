import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { backupEnv, listJson, runCli, tempDir } from '../helpers/cli';
import { createTestDb, createWebserverDb, pgInfo, query } from '../helpers/pg';
import { backup, cleanUp, contents, databases, on, printedCounts, restoredInto, secondCluster, sql, STAMP } from '../helpers/restore';

// restore into a new database, and roles; --table and --dry-run are in restore-options.test.ts, --replace and --app in restore-replace.test.ts.

describe('restore into a new database', () => {
  it('restores the newest backup beside the live database, prints the counts, and refuses existing names and unknown ids', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(20);
    cleanUp(main, db);
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const atFirst = await contents(main, db);
    const first = await backup(env); // an older backup: "latest" must take the newer one
    await query(db, `INSERT INTO users (email, password_hash) VALUES ('second@example.test', 'x')`);
    const atBackup = await contents(main, db);
    const id = await backup(env);
    // The application keeps writing after the backup.
    await query(db, `INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x'); DELETE FROM session`);
    const live = await contents(main, db);
    const liveOid = (await query<{ oid: number }>('postgres', 'SELECT oid FROM pg_database WHERE datname = $1', [db]))[0]!.oid;

    const r = await runCli(['restore'], env);
    expect(r.code, r.stderr).toBe(0);
    const target = restoredInto(r);
    expect(target).toMatch(new RegExp(`^${db}_restored_${STAMP}$`));
    expect(r.stdout).toContain(`Restored ${id} (`);
    expect(r.stderr).toContain(`into the new database "${target}". "${db}" is not touched.`);
    const printed = printedCounts(r.stdout);
    expect(Object.keys(printed).sort()).toEqual(Object.keys(atBackup).sort());
    expect(printed['public.users']).toEqual(['21', '21', 'ok']);
    expect(printed['public.session']).toEqual(['20', '20', 'ok']);
    expect(printed['public.payments']).toEqual(['60', '60', 'ok']);
    expect(await contents(main, target)).toEqual(atBackup);
    expect(await contents(main, db)).toEqual(live);
    expect((await query<{ oid: number }>('postgres', 'SELECT oid FROM pg_database WHERE datname = $1', [db]))[0]!.oid).toBe(liveOid);

    // --target-db, and an older backup by its id
    const named = `${db}_copy`;
    const r2 = await runCli(['restore', first, '--target-db', named], env);
    expect(r2.code, r2.stderr).toBe(0);
    expect(restoredInto(r2)).toBe(named);
    expect(r2.stdout).toContain(`Restored ${first} (`);
    expect(printedCounts(r2.stdout)['public.users']).toEqual(['20', '20', 'ok']);
    expect(await contents(main, named)).toEqual(atFirst);

    // An existing database is never written into: neither the copy nor the live one.
    await query(named, `INSERT INTO users (email, password_hash) VALUES ('marker@example.test', 'x')`);
    const copyBefore = await contents(main, named);
    const dbsBefore = await databases(main, db);
    for (const existing of [named, db]) {
      const refused = await runCli(['restore', '--target-db', existing], env);
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toContain(`database "${existing}" already exists`);
      expect(refused.stderr).toContain('fix: Choose another --target-db; restore never writes into an existing database.');
      expect(refused.stdout).toBe('');
    }
    expect(await contents(main, named)).toEqual(copyBefore);
    expect(await contents(main, db)).toEqual(live);
    expect(await databases(main, db)).toEqual(dbsBefore);

    const unknown = await runCli(['restore', `${db}_20000101T000000Z`], env);
    expect(unknown.code, unknown.stderr).toBe(30);
    expect(unknown.stderr).toContain(`no good backup "${db}_20000101T000000Z" of ${db}`);
    expect(unknown.stderr).toContain(`fix: \`basement-backup list\` shows them; the newest: ${id}, `);
    expect(await databases(main, db)).toEqual(dbsBefore);
  });

  it('plain-format backups restore too', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(15);
    cleanUp(main, db);
    const env = backupEnv(db, tempDir(), { BACKUP_FORMAT: 'plain' });
    const atBackup = await contents(main, db);
    const id = await backup(env);
    const listed = await listJson<{ format: string; file: string }>(env);
    expect(listed[0]!.format).toBe('plain');
    expect(listed[0]!.file).toMatch(/\.sql\.zst$/);
    await query(db, `DELETE FROM support_tickets; INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
    const live = await contents(main, db);

    const r = await runCli(['restore', id], env);
    expect(r.code, r.stderr).toBe(0);
    const target = restoredInto(r);
    expect(target).toMatch(new RegExp(`^${db}_restored_${STAMP}$`));
    expect(printedCounts(r.stdout)['public.users']).toEqual(['15', '15', 'ok']);
    expect(await contents(main, target)).toEqual(atBackup);
    expect(await contents(main, db)).toEqual(live);

    // and can replace the live database (the copy goes first: a restore in the same second would want its name)
    await sql(main, 'postgres', `DROP DATABASE "${target}"`);
    const replaced = await runCli(['restore', '--replace', '--yes'], env);
    expect(replaced.code, replaced.stderr).toBe(0);
    const previous = /The previous database is kept as "([^"]+)"/.exec(replaced.stdout)?.[1];
    expect(previous).toMatch(new RegExp(`^${db}_before_restore_${STAMP}$`));
    expect(await contents(main, db)).toEqual(atBackup);
    expect(await contents(main, previous!)).toEqual(live);
  });
});

describe('restore and roles', () => {
  it('fails cleanly when a role is missing, and --with-roles on a fresh server recreates it', async () => {
    const main = pgInfo();
    const role = `bb_owner_${crypto.randomBytes(4).toString('hex')}`;
    const db = await createTestDb('roles');
    cleanUp(main, db, [role]);
    await query(
      db,
      `CREATE ROLE ${role} NOLOGIN;
       CREATE TABLE things (id int PRIMARY KEY, name text);
       INSERT INTO things SELECT g, 'thing ' || g FROM generate_series(1, 25) g;
       ALTER TABLE things OWNER TO ${role};
       CREATE TABLE plain (id int);
       INSERT INTO plain VALUES (1), (2);`,
    );
    const atBackup = await contents(main, db);
    const dir = tempDir();
    await backup(backupEnv(db, dir));

    // A fresh server without the role: pg_restore fails on the owner, nothing is left behind.
    const c2 = await secondCluster();
    const fresh = backupEnv(db, dir, on(c2));
    const systemDbs = await databases(c2, '');
    // a fresh server is another cluster than the one the backup was taken on: the operator says so
    const r = await runCli(['restore', '--from-other-server'], fresh);
    expect(r.code, r.stderr).toBe(32);
    expect(r.stderr).toMatch(new RegExp(`restore failed: pg_restore failed restoring into "${db}_restored_${STAMP}": .*role "${role}" does not exist`));
    expect(r.stderr).toContain('fix: The dump refers to roles this server lacks: add --with-roles to recreate them first.');
    expect(await databases(c2, '')).toEqual(systemDbs);

    // The same on this server once the role is gone.
    await query(db, `REASSIGN OWNED BY ${role} TO ${main.user}; DROP OWNED BY ${role}`);
    await query('postgres', `DROP ROLE ${role}`);
    const dbsBefore = await databases(main, db);
    const r2 = await runCli(['restore'], backupEnv(db, dir));
    expect(r2.code, r2.stderr).toBe(32);
    expect(r2.stderr).toContain(`role "${role}" does not exist`);
    expect(r2.stderr).toContain('add --with-roles');
    expect(await databases(main, db)).toEqual(dbsBefore);

    // --with-roles onto the fresh server.
    const r3 = await runCli(['restore', '--with-roles', '--from-other-server'], fresh);
    expect(r3.code, r3.stderr).toBe(0);
    expect(r3.stdout).toMatch(new RegExp(`Recreated roles: (.*, )?${role}(,|\\.)`));
    expect(r3.stdout).not.toMatch(/Recreated roles: (.*, )?postgres(,|\.)/);
    const target = restoredInto(r3);
    expect(await c2.query('postgres', 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [role])).toEqual([{ rolcanlogin: false }]);
    expect(await c2.query(target, `SELECT tableowner FROM pg_tables WHERE tablename = 'things'`)).toEqual([{ tableowner: role }]);
    expect(await contents(c2, target)).toEqual(atBackup);
    // The existing superuser kept its password: this connection still logs in with the old one.
    expect(await c2.query('postgres', 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
  });
});

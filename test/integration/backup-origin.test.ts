/**
 * Issue 19, item 4: a backup records which PostgreSQL server it was taken on (its system
 * identifier), and restore and verify refuse one from another server unless told: two servers'
 * databases of one name sharing a target (through a symlink, which the configuration check now
 * catches too) restored the other server's data, and with --replace would have replaced the live
 * database with it.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { startCluster } from '../../scripts/lib/cluster';
import { WEBSERVER_SCHEMA, webserverRows } from '../../scripts/lib/seed-db';
import type { Manifest } from '../../src/repository/manifest';
import { backupEnv, listJson, runCli, tempDir } from '../helpers/cli';
import { createWebserverDb, query, tableCounts } from '../helpers/pg';

async function cli(args: string[], env: Record<string, string>, expected: number) {
  const r = await runCli(args, env);
  expect(r.code, `basement-backup ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(expected);
  return r;
}

describe('a backup taken on another server', () => {
  it('is refused by restore (also --replace) and verify, warned by --dry-run, taken with --from-other-server; a backup that does not say is restored as before', async () => {
    const db = await createWebserverDb(5);
    const before = await tableCounts(db);
    const other = await startCluster();
    onTestFinished(() => other.stop());
    // the other server has a database of the same name, with other data
    await other.query('postgres', `CREATE DATABASE "${db}"`);
    await other.query(db, WEBSERVER_SCHEMA + webserverRows(2));
    const dir = tempDir();
    const here = backupEnv(db, dir);
    const there = { ...here, DB_HOST: other.host, DB_PORT: String(other.port), DB_USER: other.user, DB_PASSWORD: other.password };

    await cli(['backup'], there, 0);
    const [theirs] = await listJson<Manifest>(here);
    const sysid = 'SELECT system_identifier::text AS id FROM pg_control_system()';
    const theirId = (await other.query<{ id: string }>('postgres', sysid))[0]!.id;
    const ourId = (await query<{ id: string }>('postgres', sysid))[0]!.id;
    expect(theirs!.system_identifier).toBe(theirId);
    expect(theirId).not.toBe(ourId);

    const databases = async () =>
      (await query<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE datname LIKE $1`, [`${db}%`])).map((r) => r.datname);
    for (const args of [['restore'], ['restore', '--replace', '--yes']]) {
      const r = await cli(args, here, 4);
      expect(r.stderr).toContain(`backup ${theirs!.id} was taken on another PostgreSQL server (system identifier ${theirId})`);
      expect(r.stderr).toMatch(/fix: .*--from-other-server/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
    expect(await databases()).toEqual([db]);
    expect(await tableCounts(db)).toEqual(before);

    const plan = await cli(['restore', '--replace', '--dry-run'], here, 0);
    expect(plan.stderr).toMatch(/the restore will be refused: backup .* was taken on another PostgreSQL server/);

    const drill = await cli(['verify'], here, 4);
    expect(drill.stderr).toContain('was taken on another PostgreSQL server');
    expect((await listJson<Manifest>(here))[0]!.verification).toBeUndefined();
    await cli(['verify', '--from-other-server'], here, 0);

    const taken = await cli(['restore', '--from-other-server', '--target-db', `${db}_theirs`], here, 0);
    expect(taken.stdout).toContain(`into "${db}_theirs"`);
    expect((await tableCounts(`${db}_theirs`))['public.users']).toBe(2);
    await query('postgres', `DROP DATABASE "${db}_theirs"`);

    // a role that may not read the identifier: the backup does not record it, and is not checked
    await other.query(db, `REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC`); // function privileges are per database
    await other.query('postgres', `CREATE ROLE reader LOGIN PASSWORD 'reader-pw'`);
    await other.query('postgres', `GRANT pg_read_all_data TO reader`); // no GRANT in the dump, which this server could not restore
    await cli(['backup'], { ...there, DB_USER: 'reader', DB_PASSWORD: 'reader-pw' }, 0);
    const [unsaid] = await listJson<Manifest>(here);
    expect(unsaid!.id).not.toBe(theirs!.id);
    expect(unsaid).not.toHaveProperty('system_identifier');
    await cli(['restore', '--target-db', `${db}_unsaid`], here, 0);
    await query('postgres', `DROP DATABASE "${db}_unsaid"`);
  }, 240_000);
});

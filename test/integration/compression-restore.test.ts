import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeHasZstd } from '../../src/compress/compression';
import type { Manifest } from '../../src/repository/manifest';
import { backupEnv, listJson, runCli, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { jsonLog } from '../helpers/daemon';
import { flipByte } from '../helpers/damaged';
import { bucket, cli } from '../helpers/offsite';
import { createTestDb, createWebserverDb, pgInfo, query } from '../helpers/pg';
import { cleanUp, contents, databases, restoredInto } from '../helpers/restore';

type Listed = Manifest & { state: string };

/** Names of what is left in a BACKUP_TEMP_DIR. */
const leftIn = (dir: string) => fs.readdirSync(dir);

describe('compression: parallel restores, faults, and no zstd program', () => {
  it('zstd in every restore mode: --table and --replace, with a parallel pg_restore reading a decompressed copy', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(15);
    cleanUp(main, db);
    const dir = tempDir();
    const temp = tempDir();
    const s3 = await bucket();
    const env = backupEnv(db, dir, { ...s3.env('modes/'), BACKUP_TEMP_DIR: temp });
    const atBackup = await contents(main, db);
    await cli(['backup'], env);
    await query(db, `UPDATE users SET email = 'changed-' || email; DELETE FROM support_tickets`);

    const one = await runCli(['restore', '--table', 'public.users', '--jobs', '2', '--target', 's3'], env);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toContain('(2 pg_restore jobs)');
    expect(await contents(main, restoredInto(one))).toEqual({ 'public.users': atBackup['public.users'] });

    const replaced = await runCli(['restore', '--replace', '--yes', '--jobs', '2'], env);
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(replaced.stdout).toContain('(2 pg_restore jobs)');
    expect(await contents(main, db)).toEqual(atBackup);
    expect(leftIn(temp)).toEqual([]);

    // a BACKUP_TEMP_DIR that cannot be used: exit 2 naming it, the new database dropped again
    const unusable = await runCli(['restore', '--jobs', '2'], { ...env, BACKUP_TEMP_DIR: path.join(temp, 'missing') });
    expect(unusable.code, unusable.stderr).toBe(2);
    expect(unusable.stderr).toMatch(/BACKUP_TEMP_DIR: cannot create a temporary directory in \S+missing \(ENOENT\)/);
    expect(unusable.stderr).not.toMatch(/at .*\.js:\d+/);
    expect(await databases(main, `${db}_restored`)).toHaveLength(0);

    // no room for the copy (the reserve is larger than the disk): single-job, said so
    const tight = await runCli(['restore', '--jobs', '2'], { ...env, BACKUP_MIN_FREE_MB: '10000000' });
    expect(tight.code, tight.stderr).toBe(0);
    expect(tight.stdout).toMatch(/Note: restored single-job: .* free, and a decompressed copy needs .* plus the .* reserve/);
    expect(tight.stdout).not.toContain('pg_restore jobs');
    expect(await contents(main, restoredInto(tight))).toEqual(atBackup);
  });

  it('a damaged zstd backup fails the restore before pg_restore starts (exit 31), and the temporary copy is removed', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(10);
    cleanUp(main, db);
    const dir = tempDir();
    const temp = tempDir();
    const env = backupEnv(db, dir, { BACKUP_TEMP_DIR: temp });
    await cli(['backup'], env);
    const [m] = await listJson<Listed>(env);
    flipByte(m!.file);
    const r = await runCli(['restore', '--jobs', '2'], env);
    expect(r.code, r.stderr).toBe(31);
    expect(r.stderr).toContain('does not match its manifest');
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
    expect(await databases(main, `${db}_restored`)).toEqual([]);
    expect(leftIn(temp)).toEqual([]);
  });

  it('SIGTERM during a parallel restore stops it: exit 24, the partial database dropped, the temporary copy removed', async () => {
    const main = pgInfo();
    const db = await createTestDb('sigterm');
    cleanUp(main, db);
    await query(db, `CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, md5((-g)::text) AS b FROM generate_series(1, 600000) g`);
    await query(db, `CREATE INDEX ON big (a); CREATE INDEX ON big (b)`);
    const dir = tempDir();
    const temp = tempDir();
    const env = backupEnv(db, dir, { BACKUP_TEMP_DIR: temp, BACKUP_DIGEST: 'counts' });
    await cli(['backup'], env);
    const live = await contents(main, db);

    const restore = spawnCli(['restore', '--jobs', '2', '--yes'], env);
    // the copy is written, and pg_restore is at work in the new database
    await waitFor(async () => leftIn(temp).length > 0 && (await databases(main, `${db}_restored`)).length > 0, 30_000, 'the restore to start');
    await waitFor(
      async () =>
        ((
          await query<{ n: number }>('postgres', `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'basement-backup pg_restore%'`)
        )[0]!.n ?? 0) > 0,
      30_000,
      'pg_restore',
    );
    restore.child.kill('SIGTERM');
    expect(await restore.exited, restore.output()).toBe(24);
    expect(restore.output()).toContain('SIGTERM received: stopping and cleaning up');
    expect(restore.output()).toContain('basement-backup: interrupted: the restore was stopped');
    expect(restore.output()).not.toContain('backup interrupted');
    expect(restore.output()).not.toMatch(/at .*\.js:\d+/);
    expect(leftIn(temp)).toEqual([]);
    expect(await databases(main, `${db}_restored`)).toEqual([]);
    expect(await contents(main, db)).toEqual(live);
  });

  it('without the zstd program: Node’s zstd where it has one, else gzip with one warning and a config check that says how to install zstd', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(6);
    cleanUp(main, db);
    const dir = tempDir();
    // a PATH with the PostgreSQL tools and node only
    const bin = path.join(tempDir(), 'bin');
    fs.mkdirSync(bin);
    for (const tool of ['pg_dump', 'pg_dumpall', 'pg_restore', 'psql']) fs.symlinkSync(path.join(pgInfo().binDir, tool), path.join(bin, tool));
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    const env: Record<string, string> = { ...backupEnv(db, dir), PATH: bin };
    delete env.PG_BIN_DIR;
    const r = await runCli(['backup'], env);
    expect(r.code, r.stderr).toBe(0);
    const [m] = await listJson<Listed>(env);
    const check = await runCli(['config', 'check'], env);
    if (nodeHasZstd()) {
      expect(path.basename(m!.file)).toMatch(/\.dump\.zst$/);
      expect(r.stderr).not.toContain('zstd is not available');
      expect(check.stdout).toMatch(/compression\s*│\s*ok\s*│\s*zstd:1, in the stream by Node v[\d.]+'s zstd/);
    } else {
      expect(path.basename(m!.file)).toMatch(/\.dump$/);
      expect(m!.compression).toBe('gzip');
      expect(r.stderr.match(/zstd is not available/g)).toHaveLength(1);
      expect(check.stdout).toMatch(/compression\s*│\s*WARN\s*│\s*gzip, by pg_dump/);
      expect(check.stdout).toContain('apt-get install zstd');
    }
    const restored = await runCli(['restore'], env);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await contents(main, restoredInto(restored))).toEqual(await contents(main, db));
  });

  it.skipIf(nodeHasZstd())('a .zst backup where there is no zstd at all: restore and verify refuse before they create a database', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(4);
    cleanUp(main, db);
    const dir = tempDir();
    const env = backupEnv(db, dir);
    await cli(['backup'], env);
    // no zstd program on PATH (the PostgreSQL tools come from PG_BIN_DIR), and this Node has no zstd
    const noZstd = { ...env, PATH: tempDir() };
    const before = await databases(main, db);

    const r = await runCli(['restore', '--yes'], noZstd);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(
      /\.dump\.zst is compressed with zstd, and neither the zstd program nor a Node with zstd \(22\.15\+\) is here\n {2}fix: Install zstd/,
    );
    // refused before the plan was shown and a database created (and dropped again)
    expect.soft(r.stderr).not.toMatch(/into the new database|partly restored|dropped/);
    expect.soft(await databases(main, db)).toEqual(before);

    const v = await runCli(['verify'], noZstd);
    expect(v.code, v.stderr).toBe(2);
    expect(v.stderr).toContain('is compressed with zstd, and neither the zstd program nor a Node with zstd');
    expect(jsonLog(dir)).not.toMatch(/scratch database|"restoring"/);
  });
});

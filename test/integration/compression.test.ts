import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { nodeHasZstd } from '../../src/compress/compression';
import { digestTables, type DigestMethod, type TableDigests } from '../../src/digest/table-digests';
import { listUserTables } from '../../src/pg/catalog';
import type { Manifest } from '../../src/storage/manifest';
import { backupEnv, listJson, runCli, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { flipByte } from '../helpers/damaged';
import { bucket, cli } from '../helpers/offsite';
import { createTestDb, createWebserverDb, pgInfo, query } from '../helpers/pg';
import { cleanUp, contents, databases, restoredInto } from '../helpers/restore';

type Listed = Manifest & { state: string };

/** Runs the manifest's restore_command (in the file's directory) against the test cluster; returns the new database. */
async function restoreByHand(m: Listed, identity?: string): Promise<string> {
  const target = await createTestDb('byhand');
  const info = pgInfo();
  const command = m
    .restore_command!.replace(/^createdb NEWDB && /, '')
    .replaceAll('NEWDB', target)
    .replace('IDENTITY_FILE', identity ?? '');
  execFileSync('bash', ['-o', 'pipefail', '-c', `${command} >/dev/null`], {
    cwd: path.dirname(m.file),
    env: { PATH: `${info.binDir}:${process.env.PATH}`, PGHOST: info.host, PGPORT: String(info.port), PGUSER: info.user, PGPASSWORD: info.password },
  });
  return target;
}

/** Content digests of every user table of `database`, computed by `method`. */
async function digestsOf(database: string, method: DigestMethod): Promise<TableDigests> {
  const info = pgInfo();
  const client = new pg.Client({ host: info.host, port: info.port, user: info.user, password: info.password, database });
  await client.connect();
  try {
    return await digestTables(client, await listUserTables(client), 'full', { method, autocommit: true });
  } finally {
    await client.end();
  }
}

/** Names of what is left in a BACKUP_TEMP_DIR. */
const leftIn = (dir: string) => fs.readdirSync(dir);

describe('compression', () => {
  const cases = [
    { format: 'custom', compression: undefined, file: /\.dump\.zst$/, recorded: 'zstd:1' },
    { format: 'custom', compression: 'gzip:1', file: /\.dump$/, recorded: 'gzip:1' },
    { format: 'custom', compression: 'none', file: /\.dump$/, recorded: 'none' },
    { format: 'plain', compression: undefined, file: /\.sql\.zst$/, recorded: 'zstd:1' },
    { format: 'plain', compression: 'gzip', file: /\.sql\.gz$/, recorded: 'gzip:6' },
    { format: 'plain', compression: 'none', file: /\.sql$/, recorded: 'none' },
  ] as const;

  it.each(cases)(
    '$format format, BACKUP_COMPRESSION=$compression: stored as named, opened by the standard command it records, restored and drilled from local and S3',
    async ({ format, compression, file, recorded }) => {
      const main = pgInfo();
      const db = await createWebserverDb(12);
      cleanUp(main, db);
      const dir = tempDir();
      const temp = tempDir();
      const s3 = await bucket();
      const env = backupEnv(db, dir, { ...s3.env('c/'), BACKUP_FORMAT: format, BACKUP_COMPRESSION: compression, BACKUP_TEMP_DIR: temp });
      const atBackup = await contents(main, db);
      await cli(['backup'], env);
      await query(db, `DELETE FROM support_tickets`);
      const [m] = await listJson<Listed>(env);
      expect(path.basename(m!.file)).toMatch(file);
      expect(m!.compression).toBe(recorded);
      // pg_dump's own output: what pg_restore --jobs needs on disk, larger than what is stored when the stream was compressed
      if (/\.(zst|gz)$/.test(m!.file)) expect(m!.size_bytes).toBeLessThan(m!.dump_size_bytes!);
      else expect(m!.size_bytes).toBe(m!.dump_size_bytes);

      // the standard tools open it, as the manifest says
      expect(await contents(main, await restoreByHand(m!))).toEqual(atBackup);

      for (const target of ['local', 's3']) {
        const v = await runCli(['verify', '--target', target], env);
        expect(v.code, v.stdout + v.stderr).toBe(0);
        const r = await runCli(['restore', '--target', target], env);
        expect(r.code, r.stderr).toBe(0);
        expect(await contents(main, restoredInto(r))).toEqual(atBackup);
      }
      expect(leftIn(temp)).toEqual([]);
    },
  );

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
    expect(restore.output()).toContain('the restore was stopped');
    expect(restore.output()).not.toMatch(/at .*\.js:\d+/);
    expect(leftIn(temp)).toEqual([]);
    expect(await databases(main, `${db}_restored`)).toEqual([]);
    expect(await contents(main, db)).toEqual(live);
  });

  it('a backup of before zstd (custom gzip, plain .sql.gz, their manifests without the new fields, digests computed through COPY) still drills and restores', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(10);
    cleanUp(main, db);
    const atBackup = await contents(main, db);
    for (const format of ['custom', 'plain'] as const) {
      const dir = tempDir();
      const s3 = await bucket();
      const env = backupEnv(db, dir, { ...s3.env('old/'), BACKUP_FORMAT: format, BACKUP_COMPRESSION: format === 'custom' ? '6' : 'gzip' });
      await cli(['backup'], env);
      const [m] = await listJson<Listed>(env);
      expect(path.basename(m!.file)).toMatch(format === 'custom' ? /\.dump$/ : /\.sql\.gz$/);
      // as the version before zstd wrote it, on both targets
      // (its digests computed here, as that version did: nothing has changed in the database since)
      const copyDigests = await digestsOf(db, 'copy');
      const old = (text: string) => {
        const before = { ...(JSON.parse(text) as Manifest), compression: format === 'custom' ? null : 6, table_digests: copyDigests };
        delete before.restore_command;
        delete before.dump_size_bytes;
        delete before.digest_method;
        return JSON.stringify(before, null, 2) + '\n';
      };
      const local = path.join(dir, 'backups', `${m!.id}.manifest.json`);
      fs.writeFileSync(local, old(fs.readFileSync(local, 'utf8')));
      await s3.put(`old/${m!.id}.manifest.json`, Buffer.from(old((await s3.get(`old/${m!.id}.manifest.json`)).toString('utf8'))));
      for (const target of ['local', 's3']) {
        const v = await runCli(['verify', '--target', target], env);
        expect(v.code, v.stdout + v.stderr).toBe(0);
        const r = await runCli(['restore', '--target', target], env);
        expect(r.code, r.stderr).toBe(0);
        expect(await contents(main, restoredInto(r))).toEqual(atBackup);
      }
    }
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
});

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { digestTables, type DigestMethod, type TableDigests } from '../../src/digest/table-digests';
import { listUserTables } from '../../src/pg/catalog';
import type { Manifest } from '../../src/repository/manifest';
import { backupEnv, listJson, runCli, tempDir } from '../helpers/cli';
import { bucket, cli } from '../helpers/offsite';
import { createTestDb, createWebserverDb, pgInfo, query } from '../helpers/pg';
import { cleanUp, contents, restoredInto } from '../helpers/restore';

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

describe('compression: each format and method, and backups of before zstd', () => {
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
      // where each table's data is in pg_dump's output, for pg_restore --jobs (the restore and drill below use them)
      if (format === 'custom') expect(m!.data_offsets!.at.length).toBe(m!.tables.length);
      else expect(m!.data_offsets).toBeUndefined();

      // the standard tools open it, as the manifest says
      expect(await contents(main, await restoreByHand(m!))).toEqual(atBackup);

      // a drill reads the local copy, a restore the bucket's (each reader on each kind of target)
      const v = await runCli(['verify', '--target', 'local'], env);
      expect(v.code, v.stdout + v.stderr).toBe(0);
      const r = await runCli(['restore', '--target', 's3'], env);
      expect(r.code, r.stderr).toBe(0);
      expect(await contents(main, restoredInto(r))).toEqual(atBackup);
      expect(leftIn(temp)).toEqual([]);
    },
  );

  it('data offsets in the manifest that do not fit the archive are not written: the restore reads the copy for them instead', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(10);
    cleanUp(main, db);
    const atBackup = await contents(main, db);
    const dir = tempDir();
    const env = backupEnv(db, dir, {});
    await cli(['backup'], env);
    const [m] = await listJson<Listed>(env);
    const file = path.join(dir, 'backups', `${m!.id}.manifest.json`);
    const manifest = JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest;
    // each data block one byte further on: pg_restore would stop at "unexpected block ID" if they were written
    manifest.data_offsets = { ...manifest.data_offsets!, at: manifest.data_offsets!.at.map(([at, pos]) => [at, pos + 1]) };
    fs.writeFileSync(file, JSON.stringify(manifest, null, 2) + '\n');
    const r = await runCli(['restore', '--jobs', '2'], env);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('(2 pg_restore jobs)');
    expect(await contents(main, restoredInto(r))).toEqual(atBackup);
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
        delete before.data_offsets;
        delete before.digest_method;
        return JSON.stringify(before, null, 2) + '\n';
      };
      const local = path.join(dir, 'backups', `${m!.id}.manifest.json`);
      fs.writeFileSync(local, old(fs.readFileSync(local, 'utf8')));
      await s3.put(`old/${m!.id}.manifest.json`, Buffer.from(old((await s3.get(`old/${m!.id}.manifest.json`)).toString('utf8'))));
      for (const target of ['local', 's3']) {
        const v = await runCli(['verify', '--target', target], env);
        expect(v.code, v.stdout + v.stderr).toBe(0);
      }
      const r = await runCli(['restore', '--target', 's3'], env);
      expect(r.code, r.stderr).toBe(0);
      expect(await contents(main, restoredInto(r))).toEqual(atBackup);
    }
  });
});

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { takeBackup } from '../helpers/app';
import { backupEnv, runCli, tempDir } from '../helpers/cli';
import { createTestDb, query } from '../helpers/pg';

const PRELOAD = path.resolve(__dirname, '../fixtures/loaded-packages.cjs');

/** The npm packages (and dist/ modules) a CLI run loaded. */
async function loaded(args: string[], env: Record<string, string>): Promise<{ code: number | null; packages: string[] }> {
  const file = path.join(tempDir(), 'loaded.txt');
  const r = await runCli(args, { ...env, NODE_OPTIONS: `--require ${PRELOAD}`, LOADED_PACKAGES_FILE: file });
  return { code: r.code, packages: fs.readFileSync(file, 'utf8').trim().split('\n') };
}

describe('a command loads only what it needs', () => {
  it('--version and --help load the argument parser, not the database driver, the logger, the scheduler or any use case', async () => {
    for (const args of [['--version'], ['--help'], ['restore', '--help']]) {
      const { code, packages } = await loaded(args, { PATH: process.env.PATH ?? '' });
      expect(code).toBe(0);
      expect(packages).toContain('commander');
      for (const heavy of ['pg', 'winston', 'cron-parser', 'node-cron', '@aws-sdk/client-s3', 'nodemailer', 'age-encryption'])
        expect(packages).not.toContain(heavy);
      expect(packages.filter((p) => /^dist\/src\/(backup|restore|storage|dump|daemon|config)\//.test(p))).toEqual([]);
    }
  });

  it('list and a restore from a local directory load no S3 SDK, no mailer, no age library; list no database driver', async () => {
    const db = await createTestDb('startup');
    await query(db, 'CREATE TABLE t AS SELECT 1 AS id');
    const env = backupEnv(db, tempDir(), { SMTP_HOST: '127.0.0.1', ALERT_EMAIL_TO: 'ops@example.com' });
    await takeBackup(env);
    const list = await loaded(['list', '--json'], env);
    expect(list.code).toBe(0);
    for (const heavy of ['pg', '@aws-sdk/client-s3', 'nodemailer', 'age-encryption']) expect(list.packages).not.toContain(heavy);
    const restore = await loaded(['restore', '--yes', '--target-db', `${db}_r`], env);
    expect(restore.code).toBe(0);
    expect(restore.packages).toContain('pg');
    for (const heavy of ['@aws-sdk/client-s3', 'nodemailer', 'age-encryption']) expect(restore.packages).not.toContain(heavy);
    await query('postgres', `DROP DATABASE IF EXISTS ${db}_r`);
  });

  it('wal-fetch (run once per WAL file) checks no schedule: a typo in VERIFY_SCHEDULE does not stop it, and no cron parser is loaded; list refuses the typo', async () => {
    const db = await createTestDb('startup_wal');
    const env = backupEnv(db, tempDir(), { VERIFY_SCHEDULE: '0 4 * *' });
    const dest = path.join(tempDir(), 'seg');
    const fetch = await loaded(['wal-fetch', '000000010000000000000001', dest], env);
    // "not in the archive" (1), as with a good schedule: not a configuration error (2)
    expect(fetch.code).toBe(1);
    for (const heavy of ['cron-parser', 'node-cron', 'luxon']) expect(fetch.packages).not.toContain(heavy);
    const list = await runCli(['list'], env);
    expect(list.code).toBe(2);
    expect(list.stderr).toMatch(/VERIFY_SCHEDULE.*"0 4 \* \*" is not a valid cron expression/);
  });
});

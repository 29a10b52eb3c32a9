/**
 * Output into a pipe (issue 19, item 5): every command that can print more than a pipe holds
 * (64 KiB) waits for its reader before it exits, and a reader that stops early (`| head -1`)
 * ends the printing quietly.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { takeBackup } from '../helpers/app';
import { backupEnv, tempDir } from '../helpers/cli';
import { copiesOf } from '../helpers/damaged';
import { createTestDb, query } from '../helpers/pg';
import { runCliHeadOne, runCliSlowReader } from '../helpers/pipes';

const KiB = 1024;

/** A backup directory with a path of about 1,000 characters (long values widen every table that shows them). */
function deepDir(dir: string): string {
  return path.join(dir, ...Array.from({ length: 5 }, (_, i) => `${i}${'d'.repeat(190)}`));
}

/**
 * A small database's backup and 300 copies of it an hour apart, 120 more with a failed drill
 * (DAMAGED, each with a 1,000-character error), under a directory with a long path.
 */
async function manyBackups(): Promise<{ env: Record<string, string>; good: number; damaged: number }> {
  const db = await createTestDb('pipes');
  await query(db, `CREATE TABLE items (id int PRIMARY KEY, note text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g`);
  const dir = tempDir();
  const env = backupEnv(db, dir, { BACKUP_DIR: path.join(deepDir(dir), 'backups') });
  fs.mkdirSync(env.BACKUP_DIR!, { recursive: true, mode: 0o700 });
  const m = await takeBackup(env);
  const backupsParent = path.dirname(env.BACKUP_DIR!);
  copiesOf(backupsParent, m, 300);
  copiesOf(backupsParent, m, 120, { hoursBefore: 300, drillError: `pg_restore: error: ${'could not read the archive '.repeat(37)}` });
  return { env, good: 301, damaged: 120 };
}

/** The size of `text` as printed (UTF-8: a table's box-drawing characters take 3 bytes). */
function bytes(text: string): number {
  return Buffer.byteLength(text);
}

function lines(text: string): string[] {
  return text.split('\n');
}

describe('output into a pipe', () => {
  it('a slow reader gets every byte of list, list --json, status --json, prune --dry-run and config check', async () => {
    const { env, good, damaged } = await manyBackups();

    const json = await runCliSlowReader(['list', '--json'], env);
    expect.soft(json.code, json.stderr).toBe(0);
    expect.soft(bytes(json.stdout)).toBeGreaterThan(128 * KiB);
    const rows = JSON.parse(json.stdout) as { state: string }[];
    expect.soft(rows.filter((r) => r.state === 'ok')).toHaveLength(good);
    expect.soft(rows.filter((r) => r.state === 'DAMAGED')).toHaveLength(damaged);

    const table = await runCliSlowReader(['list'], env);
    expect.soft(table.code, table.stderr).toBe(0);
    expect.soft(bytes(table.stdout)).toBeGreaterThan(128 * KiB);
    expect.soft(lines(table.stdout).filter((l) => /│ \S+_\d{8}T\d{6}Z /.test(l))).toHaveLength(good + damaged);
    expect.soft(table.stdout).toMatch(/└[─┴]+┘\n/);

    const status = await runCliSlowReader(['status', '--json'], env);
    expect.soft(status.code, status.stderr).toBe(0);
    expect.soft(bytes(status.stdout)).toBeGreaterThan(128 * KiB);
    expect.soft((JSON.parse(status.stdout) as { damaged: unknown[] }).damaged).toHaveLength(damaged);

    const prune = await runCliSlowReader(['prune', '--dry-run'], env);
    expect.soft(prune.code, prune.stderr).toBe(0);
    expect.soft(bytes(prune.stdout)).toBeGreaterThan(128 * KiB);
    expect.soft(prune.stdout).toMatch(/\d+ would delete, \d+ kept; 120 damaged kept \(never counted\)\.\n$/);

    const check = await runCliSlowReader(['config', 'check'], env);
    expect.soft(check.code, check.stderr).toBe(0);
    expect.soft(bytes(check.stdout)).toBeGreaterThan(128 * KiB);
    expect.soft(check.stdout).toMatch(/│ check +│ result │ detail +│/);
    expect.soft(check.stdout).toMatch(/└[─┴]+┘\n$/);
  });

  it('a reader that stops after one line (| head -1): config check and prune end quietly, with their own exit code', async () => {
    const { env } = await manyBackups();
    for (const args of [['config', 'check'], ['prune'], ['list', '--json']]) {
      const r = await runCliHeadOne(args, env);
      expect.soft(r.exitedBeforeClose, `${args.join(' ')} exited before its reader read a line`).toBe(false);
      expect.soft(r.stdout, args.join(' ')).toMatch(/^(┌|\[)/);
      expect.soft(r.stderr, args.join(' ')).not.toMatch(/EPIPE|at .*\.js:\d+|node:events/);
      expect.soft(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(0);
    }
  });

  it('a slow reader gets every byte of restore --dry-run and of restore, for a database of 600 tables', async () => {
    const db = await createTestDb('pipes_wide');
    const name = (i: number) => `t${String(i).padStart(3, '0')}_${'wide_table_name_'.repeat(3)}abcdefghij`; // 63 characters, the most PostgreSQL keeps
    await query(
      db,
      `DO $$ BEGIN FOR i IN 1..600 LOOP EXECUTE format('CREATE TABLE %I (id int)', 't' || lpad(i::text, 3, '0') || '${name(0).slice(4)}'); END LOOP; END $$`,
    );
    const dir = tempDir();
    const env = backupEnv(db, dir);
    await takeBackup(env);
    const tables = Array.from({ length: 600 }, (_, i) => name(i + 1));

    const plan = await runCliSlowReader(['restore', '--dry-run', ...tables.flatMap((t) => ['--table', t])], env);
    expect.soft(plan.code, plan.stderr).toBe(0);
    expect.soft(bytes(plan.stdout)).toBeGreaterThan(128 * KiB);
    expect.soft(plan.stdout).toMatch(/\nunset PGPASSWORD\n$/);

    const target = `${db}_piped`;
    const restored = await runCliSlowReader(['restore', '--target-db', target, '--yes'], env);
    expect.soft(restored.code, restored.stderr).toBe(0);
    expect.soft(bytes(restored.stdout)).toBeGreaterThan(128 * KiB);
    expect.soft(lines(restored.stdout).filter((l) => /│ public\.t\d{3}_wide/.test(l))).toHaveLength(600);
    expect.soft(restored.stdout).toContain(`into "${target}"`);
    await query('postgres', `DROP DATABASE IF EXISTS "${target}"`);
  });
});

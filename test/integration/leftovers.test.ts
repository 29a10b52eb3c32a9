import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Status } from '../../src/backup/status';
import { backupEnv, runCli, spawnCli, tempDir, waitFor, type Spawned } from '../helpers/cli';
import { tempFiles } from '../helpers/daemon';
import { cli } from '../helpers/offsite';
import { createTestDb, pgInfo, query } from '../helpers/pg';
import { cleanUp, databases, restoredInto } from '../helpers/restore';

/** What a run of ours keeps in BACKUP_TEMP_DIR: its directories, and the decompressed copy in each. */
function tempDirs(temp: string): string[] {
  return fs.readdirSync(temp).filter((n) => n.startsWith('basement-backup-'));
}

function copyIn(temp: string): string | undefined {
  for (const d of tempDirs(temp)) {
    const f = path.join(temp, d, 'archive.dump');
    if (fs.existsSync(f) && fs.statSync(f).size > 0) return f;
  }
  return undefined;
}

/** A database big enough that a restore is still copying or restoring when it is killed: one table of 600,000 rows, two indexes. */
async function bigDb(prefix: string): Promise<string> {
  const db = await createTestDb(prefix);
  cleanUp(pgInfo(), db);
  cleanUp(pgInfo(), `bb_verify_${db}`);
  await query(db, `CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, md5((-g)::text) AS b FROM generate_series(1, 600000) g`);
  await query(db, `CREATE INDEX ON big (a); CREATE INDEX ON big (b)`);
  return db;
}

async function keygen(dir: string, name: string): Promise<{ file: string; publicKey: string }> {
  const file = path.join(dir, name);
  const r = await runCli(['keygen', '--out', file], { PATH: process.env.PATH!, HOME: dir });
  expect(r.code, r.stderr).toBe(0);
  return { file, publicKey: /BACKUP_AGE_RECIPIENTS=(age1\S+)/.exec(r.stdout)![1]! };
}

/** Starts `args`, waits until `ready` holds, and kills it outright (SIGKILL: no clean-up of its own). */
async function killWhen(args: string[], env: Record<string, string>, ready: () => boolean | Promise<boolean>, what: string): Promise<Spawned> {
  const run = spawnCli(args, env);
  await waitFor(async () => (await ready()) || run.child.exitCode !== null, 60_000, what);
  expect(run.child.exitCode, `${args.join(' ')} ended before it could be killed:\n${run.output()}`).toBeNull();
  run.child.kill('SIGKILL');
  await run.exited;
  return run;
}

async function status(env: Record<string, string>): Promise<{ json: Status; text: string }> {
  const json = JSON.parse((await cli(['status', '--json'], env)).stdout) as Status;
  return { json, text: (await cli(['status'], env)).stdout };
}

describe('what a killed restore, drill or reencrypt leaves', () => {
  it('restore --jobs 2 of an encrypted backup, SIGKILLed mid-copy: status names its plaintext copy and half-restored database; the next restore removes both and keeps a finished one', async () => {
    const main = pgInfo();
    const db = await bigDb('killrestore');
    const dir = tempDir();
    const temp = tempDir();
    const key = await keygen(dir, 'key.txt');
    const env = {
      ...backupEnv(db, dir, { BACKUP_TEMP_DIR: temp, BACKUP_DIGEST: 'counts', BACKUP_AGE_RECIPIENTS: key.publicKey }),
      BACKUP_AGE_IDENTITY_FILE: key.file,
    };
    await cli(['backup'], env);

    let modes: { dir: number; file: number } | undefined;
    await killWhen(
      ['restore', '--jobs', '2', '--yes'],
      env,
      async () => {
        const copy = copyIn(temp);
        if (!copy || (await databases(main, `${db}_restored`)).length === 0) return false;
        modes = { dir: fs.statSync(path.dirname(copy)).mode & 0o777, file: fs.statSync(copy).mode & 0o777 };
        return true;
      },
      'the decompressed copy',
    );
    // the copy is plaintext: private while it exists
    expect(modes).toEqual({ dir: 0o700, file: 0o600 });
    const [left] = tempDirs(temp);
    const [half] = await databases(main, `${db}_restored`);
    expect(left).toMatch(new RegExp(`^basement-backup-restore-${db}-`));

    const before = await status(env);
    expect(before.json.leftovers.temp_dirs).toEqual([expect.objectContaining({ path: path.join(temp, left!), command: 'restore', in_use_by_pid: null })]);
    expect(before.json.leftovers.temp_dirs[0]!.bytes).toBeGreaterThan(0);
    expect(before.json.leftovers.unfinished_restores).toEqual([expect.objectContaining({ database: half, in_use_by_pid: null })]);
    expect(before.text).toMatch(new RegExp(`LEFT BEHIND\\s*│\\s*${path.join(temp, left!)} \\(`));
    expect(before.text).toContain("a killed restore's copy (maybe decrypted); the next restore, drill or daemon start removes it");
    expect(before.text).toMatch(new RegExp(`LEFT BEHIND\\s*│\\s*database "${half}" on ${main.host}:${main.port}`));
    expect(before.text).toMatch(/half-restored \(restore killed [\d-]+ [\d:]+\); the next restore or daemon start drops it/);
    expect(before.text).toContain(`by hand: DROP DATABASE "${half}" WITH (FORCE);`);

    const next = await runCli(['restore', '--jobs', '2', '--yes'], env, { timeoutMs: 120_000 });
    expect(next.code, next.stderr).toBe(0);
    const finished = restoredInto(next);
    expect(tempDirs(temp)).toEqual([]);
    expect(await databases(main, `${db}_restored`)).toEqual([finished]);
    const after = await status(env);
    expect(after.json.leftovers.temp_dirs).toEqual([]);
    expect(after.json.leftovers.unfinished_restores).toEqual([]);
    expect(after.text).not.toContain('LEFT BEHIND');

    // a finished restore carries no mark: the next restore (killed again) and the one after leave it alone
    await killWhen(['restore', '--jobs', '2', '--yes'], env, () => copyIn(temp) !== undefined, 'the decompressed copy');
    const third = await runCli(['restore', '--jobs', '1', '--yes'], env, { timeoutMs: 120_000 });
    expect(third.code, third.stderr).toBe(0);
    expect(await databases(main, `${db}_restored`)).toEqual([finished, restoredInto(third)].sort());
    expect(tempDirs(temp)).toEqual([]);
  });

  it('verify SIGKILLed mid-copy: status names its copy and scratch database; the daemon’s start removes both, and so does the next verify', async () => {
    const main = pgInfo();
    const db = await bigDb('killdrill');
    const dir = tempDir();
    const temp = tempDir();
    // two jobs: a drill then makes a decompressed copy (on 2 cores it would stream, leaving none)
    const env = backupEnv(db, dir, { BACKUP_TEMP_DIR: temp, BACKUP_DIGEST: 'counts', BACKUP_RESTORE_JOBS: '2' });
    await cli(['backup'], env);
    const scratch = () => databases(main, `bb_verify_${db}`);

    await killWhen(['verify'], env, async () => copyIn(temp) !== undefined && (await scratch()).length === 1, 'the drill’s copy');
    const [left] = tempDirs(temp);
    const [scratchDb] = await scratch();
    const before = await status(env);
    expect(before.json.leftovers.temp_dirs).toEqual([expect.objectContaining({ path: path.join(temp, left!), command: 'verify', in_use_by_pid: null })]);
    expect(before.json.leftovers.scratch_databases).toEqual([expect.objectContaining({ database: scratchDb, in_use_by_pid: null })]);
    expect(before.text).toMatch(new RegExp(`LEFT BEHIND\\s*│\\s*database "${scratchDb}" on ${main.host}:${main.port}`));
    expect(before.text).toContain("a killed drill's scratch database; the next drill or daemon start drops it");

    const daemon = spawnCli(['daemon'], { ...env, BACKUP_SCHEDULE: '0 0 1 1 *', VERIFY_SCHEDULE: '0 0 1 1 *', BACKUP_CATCH_UP: 'false' });
    await daemon.waitForOutput(/dropped a scratch database left by an interrupted restore drill/);
    expect(tempDirs(temp)).toEqual([]);
    expect(await scratch()).toEqual([]);
    expect(daemon.output()).toContain('removed temporary directories left by an interrupted restore or drill');
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited, daemon.output()).toBe(0);

    await killWhen(['verify'], env, async () => copyIn(temp) !== undefined && (await scratch()).length === 1, 'the drill’s copy');
    expect(tempDirs(temp)).toHaveLength(1);
    const again = await runCli(['verify'], env, { timeoutMs: 120_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(tempDirs(temp)).toEqual([]);
    expect(await scratch()).toEqual([]);
  });

  it('reencrypt SIGKILLed mid-file: `list --all` and status show its temporary file; prune removes it, and so does the next reencrypt', async () => {
    const db = await bigDb('killreenc');
    const dir = tempDir();
    const oldKey = await keygen(dir, 'old.txt');
    const newKey = await keygen(dir, 'new.txt');
    const env = { ...backupEnv(db, dir, { BACKUP_AGE_RECIPIENTS: oldKey.publicKey, BACKUP_DIGEST: 'counts' }) };
    await cli(['backup'], env);
    const rotate = { ...env, BACKUP_AGE_RECIPIENTS: newKey.publicKey, BACKUP_AGE_IDENTITY_FILE: oldKey.file };
    const written = () => tempFiles(dir).some((n) => n.includes('.key2.') && fs.statSync(path.join(dir, 'backups', n)).size > 0);

    await killWhen(['reencrypt'], rotate, written, 'the re-encrypted temporary file');
    const [tmp] = tempFiles(dir);
    expect(tmp).toMatch(new RegExp(`^\\.${db}_\\d{8}T\\d{6}Z\\.key2\\.dump\\.zst\\.age\\.tmp-`));
    const all = (JSON.parse((await cli(['list', '--all', '--json'], env)).stdout) as { file: string; state: string; in_use?: boolean }[]).filter(
      (r) => r.state === 'TEMPORARY',
    );
    expect(all).toEqual([expect.objectContaining({ file: path.join(dir, 'backups', tmp!), in_use: false })]);
    const table = (await cli(['list', '--all'], env)).stdout;
    expect(table).toContain(tmp);
    expect(table).toContain('TEMPORARY: left by a crash');
    const before = await status(env);
    expect(before.json.leftovers.temporary_objects).toEqual([expect.objectContaining({ target: 'local', name: tmp, in_use: false })]);
    expect(before.text).toMatch(new RegExp(`LEFT BEHIND\\s*│\\s*${tmp!.replace(/\./g, '\\.')} on local`));

    const dry = await cli(['prune', '--dry-run'], env);
    expect(dry.stdout).toMatch(new RegExp(`${tmp!.replace(/\./g, '\\.')}.*would remove`));
    expect(tempFiles(dir)).toEqual([tmp]);
    const pruned = await cli(['prune'], env);
    expect(pruned.stdout).toContain('1 temporary object(s) removed');
    expect(tempFiles(dir)).toEqual([]);

    await killWhen(['reencrypt'], rotate, written, 'the re-encrypted temporary file');
    expect(tempFiles(dir)).toHaveLength(1);
    const again = await runCli(['reencrypt'], rotate, { timeoutMs: 120_000 });
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(tempFiles(dir)).toEqual([]);
    expect((await status(env)).json.leftovers.temporary_objects).toEqual([]);
  });
});

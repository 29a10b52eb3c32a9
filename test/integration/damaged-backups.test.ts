import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { Manifest, Verification } from '../../src/storage/manifest';
import { backupEnv, backupFiles, listJson, runCli, smtpEnv, tempDir, type CliResult } from '../helpers/cli';
import { createWebserverDb, query } from '../helpers/pg';
import { testBucket } from '../helpers/s3';
import { smtpSink } from '../helpers/smtp';

/**
 * What must never happen to good backups: a damaged one must not push them out, a wrong clock must
 * not reorder them, and nothing of a backup may hide from the operator (issue 7, points 1-4, 17).
 */

const DAY = 86400_000;

type Listed = Manifest & { state: string; damage: string | null; future_dated: boolean };

function backupsDir(dir: string): string {
  return path.join(dir, 'backups');
}

async function cli(args: string[], env: Record<string, string>, expected = 0): Promise<CliResult> {
  const r = await runCli(args, env);
  expect(r.code, `basement-backup ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(expected);
  return r;
}

/** `list --json`, with each file as its name (local targets print the full path). */
async function listNames(env: Record<string, string>, extra: string[] = []): Promise<Listed[]> {
  const listed = await listJson<Listed>(env, extra);
  return listed.map((x) => ({ ...x, file: x.file && path.basename(x.file) }));
}

/** Takes `n` backups labelled l1..ln and returns their manifests, oldest first. */
async function takeBackups(env: Record<string, string>, n: number): Promise<Manifest[]> {
  for (let i = 1; i <= n; i++) await cli(['backup', '--label', `l${i}`], env);
  const list = await listNames(env);
  return [...list].reverse();
}

/** Rewrites a stored manifest (as an older backup, or a clock that was wrong, would have written it). */
function rewrite(dir: string, m: Manifest, patch: Partial<Manifest>): Manifest {
  const file = path.join(backupsDir(dir), `${m.id}.manifest.json`);
  const next = { ...(JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest), ...patch };
  fs.writeFileSync(file, JSON.stringify(next, null, 2) + '\n');
  return next;
}

function ageDays(dir: string, m: Manifest, days: number): Manifest {
  const created = new Date(Date.now() - days * DAY);
  return rewrite(dir, m, { created_at: created.toISOString(), finished_at: created.toISOString() });
}

/** Changes one byte in the middle of a stored file: same size, different content. */
function flipByte(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const at = Math.floor(fs.fstatSync(fd).size / 2);
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] = b[0]! ^ 0xff;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}

function objectsOf(dir: string, id: string): string[] {
  return backupFiles(dir).filter((n) => n.startsWith(`${id}.`));
}

describe('a damaged backup never pushes out good ones', () => {
  it('a drill-failed newest backup is DAMAGED everywhere and never counts; prune keeps the newest good one (7 days / min 1)', async () => {
    const smtp = await smtpSink();
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_RETENTION_DAYS: '7', BACKUP_RETENTION_MIN_COUNT: '1', ...smtpEnv(smtp.port) });
    const [b1, b2, b3] = (await takeBackups(env, 3)).map((m, i) => ageDays(dir, m, 30 - i)) as [Manifest, Manifest, Manifest];
    flipByte(path.join(backupsDir(dir), b3.file));

    // the drill of the newest finds it damaged and records that
    await cli(['verify'], env, 31);
    const listed = await listNames(env);
    expect(listed.find((x) => x.id === b3.id)).toMatchObject({ state: 'DAMAGED' });
    expect(listed.find((x) => x.id === b3.id)!.damage).toMatch(/failed its restore drill/);

    // status and `latest` skip it
    const status = JSON.parse((await cli(['status', '--json'], env)).stdout) as { newest: { id: string }; damaged: { id: string; reason: string }[] };
    expect(status.newest.id).toBe(b2.id);
    expect(status.damaged.map((d) => d.id)).toEqual([b3.id]);
    const drill = JSON.parse((await cli(['verify', 'latest', '--json'], env)).stdout) as { id: string; ok: boolean };
    expect(drill).toMatchObject({ id: b2.id, ok: true });

    // retention: the damaged one neither counts toward the minimum nor is deleted; b2 is the one kept
    const pruned = await cli(['prune'], env);
    expect(pruned.stdout).toContain('1 deleted, 1 kept; 1 damaged kept (never counted).');
    expect(objectsOf(dir, b1.id)).toEqual([]);
    expect(objectsOf(dir, b2.id)).toContain(b2.file);
    expect(objectsOf(dir, b3.id)).toContain(b3.file);

    // a failed backup's alert never names a damaged backup as the newest good one
    const bad = await runCli(['backup'], { ...env, DB_NAME: `${db}_missing` });
    expect(bad.code).toBe(12);
    const mails = await smtp.waitFor(1);
    expect(mails.some((m) => /damaged backup/i.test(m.subject ?? '') && m.text!.includes(b3.id))).toBe(true);
  });

  it('before deleting, retention re-reads the backups it relies on; a changed byte stops it, marks the backup DAMAGED and alerts', async () => {
    const smtp = await smtpSink();
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_RETENTION_DAYS: '7', BACKUP_RETENTION_MIN_COUNT: '1', ...smtpEnv(smtp.port) });
    const [b1, b2, b3] = (await takeBackups(env, 3)).map((m, i) => ageDays(dir, m, 30 - i)) as [Manifest, Manifest, Manifest];
    // damaged on disk, and nothing has noticed yet: same size, so every listing still calls it good
    flipByte(path.join(backupsDir(dir), b3.file));
    expect((await listNames(env)).every((x) => x.state === 'ok')).toBe(true);

    const refused = await cli(['prune'], env, 31);
    expect(refused.stderr).toContain(`retention deleted nothing on local: a backup it relies on is damaged: ${b3.id}`);
    for (const m of [b1, b2, b3]) expect(objectsOf(dir, m.id)).toContain(m.file);
    const mail = (await smtp.waitFor(1)).find((m) => /Retention .* refused/.test(m.subject ?? ''));
    expect(mail?.text).toContain(b3.id);
    expect((await listNames(env)).find((x) => x.id === b3.id)!.state).toBe('DAMAGED');

    // the next prune relies on b2 instead (intact), and only then deletes b1
    const next = await cli(['prune'], env);
    expect(next.stdout).toContain('1 deleted, 1 kept; 1 damaged kept (never counted).');
    expect(objectsOf(dir, b1.id)).toEqual([]);
    expect(objectsOf(dir, b2.id)).toContain(b2.file);
  });

  it('in a bucket, an object replaced by one of the same size is caught by its ETag before retention deletes anything', async () => {
    const bucket = await testBucket();
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, { ...bucket.env('p/'), BACKUP_LOCAL: 'false', S3_RETENTION_DAYS: '7', S3_RETENTION_MIN_COUNT: '1' });
    for (let i = 1; i <= 2; i++) await cli(['backup', '--label', `l${i}`], env);
    const [newest, oldest] = await listNames(env);
    expect(newest!.targets?.s3?.etag).toMatch(/^[0-9a-f]{32}(-\d+)?$/);

    // make the older one old enough to go: rewrite its manifest in the bucket
    const old = JSON.parse((await bucket.get(`p/${oldest!.id}.manifest.json`)).toString('utf8')) as Manifest;
    await bucket.put(`p/${oldest!.id}.manifest.json`, JSON.stringify({ ...old, created_at: new Date(Date.now() - 30 * DAY).toISOString() }));
    // and replace the newest one's data by other bytes of the same size
    await bucket.put(`p/${newest!.file}`, Buffer.alloc(newest!.size_bytes, 7));

    const refused = await cli(['prune'], env, 31);
    expect(refused.stderr).toMatch(new RegExp(`${newest!.id}: .*ETag`));
    expect((await listNames(env)).map((x) => [x.id, x.state])).toEqual([
      [newest!.id, 'DAMAGED'],
      [oldest!.id, 'ok'],
    ]);
  });
});

describe('the order of backups does not depend on the clock', () => {
  const libfaketime = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/faketime/libfaketime.so.1'].find((f) => fs.existsSync(f));

  it.skipIf(!libfaketime)(
    'a backup taken with the clock 30 days ahead is flagged, never "latest" after a newer one, and retention stops with "clock went backwards"',
    async () => {
      const smtp = await smtpSink();
      const db = await createWebserverDb(5);
      const dir = tempDir();
      const env = backupEnv(db, dir, { BACKUP_RETENTION_DAYS: '7', BACKUP_RETENTION_MIN_COUNT: '1', ...smtpEnv(smtp.port) });
      await cli(['backup', '--label', 'before'], env);
      // this process (only) sees a clock 30 days ahead; the database server's clock is right
      const ahead = await cli(['backup', '--label', 'ahead'], { ...env, LD_PRELOAD: libfaketime!, FAKETIME: '+30d' });
      expect(ahead.stderr).toMatch(/retention on local failed: this machine's clock is \d+d \d+h ahead of the database server's; retention deleted nothing/);
      await cli(['backup', '--label', 'after'], env);

      const list = await listNames(env);
      expect(list.map((x) => x.label)).toEqual(['after', 'ahead', 'before']);
      expect(list.map((x) => x.seq)).toEqual([3, 2, 1]);
      expect(list.map((x) => x.future_dated)).toEqual([false, true, false]);
      const text = (await cli(['list'], env)).stdout;
      expect(text).toContain('(IN THE FUTURE)');

      const status = JSON.parse((await cli(['status', '--json'], env)).stdout) as {
        newest: { id: string; age_seconds: number | null };
        future_dated: string[];
      };
      expect(status.newest.id).toBe(list[0]!.id);
      expect(status.newest.age_seconds).toBeGreaterThanOrEqual(0);
      expect(status.future_dated).toEqual([list[1]!.id]);
      const drill = JSON.parse((await cli(['verify', 'latest', '--json'], env)).stdout) as { id: string };
      expect(drill.id).toBe(list[0]!.id);

      // make "before" old enough to go: retention must still refuse while a backup is dated after now
      ageDays(dir, list[2]!, 20);
      const refused = await cli(['prune'], env, 26);
      expect(refused.stderr).toContain('the clock went backwards');
      expect(objectsOf(dir, list[2]!.id)).toContain(list[2]!.file);
      expect((await smtp.waitFor(1)).some((m) => /clock went backwards/.test(m.text ?? ''))).toBe(true);
      // the operator who has checked the clock can go on; the future-dated one is kept
      await cli(['prune', '--trust-clock'], env);
      expect(objectsOf(dir, list[2]!.id)).toEqual([]);
      expect(objectsOf(dir, list[1]!.id)).toContain(list[1]!.file);
    },
  );
});

describe('nothing of a backup hides', () => {
  it('objects no manifest owns (a crash between data and manifest) show with list --all and go with the next backup or prune', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const [crashed] = await takeBackups(env, 1);
    // the state a crash between the data's rename and the manifest leaves behind
    fs.rmSync(path.join(backupsDir(dir), `${crashed!.id}.manifest.json`));
    expect(objectsOf(dir, crashed!.id).sort()).toEqual([crashed!.file, `${crashed!.id}.roles.sql`].sort());

    expect(await listNames(env)).toEqual([]);
    const all = await listNames(env, ['--all']);
    expect(all.map((x) => [x.state, path.basename(x.file)]).sort()).toEqual([
      ['ORPHAN', crashed!.file],
      ['ORPHAN', `${crashed!.id}.roles.sql`],
    ]);
    expect((await cli(['list'], env)).stdout).toContain('2 object(s) belong to no manifest');
    const dry = await cli(['prune', '--dry-run'], env);
    expect(dry.stdout).toMatch(new RegExp(`${crashed!.file} .*would remove`));
    expect(objectsOf(dir, crashed!.id)).toHaveLength(2);

    const next = await cli(['backup'], env);
    expect(next.stderr).toContain('removed objects that no manifest owns');
    expect(objectsOf(dir, crashed!.id)).toEqual([]);

    // a delete interrupted after the manifest: prune removes the rest
    const [, victim] = await listNames(env).then((l) => [...l, ...l]);
    fs.rmSync(path.join(backupsDir(dir), `${victim!.id}.manifest.json`));
    const pruned = await cli(['prune'], env);
    expect(pruned.stdout).toMatch(/object\(s\) without a manifest removed/);
    expect(objectsOf(dir, victim!.id)).toEqual([]);
  });

  it('a manifest that is not valid JSON shows as DAMAGED in list and status, fails verify --checksums-only, and is mailed once', async () => {
    const smtp = await smtpSink();
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, smtpEnv(smtp.port));
    const [broken, good] = await takeBackups(env, 2);
    fs.writeFileSync(path.join(backupsDir(dir), `${broken!.id}.manifest.json`), '{"manifest_version": 1, "id": "');

    const list = await listNames(env);
    expect(list.map((x) => [x.id, x.state, x.damage])).toEqual([
      [good!.id, 'ok', null],
      [broken!.id, 'DAMAGED', 'the manifest is not valid JSON'],
    ]);
    expect((await cli(['list'], env)).stdout).toMatch(new RegExp(`${broken!.id} .*DAMAGED: the manifest is not valid JSON`));
    const status = await cli(['status'], env);
    expect(status.stdout).toMatch(new RegExp(`DAMAGED .*${broken!.id}: the manifest is not valid JSON`));
    const checks = await cli(['verify', '--checksums-only', '--json'], env, 31);
    expect((JSON.parse(checks.stdout) as { id: string; ok: boolean }[]).map((c) => [c.id, c.ok])).toEqual([
      [good!.id, true],
      [broken!.id, false],
    ]);

    // the next backups mail it once, not every day
    await cli(['backup'], env);
    await cli(['backup'], env);
    await new Promise((r) => setTimeout(r, 500));
    const about = smtp.mails.filter((m) => /damaged backup/i.test(m.subject ?? '') && m.text!.includes(broken!.id));
    expect(about).toHaveLength(1);
    expect(about[0]!.text).toContain('the manifest is not valid JSON');
  });

  it('a record of a check that could not run never hides a damaged backup', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const [m] = await takeBackups(env, 1);
    flipByte(path.join(backupsDir(dir), m!.file));
    await cli(['verify', '--checksums-only'], env, 31);
    expect((await listNames(env))[0]!.state).toBe('DAMAGED');
    // a drill by a role that may not create the scratch database proves nothing either way
    const role = `nocreatedb_${db.slice(-8)}`;
    await query('postgres', `CREATE ROLE ${role} LOGIN PASSWORD 'pw-${role}'`);
    onTestFinished(() => query('postgres', `DROP ROLE IF EXISTS ${role}`).then(() => undefined));
    const r = await runCli(['verify', m!.id], { ...env, VERIFY_DB_USER: role, VERIFY_DB_PASSWORD: `pw-${role}` });
    expect(r.code).not.toBe(0);
    const v = JSON.parse(fs.readFileSync(path.join(backupsDir(dir), `${m!.id}.verify.json`), 'utf8')) as Verification;
    expect(v).toMatchObject({ kind: 'checksum', ok: false, error_code: 'DAMAGED' });
    expect((await listNames(env))[0]!.state).toBe('DAMAGED');
  });
});

describe('not enough disk space', () => {
  it('the hint says what would free space: here the minimum count, not the days', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_RETENTION_DAYS: '1', BACKUP_RETENTION_MIN_COUNT: '5' });
    for (const m of await takeBackups(env, 3)) ageDays(dir, m, 10);
    const r = await cli(['backup'], { ...env, BACKUP_MIN_FREE_MB: '10000000' }, 22);
    expect(r.stderr).toMatch(
      /2 backup\(s\) older than 1 days are kept only by the minimum count \(BACKUP_RETENTION_MIN_COUNT, now 5\): lowering it frees them/,
    );
    expect(r.stderr).not.toMatch(/lower BACKUP_RETENTION_DAYS/);
    expect(r.stderr).toMatch(/free .* elsewhere on that disk|larger disk/);
  });
});

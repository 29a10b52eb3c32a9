import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/repository/manifest';
import { backupEnv, runCli, smtpEnv, tempDir } from '../helpers/cli';
import { createWebserverDb } from '../helpers/pg';
import { testBucket } from '../helpers/s3';
import { smtpSink } from '../helpers/smtp';
import { ageDays, backupsDir, cli, DAY, flipByte, listNames, objectsOf, takeBackups } from '../helpers/damaged';

/**
 * What must never happen to good backups: a damaged one must not push them out, a wrong clock must
 * not reorder them, and nothing of a backup may hide from the operator (issue 7, points 1-4, 17).
 * Here: damaged backups and retention, and the free-space hint; the clock and hidden objects are
 * in backup-visibility.test.ts.
 */

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

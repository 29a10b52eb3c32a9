import { DeleteObjectCommand, HeadObjectCommand, ListObjectVersionsCommand, type S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { idTime } from '../../src/repository/manifest';
import { backupEnv, tempDir, waitFor } from '../helpers/cli';
import { bucket, cli, listOn, s3Manifest, type Bucket } from '../helpers/offsite';
import { createWebserverDb } from '../helpers/pg';
import { s3Backend } from '../helpers/s3';

// S3 Object Lock (issue 22): every object of a backup written locked until retention could let it
// go, what the server's own key can and cannot do to it, prune waiting for locks, pins lengthening
// them, and a bucket without Object Lock refused. Against radosgw only: s3rver has no Object Lock.

const DAY = 86400_000;
const PREFIX = 'lock/';
const onS3rver = s3Backend().kind === 's3rver';
if (onS3rver) process.stderr.write('object-lock.test.ts skipped: s3rver has no Object Lock, versions or retention; run with TEST_S3_SERVER=radosgw\n');

interface Version {
  key: string;
  versionId: string;
}

async function versions(c: S3Client, b: string, prefix: string): Promise<Version[]> {
  const r = await c.send(new ListObjectVersionsCommand({ Bucket: b, Prefix: prefix }));
  return [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])].map((v) => ({ key: v.Key!, versionId: v.VersionId! }));
}

async function lockOf(s3: Bucket, v: Version): Promise<{ mode: string | undefined; until: number | undefined }> {
  const h = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: v.key, VersionId: v.versionId }));
  return { mode: h.ObjectLockMode, until: h.ObjectLockRetainUntilDate?.getTime() };
}

/** Deleting one version with the server's key: the error's name, or 'deleted'. */
async function deleteVersion(s3: Bucket, v: Version, bypass: boolean): Promise<string> {
  try {
    await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: v.key, VersionId: v.versionId, BypassGovernanceRetention: bypass || undefined }));
    return 'deleted';
  } catch (err) {
    return (err as Error).name;
  }
}

async function lockedSetup(mode: string, extra: Record<string, string> = {}) {
  const s3 = await bucket({ objectLock: true });
  const db = await createWebserverDb();
  const env = backupEnv(db, tempDir(), { ...s3.env(PREFIX), BACKUP_LOCAL: 'false', S3_OBJECT_LOCK: mode, ...extra });
  return { s3, env };
}

async function backup(env: Record<string, string>): Promise<string> {
  await cli(['backup'], env);
  return (await listOn(env))[0]!.id;
}

describe.skipIf(onS3rver)('S3 Object Lock', () => {
  it('compliance: every object of a backup is locked until retention could let it go; the server key cannot delete a version, with or without the bypass', async () => {
    const { s3, env } = await lockedSetup('compliance', { BACKUP_RETENTION_DAYS: '3', BACKUP_KEEP_WEEKLY: '2' });
    const id = await backup(env);
    const stored = await versions(s3.client, s3.bucket, `${PREFIX}${id}.`);
    expect(stored.map((v) => v.key.slice(PREFIX.length + id.length)).sort()).toEqual(['.dump.zst', '.manifest.json', '.roles.sql']);
    // the longest rule: 2 ISO weeks (14 days and an hour) from the time the backup was taken
    for (const v of stored) expect(await lockOf(s3, v), v.key).toEqual({ mode: 'COMPLIANCE', until: idTime(id) + 14 * DAY + 3600_000 });
    for (const v of stored) {
      expect(await deleteVersion(s3, v, false), v.key).toBe('AccessDenied');
      expect(await deleteVersion(s3, v, true), v.key).toBe('AccessDenied');
    }
    // a plain delete only hides the object behind a delete marker: its locked version stays
    expect((await versions(s3.client, s3.bucket, `${PREFIX}${id}.`)).filter((v) => stored.some((s) => s.versionId === v.versionId))).toHaveLength(3);
    await cli(['verify', '--checksums-only'], env);
  });

  it("governance: the bucket owner's key deletes a locked version when it sends the bypass header (no protection against the server's key)", async () => {
    const { s3, env } = await lockedSetup('governance');
    const id = await backup(env);
    const [data] = (await versions(s3.client, s3.bucket, `${PREFIX}${id}.dump`)) as [Version];
    expect((await lockOf(s3, data)).mode).toBe('GOVERNANCE');
    expect(await deleteVersion(s3, data, false)).toBe('AccessDenied');
    expect(await deleteVersion(s3, data, true)).toBe('deleted');
  });

  it('a pin lengthens the lock of every object of its backup, and the pin is locked as long', async () => {
    const { s3, env } = await lockedSetup('compliance', { BACKUP_RETENTION_DAYS: '1' });
    const id = await backup(env);
    const until = new Date(Date.now() + 40 * DAY);
    const date = until.toISOString().slice(0, 10);
    await cli(['pin', id, '--keep', date], env);
    const pin = JSON.parse((await s3.get(`${PREFIX}${id}.pin.json`)).toString()) as { keep_until: string };
    const pinnedUntil = Date.parse(pin.keep_until);
    expect(pinnedUntil).toBeGreaterThan(idTime(id) + 30 * DAY);
    const stored = await versions(s3.client, s3.bucket, `${PREFIX}${id}.`);
    expect(stored).toHaveLength(4);
    for (const v of stored) expect(await lockOf(s3, v), v.key).toEqual({ mode: 'COMPLIANCE', until: pinnedUntil });
  });

  it('prune leaves a backup retention let go while its lock holds, and deletes it once the lock has passed', async () => {
    // a lock of 60 s (BACKUP_TEST_LOCK_SECONDS): a server's lock passes on its own clock, which a test cannot move
    const { s3, env } = await lockedSetup('compliance', { BACKUP_RETENTION_DAYS: '1', BACKUP_RETENTION_MIN_COUNT: '1', BACKUP_TEST_LOCK_SECONDS: '60' });
    const old = await backup(env);
    const young = await backup(env);
    // the old backup's manifest says it was taken 3 days ago (a new, unlocked version; the locked one stays)
    const m = await s3Manifest(s3, PREFIX, old);
    await s3.put(`${PREFIX}${old}.manifest.json`, JSON.stringify({ ...m, created_at: new Date(Date.now() - 3 * DAY).toISOString() }));

    const dry = await cli(['prune', '--dry-run', '--trust-clock'], env);
    expect(dry.stdout).toMatch(new RegExp(`${old}.*would leave locked.*Object Lock holds it until`));
    expect(dry.stdout).toContain('0 would delete, 1 kept; 1 would be left for the Object Lock to pass');
    const first = await cli(['prune', '--trust-clock'], env);
    expect(first.stdout).toMatch(new RegExp(`${old}.*left locked.*Object Lock holds it until`));
    expect(first.stdout).toContain('0 deleted, 1 kept; 1 left for the Object Lock to pass');
    expect((await listOn(env)).map((b) => b.id)).toEqual([young, old]);

    const locks = await Promise.all((await versions(s3.client, s3.bucket, `${PREFIX}${old}.`)).map((v) => lockOf(s3, v)));
    const lastLock = Math.max(...locks.map((l) => l.until ?? 0));
    await waitFor(() => Date.now() > lastLock + 2000, 120_000, 'the lock of the old backup to pass');
    const second = await cli(['prune', '--trust-clock'], env);
    expect(second.stdout).toContain('1 deleted, 1 kept');
    expect(await versions(s3.client, s3.bucket, `${PREFIX}${old}.`)).toEqual([]);
    expect((await listOn(env)).map((b) => b.id)).toEqual([young]);
  }, 240_000);

  it('config check proves the lock on a canary: compliance refuses both deletes; governance with the owner key fails the bypass row, naming the fix', async () => {
    const { s3: locked, env } = await lockedSetup('compliance');
    const canaries = () => versions(locked.client, locked.bucket, `${PREFIX}.basement-backup-lock-canary`);
    const strict = await cli(['config', 'check'], env, null);
    expect(strict.stdout).toMatch(/Object Lock: delete plain\s*│ ok\s*│ this key cannot delete a locked version plainly/);
    expect(strict.stdout).toMatch(/Object Lock: delete with bypass\s*│ ok\s*│ this key cannot delete a locked version with the governance bypass header/);
    // the canary is reused while its lock holds: a second check writes no new version
    expect(await canaries()).toHaveLength(1);
    await cli(['config', 'check'], env, null);
    expect(await canaries()).toHaveLength(1);

    const { s3, env: soft } = await lockedSetup('governance');
    const weak = await cli(['config', 'check'], soft, 2);
    expect(weak.stdout).toMatch(/Object Lock: delete plain\s*│ ok/);
    expect(weak.stdout).toMatch(/Object Lock: delete with bypass\s*│ FAIL\s*│ this key deleted a locked version with the governance bypass header/);
    expect(weak.stdout).toContain('object_lock: compliance');
    expect(await versions(s3.client, s3.bucket, `${PREFIX}.basement-backup-lock-canary`)).toHaveLength(0);
  });

  it('a bucket without Object Lock given object_lock is refused at start, naming the fix; nothing is written', async () => {
    const s3 = await bucket();
    const db = await createWebserverDb();
    const env = backupEnv(db, tempDir(), { ...s3.env(PREFIX), BACKUP_LOCAL: 'false', S3_OBJECT_LOCK: 'governance' });
    const r = await cli(['backup'], env, 2);
    expect(r.stderr).toContain(`bucket ${s3.bucket} does not have Object Lock enabled`);
    expect(r.stderr).toContain('mc mb --with-lock');
    expect(r.stderr).toContain('docs/offsite.md#object-lock');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(await s3.keys('')).toEqual([]);
    const check = await cli(['config', 'check'], env, null);
    expect(check.stdout + check.stderr).toMatch(/target s3.*does not have Object Lock enabled/);
  });
});

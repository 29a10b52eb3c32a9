import {
  DeleteBucketPolicyCommand,
  DeleteObjectCommand,
  ListObjectVersionsCommand,
  PutBucketLifecycleConfigurationCommand,
  PutBucketPolicyCommand,
  PutBucketVersioningCommand,
} from '@aws-sdk/client-s3';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { LifecycleConfiguration } from '../../src/retention/lifecycle';
import { backupEnv, tempDir } from '../helpers/cli';
import { bucket, cli, listOn, s3Manifest, type Bucket } from '../helpers/offsite';
import { createWebserverDb } from '../helpers/pg';
import { s3Backend } from '../helpers/s3';
import { startTcpProxy } from '../helpers/tcp-proxy';

// Append-only targets (issue 22, points 3 and 4): `delete: false` never sends a delete, leaves
// retention to the bucket's lifecycle rules, and `config check` prints the rule and proves the
// key cannot delete. Against radosgw only: s3rver has no versions, lifecycle or bucket policies.

const DAY = 86400_000;
const PREFIX = 'append/';
const onS3rver = s3Backend().kind === 's3rver';
if (onS3rver)
  process.stderr.write('append-only.test.ts skipped: s3rver has no versioning, lifecycle rules or bucket policies; run with TEST_S3_SERVER=radosgw\n');

/** A bucket with versions on; every version is removed when the test finishes, so the bucket can go. */
async function versionedBucket(): Promise<Bucket> {
  const s3 = await bucket();
  await s3.client.send(new PutBucketVersioningCommand({ Bucket: s3.bucket, VersioningConfiguration: { Status: 'Enabled' } }));
  // runs before the bucket's own close (test hooks run last registered first)
  onTestFinished(async () => {
    await s3.client.send(new DeleteBucketPolicyCommand({ Bucket: s3.bucket })).catch(() => undefined);
    const r = await s3.client.send(new ListObjectVersionsCommand({ Bucket: s3.bucket }));
    for (const v of [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])])
      await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: v.Key!, VersionId: v.VersionId! }));
  });
  return s3;
}

/** The requests that passed a recording proxy in front of the bucket: method and path of each. */
async function recordingProxy(s3: Bucket): Promise<{ endpoint: string; requests(): { method: string; path: string }[] }> {
  const proxy = await startTcpProxy(s3.proxy.port, { record: true });
  onTestFinished(() => proxy.close());
  return {
    endpoint: proxy.endpoint,
    requests: () => [...proxy.sent().matchAll(/(?:^|\r\n)([A-Z]+) (\S+) HTTP\/1\.1\r\n/g)].map((m) => ({ method: m[1]!, path: m[2]! })),
  };
}

/** The JSON of the lifecycle rule `config check` printed after 'lifecycle.json:'. */
function printedLifecycle(stdout: string): LifecycleConfiguration {
  const m = /lifecycle\.json:\n(\{\n[\s\S]*?\n\})\n/.exec(stdout);
  expect(m, stdout).not.toBeNull();
  return JSON.parse(m![1]!) as LifecycleConfiguration;
}

describe.skipIf(onS3rver)('append-only targets (delete: false)', () => {
  it('no delete request ever reaches the bucket: backups, retention after a backup, prune, pin and unpin; retention is reported as lifecycle', async () => {
    const s3 = await versionedBucket();
    const proxy = await recordingProxy(s3);
    const db = await createWebserverDb();
    const env = backupEnv(db, tempDir(), {
      ...s3.env(PREFIX),
      S3_ENDPOINT: proxy.endpoint,
      BACKUP_LOCAL: 'false',
      S3_DELETE: 'false',
      BACKUP_RETENTION_DAYS: '1',
      BACKUP_RETENTION_MIN_COUNT: '1',
    });
    await cli(['backup'], env);
    const old = (await listOn(env))[0]!.id;
    // the old backup's manifest says it was taken 3 days ago (written past the proxy), and an old object no manifest owns
    const m = await s3Manifest(s3, PREFIX, old);
    await s3.put(`${PREFIX}${old}.manifest.json`, JSON.stringify({ ...m, created_at: new Date(Date.now() - 3 * DAY).toISOString() }));
    const orphan = `${PREFIX}${db}_20200101T000000Z.dump.zst`;
    await s3.put(orphan, 'left by a crash');
    const before = await s3.keys(PREFIX);

    const second = await cli(['backup'], env);
    expect(second.stdout).toContain("Retention deletes nothing (delete: false): 1 backup(s) past its rules stay for the bucket's lifecycle rules to expire.");
    const dry = await cli(['prune', '--dry-run', '--trust-clock'], env);
    expect(dry.stdout).toContain("s3 does not delete (delete: false): its backups expire by the bucket's lifecycle rules");
    const pruned = await cli(['prune', '--trust-clock'], env);
    for (const out of [dry.stdout, pruned.stdout]) {
      expect(out).toMatch(new RegExp(`${old}.*left to lifecycle.*the bucket's lifecycle rule expires it`));
      expect(out).toMatch(/_20200101T000000Z\.dump\.zst.*left to lifecycle.*no manifest owns it/);
      expect(out).toContain('0 deleted, 1 past retention left to lifecycle, 1 kept; 1 object(s) without a manifest left to lifecycle.');
    }
    const young = (await listOn(env))[0]!.id;
    // a pin cannot outlast the lifecycle rule (1 day's retention, plus one): the command says so
    const pinned = await cli(['pin', young, '--keep', 'forever'], env);
    expect(pinned.stderr).toContain('warning: s3 does not delete (delete: false): the lifecycle rule for its retention (2 days) expires this backup about');
    await cli(['unpin', young], env);

    expect((await listOn(env)).map((b) => b.id)).toEqual([young, old]);
    const after = await s3.keys(PREFIX);
    for (const key of [...before, orphan]) expect(after).toContain(key);
    const requests = proxy.requests();
    expect(requests.filter((r) => r.method === 'PUT').length, 'the proxy saw the uploads').toBeGreaterThan(5);
    expect(requests.filter((r) => r.method === 'DELETE' || (r.method === 'POST' && /[?&]delete(=|&|$)/.test(r.path)))).toEqual([]);
  });

  it("config check prints the lifecycle rule for the retention settings and checks versioning, the bucket's lifecycle and the key's delete rights", async () => {
    const s3 = await versionedBucket();
    const db = await createWebserverDb();
    const env = backupEnv(db, tempDir(), {
      ...s3.env(PREFIX),
      BACKUP_LOCAL: 'false',
      S3_DELETE: 'false',
      BACKUP_RETENTION_DAYS: '10',
      BACKUP_KEEP_WEEKLY: '4',
    });
    // the owner's key can delete: the delete-rights row fails, naming the fix; no lifecycle yet: a warning
    const open = await cli(['config', 'check'], env, 2);
    expect(open.stdout).toMatch(/target s3 versioning\s*│ ok\s*│ bucket \S+ keeps versions/);
    expect(open.stdout).toMatch(/target s3 lifecycle\s*│ WARN\s*│ bucket \S+ has no lifecycle configuration/);
    expect(open.stdout).toMatch(/target s3 delete rights\s*│ FAIL\s*│ this key deleted \.basement-backup-lock-canary/);
    expect(open.stdout).toContain('Give this target a key without s3:DeleteObject');
    // 4 ISO weeks (28 days and an hour) is the longest any rule keeps a backup, plus a day
    const lifecycle = printedLifecycle(open.stdout);
    expect(lifecycle.Rules).toHaveLength(1);
    expect(lifecycle.Rules[0]).toMatchObject({
      Status: 'Enabled',
      Filter: { Prefix: PREFIX },
      Expiration: { Days: 30 },
      NoncurrentVersionExpiration: { NoncurrentDays: 30 },
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
    });
    expect(open.stdout).toContain('a pin or --keep cannot be expressed');
    expect(open.stdout).toContain('the minimum count (7) cannot be expressed');

    // the operator applies the rule and denies deletes to the key (a bucket policy): both rows pass
    await s3.client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: s3.bucket, LifecycleConfiguration: lifecycle }));
    const policy = {
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Deny', Principal: { AWS: ['*'] }, Action: ['s3:DeleteObject', 's3:DeleteObjectVersion'], Resource: [`arn:aws:s3:::${s3.bucket}/*`] },
      ],
    };
    await s3.client.send(new PutBucketPolicyCommand({ Bucket: s3.bucket, Policy: JSON.stringify(policy) }));
    const closed = await cli(['config', 'check'], env, null);
    expect(closed.stdout).toMatch(/target s3 lifecycle\s*│ ok\s*│ rule "basement-backup s3" expires objects under "append\/" after 30 days/);
    expect(closed.stdout).toMatch(/target s3 delete rights\s*│ ok\s*│ this key cannot delete/);
    expect(closed.stdout).not.toMatch(/│ FAIL/);
    expect(closed.code).toBe(0);
  });

  it('a delete: false target on a bucket without versions fails the versioning row, naming the fix', async () => {
    const s3 = await bucket();
    const db = await createWebserverDb();
    const env = backupEnv(db, tempDir(), { ...s3.env(PREFIX), BACKUP_LOCAL: 'false', S3_DELETE: 'false' });
    const r = await cli(['config', 'check'], env, 2);
    expect(r.stdout).toMatch(/target s3 versioning\s*│ FAIL\s*│ bucket \S+ does not keep versions/);
    expect(r.stdout).toContain(`aws s3api put-bucket-versioning --bucket ${s3.bucket} --versioning-configuration Status=Enabled`);
  });
});

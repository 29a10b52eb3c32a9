import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../../scripts/lib/cluster';
import { backupEnv, runCli, tempDir } from '../helpers/cli';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { s3Backend, testBucket } from '../helpers/s3';
import { completedSegments, localWalObjects, ownCluster, sha256 } from '../helpers/wal';

// wal-push and wal-fetch, PostgreSQL's archive_command and restore_command, on real segments of a
// cluster of this file's own: what they store, what they refuse, and the exit codes PostgreSQL acts on.

let cluster: Cluster;
let segments: string[];
let segDir: string;

beforeAll(async () => {
  segDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-wal-'));
  cluster = await ownCluster();
  segments = await completedSegments(cluster, segDir, 4);
}, 120_000);
afterAll(() => {
  cluster?.stop();
  fs.rmSync(segDir, { recursive: true, force: true });
});

/** The environment of one test: a local target in `dir`, plus whatever `extra` adds. */
function walEnv(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return backupEnv('walarch', dir, extra);
}

describe('wal-push and wal-fetch', () => {
  it('stores a segment on every target under its content hash, accepts the same push again, and fetches back the same bytes', async () => {
    const s3 = await testBucket();
    const dir = tempDir();
    const env = walEnv(dir, s3.env('wal/'));
    const seg = segments[0]!;
    const name = path.basename(seg);
    const hash = sha256(fs.readFileSync(seg));
    const first = await runCli(['wal-push', seg], env);
    expect(first.code, first.stderr).toBe(0);
    expect(localWalObjects(path.join(dir, 'backups'), 'walarch')).toEqual([`${name}-${hash}.zst`]);
    expect(await s3.keys('wal/pitr/')).toEqual(['wal/pitr/walarch/archive.json', `wal/pitr/walarch/wal/${name}-${hash}.zst`]);
    const identity = JSON.parse(fs.readFileSync(path.join(dir, 'backups/pitr/walarch/archive.json'), 'utf8')) as {
      system_identifier: string;
      pg_version: number;
    };
    const [control] = await cluster.query<{ id: string }>('postgres', 'SELECT system_identifier::text AS id FROM pg_control_system()');
    expect(identity.system_identifier).toBe(control!.id);
    expect(identity.pg_version).toBe(Number(/\/(\d+)\/bin$/.exec(cluster.binDir)?.[1] ?? identity.pg_version));

    // PostgreSQL pushes a file again after a crash before it recorded the success: a success, nothing new
    const again = await runCli(['wal-push', seg], env);
    expect(again.code, again.stderr).toBe(0);
    expect(localWalObjects(path.join(dir, 'backups'), 'walarch')).toHaveLength(1);

    const dest = path.join(dir, 'RECOVERYXLOG');
    const fetched = await runCli(['wal-fetch', name, dest], env);
    expect(fetched.code, fetched.stderr).toBe(0);
    expect(sha256(fs.readFileSync(dest))).toBe(hash);
    // from S3 alone too (the local copy gone)
    fs.rmSync(path.join(dir, 'backups/pitr/walarch/wal'), { recursive: true });
    fs.rmSync(dest);
    const fromS3 = await runCli(['wal-fetch', name, dest], env);
    expect(fromS3.code, fromS3.stderr).toBe(0);
    expect(sha256(fs.readFileSync(dest))).toBe(hash);
  });

  it('encrypted: the stored object is not the segment, and wal-fetch with the identity gives it back', async () => {
    const dir = tempDir();
    const keyFile = path.join(dir, 'key.txt');
    const kg = await runCli(['keygen', '--out', keyFile], { PATH: process.env.PATH!, HOME: dir });
    const publicKey = /BACKUP_AGE_RECIPIENTS=(age1\S+)/.exec(kg.stdout)![1]!;
    const env = walEnv(dir, { BACKUP_AGE_RECIPIENTS: publicKey });
    const seg = segments[1]!;
    expect((await runCli(['wal-push', seg], env)).code).toBe(0);
    const [object] = localWalObjects(path.join(dir, 'backups'), 'walarch');
    expect(object).toMatch(/\.zst\.age$/);
    const stored = fs.readFileSync(path.join(dir, 'backups/pitr/walarch/wal', object!));
    expect(stored.subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    const dest = path.join(dir, 'out');
    const noKey = await runCli(['wal-fetch', path.basename(seg), dest], env);
    expect(noKey.code).toBe(126);
    expect(noKey.stderr).toContain('BACKUP_AGE_IDENTITY_FILE is not set');
    const withKey = await runCli(['wal-fetch', path.basename(seg), dest], { ...env, BACKUP_AGE_IDENTITY_FILE: keyFile });
    expect(withKey.code, withKey.stderr).toBe(0);
    expect(fs.readFileSync(dest).equals(fs.readFileSync(seg))).toBe(true);
  });

  it('refuses a different file under an archived name and a segment of another cluster (exit 38), overwriting nothing', async () => {
    const dir = tempDir();
    const env = walEnv(dir);
    const seg = segments[2]!;
    expect((await runCli(['wal-push', seg], env)).code).toBe(0);
    const before = localWalObjects(path.join(dir, 'backups'), 'walarch');

    // the next segment's bytes under this segment's name
    const impostor = path.join(dir, path.basename(seg));
    fs.copyFileSync(segments[3]!, impostor);
    const conflict = await runCli(['wal-push', impostor], env);
    expect(conflict.code).toBe(38);
    expect(conflict.stderr).toMatch(/a different \w+ is archived on local already/);
    expect(conflict.stderr).not.toMatch(/\n\s+at /);

    // the system identifier of another cluster in the header (bytes 24–31)
    const foreignDir = tempDir();
    const foreign = path.join(foreignDir, path.basename(segments[3]!));
    const bytes = fs.readFileSync(segments[3]!);
    bytes.writeBigUInt64LE(bytes.readBigUInt64LE(24) + 1n, 24);
    fs.writeFileSync(foreign, bytes);
    const other = await runCli(['wal-push', foreign], env);
    expect(other.code).toBe(38);
    expect(other.stderr).toMatch(/it is from database system \d+, and this archive holds the WAL of system \d+/);
    expect(localWalObjects(path.join(dir, 'backups'), 'walarch')).toEqual(before);

    // a file that is not a whole segment
    const cut = path.join(foreignDir, path.basename(segments[0]!));
    fs.writeFileSync(cut, fs.readFileSync(segments[0]!).subarray(0, 8192));
    expect((await runCli(['wal-push', cut], env)).code).toBe(38);
  });

  it('wal-fetch: 1 when no target holds the file, 126 (recovery stops) for a gap, a damaged copy or a target that cannot be read; another target with a good copy delivers', async () => {
    const s3 = await testBucket();
    const dir = tempDir();
    const env = walEnv(dir, s3.env('f/'));
    for (const s of [segments[0]!, segments[2]!]) expect((await runCli(['wal-push', s], env)).code).toBe(0);
    const dest = path.join(dir, 'RECOVERYXLOG');
    const last = path.basename(segments[3]!);

    // the end of the archive: nothing later is there
    const absent = await runCli(['wal-fetch', last, dest], env);
    expect(absent.code, absent.stderr).toBe(1);
    expect(fs.existsSync(dest)).toBe(false);
    expect((await runCli(['wal-fetch', '00000009.history', dest], env)).code).toBe(1);

    // a gap: segment 1 missing while segment 2 is archived
    const gap = await runCli(['wal-fetch', path.basename(segments[1]!), dest], env);
    expect(gap.code).toBe(126);
    expect(gap.stderr).toMatch(/is missing from the archive, but later WAL of its timeline is there/);

    // the local copy damaged: the S3 copy is delivered
    const name = path.basename(segments[0]!);
    const [object] = localWalObjects(path.join(dir, 'backups'), 'walarch');
    const file = path.join(dir, 'backups/pitr/walarch/wal', object!);
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    fs.writeFileSync(file, bytes);
    const healed = await runCli(['wal-fetch', name, dest], env);
    expect(healed.code, healed.stderr).toBe(0);
    expect(fs.readFileSync(dest).equals(fs.readFileSync(segments[0]!))).toBe(true);
    fs.rmSync(dest);

    // S3 down too: no good copy anywhere, and "absent" would be a lie
    await s3.proxy.cut();
    const down = await runCli(['wal-fetch', name, dest], env, { timeoutMs: 120_000 });
    expect(down.code).toBe(126);
    expect(down.stderr).toMatch(/could not be fetched/);
    expect(fs.existsSync(dest)).toBe(false);
    // and a segment no target could be asked about is not "absent" either
    const unknown = await runCli(['wal-fetch', last, dest], env, { timeoutMs: 120_000 });
    expect(unknown.code).toBe(126);
  }, 240_000);

  it('a target that accepts connections and never answers: wal-push fails within WAL_PUSH_TIMEOUT_SECONDS (exit 25), PostgreSQL keeps the file', async () => {
    const s3 = await testBucket();
    const dir = tempDir();
    s3.proxy.silence();
    const env = walEnv(dir, { ...s3.env('hung/'), WAL_PUSH_TIMEOUT_SECONDS: '3' });
    const started = Date.now();
    const r = await runCli(['wal-push', segments[0]!], env, { timeoutMs: 60_000 });
    expect(r.code).toBe(25);
    expect(r.stderr).toContain('did not finish within WAL_PUSH_TIMEOUT_SECONDS (3 s)');
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(fs.existsSync(segments[0]!)).toBe(true);
  });

  it.skipIf(s3Backend().kind === 's3rver')(
    'on a target with Object Lock, a WAL file is stored locked (compliance): the key on this server cannot delete it',
    async () => {
      const s3 = await testBucket({ objectLock: true });
      const dir = tempDir();
      const env = walEnv(dir, {
        ...s3.env('locked/'),
        BACKUP_LOCAL: 'false',
        S3_OBJECT_LOCK: 'compliance',
        BACKUP_RETENTION_DAYS: '1',
        BACKUP_KEEP_DAILY: '0',
        BACKUP_KEEP_WEEKLY: '0',
        BACKUP_KEEP_MONTHLY: '0',
        BACKUP_KEEP_YEARLY: '0',
      });
      const r = await runCli(['wal-push', segments[0]!], env);
      expect(r.code, r.stderr).toBe(0);
      const key = (await s3.keys('locked/pitr/walarch/wal/'))[0]!;
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }));
      expect(head.ObjectLockMode).toBe('COMPLIANCE');
      expect(head.ObjectLockRetainUntilDate!.getTime()).toBeGreaterThan(Date.now() + 23 * 3600_000);
    },
  );
});

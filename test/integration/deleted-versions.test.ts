import path from 'node:path';
import { DeleteObjectsCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { backupEnv, runCli, tempDir } from '../helpers/cli';
import { bucket, cli, listOn, type Bucket } from '../helpers/offsite';
import { createWebserverDb, query, restoreDbName, tableContents } from '../helpers/pg';
import { s3Backend } from '../helpers/s3';
import { verifyBackup } from '../../src/restore/verify';
import { appFor } from '../helpers/app';

// The day after (issue 22, point 2): a bucket with versioning emptied with the server's own key,
// as an attacker holding the server would; `list --deleted` finds the backups behind the delete
// markers, and restore, verify and sync --deleted read them by VersionId. The versioned bucket
// needs radosgw: s3rver has no versions. A local target, or a bucket without versioning, is
// refused with the fix on either server.

const PREFIX = 'prod/';
const onS3rver = s3Backend().kind === 's3rver';
if (onS3rver)
  process.stderr.write('deleted-versions.test.ts: the versioned-bucket tests are skipped: s3rver has no versioning; run with TEST_S3_SERVER=radosgw\n');

interface DeletedRow {
  id: string;
  created_at: string;
  label: string | null;
  state: string;
  deleted: boolean;
  deleted_at: string | null;
  target: string;
  file: string;
  roles_file: string | null;
  versions: Record<string, string>;
}

/** What an attacker with the server's key does: DeleteObjects of every current object in the bucket. Returns how many. */
async function emptyBucket(s3: Bucket): Promise<number> {
  const keys = await s3.keys('');
  const r = await s3.client.send(new DeleteObjectsCommand({ Bucket: s3.bucket, Delete: { Objects: keys.map((Key) => ({ Key })) } }));
  expect(r.Errors ?? []).toEqual([]);
  expect(await s3.keys('')).toEqual([]);
  return keys.length;
}

async function deletedJson(env: Record<string, string>): Promise<DeletedRow[]> {
  return JSON.parse((await cli(['list', '--target', 's3', '--deleted', '--json'], env)).stdout) as DeletedRow[];
}

/** A fresh machine: nothing of machine A but the settings (the same S3 target); its own BACKUP_DIR and state. */
function freshMachine(db: string, extra: Record<string, string> = {}): Record<string, string> {
  const dir = tempDir();
  return backupEnv(db, dir, { BACKUP_STATE_DIR: path.join(dir, 'state'), ...extra });
}

describe.skipIf(onS3rver)('a versioned bucket emptied with the server key', () => {
  it('list --deleted finds every backup; restore, verify and sync --deleted read them from their versions', async () => {
    const s3 = await bucket({ versioned: true });
    const db = await createWebserverDb(10);
    const envA = backupEnv(db, tempDir(), s3.env(PREFIX));
    await cli(['backup', '--label', 'one'], envA);
    await query(db, `INSERT INTO users (email, password_hash) VALUES ('two@example.test', 'x')`);
    await cli(['backup', '--label', 'two'], envA);
    const atTwo = await tableContents(db);
    await query(db, `INSERT INTO users (email, password_hash) VALUES ('three@example.test', 'x')`);
    await cli(['backup', '--label', 'three'], envA);
    const ids = (await listOn(envA, 's3')).map((b) => b.id);
    expect(ids).toHaveLength(3);

    expect(await emptyBucket(s3)).toBe(9); // data, manifest and roles of each
    const envB = freshMachine(db, s3.env(PREFIX));
    expect(await listOn(envB, 's3')).toEqual([]);
    // the daemon's drill proves what the bucket holds now: nothing, so it finds no backup rather than
    // passing on what the versions kept (the stale and undrilled warnings then say so)
    await expect(verifyBackup(appFor(envB), 'latest', { from: 's3', currentOnly: true })).rejects.toMatchObject({ code: 'NOT_FOUND' });

    const rows = await deletedJson(envB);
    expect(rows.map((r) => [r.id, r.label, r.state, r.deleted, r.target])).toEqual([
      [ids[0], 'three', 'ok', true, 's3'],
      [ids[1], 'two', 'ok', true, 's3'],
      [ids[2], 'one', 'ok', true, 's3'],
    ]);
    for (const r of rows) {
      expect(Object.keys(r.versions).sort()).toEqual([r.file, `${r.id}.manifest.json`, r.roles_file!].sort());
      expect(Date.parse(r.deleted_at!)).toBeGreaterThan(Date.parse(r.created_at) - 2000);
    }
    const table = await cli(['list', '--target', 's3', '--deleted'], envB);
    for (const id of ids) expect(table.stdout).toMatch(new RegExp(`${id} .*DELETED`));
    expect(table.stdout).toContain('restore ID --target s3');
    // without --deleted nothing changes: the bucket has no backup now
    expect((await cli(['list', '--target', 's3'], envB)).stdout).toMatch(/^No backups of /);

    const target = restoreDbName('deleted_two');
    const restored = await cli(['restore', ids[1]!, '--target', 's3', '--target-db', target], envB);
    expect(restored.stderr).toContain(`backup ${ids[1]} was found deleted on s3`);
    expect(await tableContents(target)).toEqual(atTwo);

    const v = await cli(['verify', ids[0]!, '--target', 's3', '--json'], envB);
    expect(JSON.parse(v.stdout)).toMatchObject({ id: ids[0], ok: true, checksum_ok: true });
    // the drill's record is not written beside a deleted backup: the bucket stays as the attacker left it
    expect(await s3.keys('')).toEqual([]);

    // sync --deleted copies them back: to the fresh machine's local target, and into the bucket as current objects again
    const copies = JSON.parse((await cli(['sync', '--deleted', '--json'], envB)).stdout) as { id: string; from: string; to: string; ok: boolean }[];
    expect(copies.every((c) => c.ok)).toBe(true);
    expect(copies.filter((c) => c.to === 'local').map((c) => [c.id, c.from])).toEqual(ids.map((id) => [id, 's3 (deleted)']));
    expect(copies.filter((c) => c.to === 's3').map((c) => c.id)).toEqual(ids);
    expect((await listOn(envB)).map((b) => [b.id, b.state])).toEqual(ids.map((id) => [id, 'ok']));
    expect((await listOn(envB, 's3')).map((b) => [b.id, b.state])).toEqual(ids.map((id) => [id, 'ok']));
    expect(await deletedJson(envB)).toEqual([]);
    const fromLocal = restoreDbName('deleted_local');
    await cli(['restore', ids[1]!, '--target-db', fromLocal], envB);
    expect(await tableContents(fromLocal)).toEqual(atTwo);
  });

  it('an encrypted backup deleted from the bucket restores on a fresh machine that holds the identity', async () => {
    const keyDir = tempDir();
    const keyFile = path.join(keyDir, 'key.txt');
    const k = await runCli(['keygen', '--out', keyFile], { PATH: process.env.PATH!, HOME: keyDir });
    const publicKey = /BACKUP_AGE_RECIPIENTS=(age1\S+)/.exec(k.stdout)?.[1];
    expect(publicKey, k.stdout + k.stderr).toBeDefined();
    const s3 = await bucket({ versioned: true });
    const db = await createWebserverDb(10);
    await cli(['backup'], backupEnv(db, tempDir(), { ...s3.env(PREFIX), BACKUP_LOCAL: 'false', BACKUP_AGE_RECIPIENTS: publicKey! }));
    await emptyBucket(s3);

    const envB = freshMachine(db, { ...s3.env(PREFIX), BACKUP_AGE_IDENTITY_FILE: keyFile });
    const [row] = await deletedJson(envB);
    expect(row!.file).toMatch(/\.age$/);
    const target = restoreDbName('deleted_enc');
    await cli(['restore', row!.id, '--target', 's3', '--target-db', target, '--with-roles'], envB);
    expect(await tableContents(target)).toEqual(await tableContents(db));
  });
});

describe('list --deleted where nothing keeps versions', () => {
  it('a local target: a configuration error that says to use an S3 target with versioning', async () => {
    const db = await createWebserverDb(3);
    const env = backupEnv(db, tempDir());
    await cli(['backup'], env);
    const r = await cli(['list', '--deleted'], env, 2);
    expect(r.stderr).toContain('local is a local directory: it keeps no versions');
    expect(r.stderr).toContain('docs/offsite.md#versioned-buckets');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('a bucket without versioning: a configuration error naming the fix, and restore of a missing id stays NOT_FOUND', async () => {
    const s3 = await bucket();
    const db = await createWebserverDb(3);
    const env = backupEnv(db, tempDir(), s3.env(PREFIX));
    await cli(['backup'], env);
    const r = await cli(['list', '--target', 's3', '--deleted', '--json'], env, 2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/s3: (bucket versioning is not on for|the S3 server of) .* (so a delete there is final|does not offer versioning)/);
    expect(r.stderr).toContain('Turn versioning on for the bucket');
    const missing = await cli(['restore', 'x_20200101T000000Z', '--target', 's3'], env, 30);
    expect(missing.stderr).toContain('no good backup "x_20200101T000000Z"');
  });
});

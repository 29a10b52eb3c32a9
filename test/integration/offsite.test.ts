import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/repository/manifest';
import { DUMP, backupEnv, backupFiles, tempDir } from '../helpers/cli';
import { backupKeys, bucket, cli, bigDbForThisFile, listOn, localManifest, MB, s3Manifest, sha256, syncJson, type Bucket } from '../helpers/offsite';
import { createWebserverDb, query, restoreDbName, tableContents, tableCounts } from '../helpers/pg';

// Off-site copies on S3 when every target answers: same bytes everywhere, several providers, a fresh machine, per-target retention.

const DAY = 86400_000;

/** The manifest with its times moved `days` into the past, as if the backup had been taken then. */
function aged(m: Manifest, days: number, now: number): string {
  const created = new Date(now - days * DAY);
  return JSON.stringify({ ...m, created_at: created.toISOString(), finished_at: new Date(created.getTime() + m.duration_ms).toISOString() }, null, 2) + '\n';
}

function ageLocal(dir: string, id: string, days: number, now: number): void {
  fs.writeFileSync(path.join(dir, 'backups', `${id}.manifest.json`), aged(localManifest(dir, id), days, now));
}

async function ageS3(s3: Bucket, prefix: string, id: string, days: number, now: number): Promise<void> {
  await s3.put(`${prefix}${id}.manifest.json`, aged(await s3Manifest(s3, prefix, id), days, now));
}

/** Every object of backup `id` under `prefix`: data, manifest, roles (and a drill record). */
function objectsOf(keys: string[], prefix: string, id: string): string[] {
  return keys.filter((k) => k.startsWith(`${prefix}${id}.`));
}

/** The big database shared by this file's tests that need several upload parts. */
const bigDb = bigDbForThisFile();

describe('off-site copies on S3', () => {
  it('a backup to local + S3 puts the same bytes, manifest and roles on both; s3 lists and verifies it', async () => {
    const s3 = await bucket();
    const db = await createWebserverDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, s3.env('basement/'));

    const r = await cli(['backup', '--label', 'first off-site'], env);
    expect(r.stdout).toContain('Stored on: local, s3.');
    expect(r.stderr).not.toContain('warning: not stored');

    const [local, ...moreLocal] = await listOn(env);
    expect(moreLocal).toEqual([]);
    const id = local!.id;
    expect(local!.file).toBe(path.join(dir, 'backups', `${id}${DUMP}`));
    expect(backupFiles(dir)).toEqual([`${id}${DUMP}`, `${id}.manifest.json`, `${id}.roles.sql`]);
    const localBytes = fs.readFileSync(local!.file);
    expect(sha256(localBytes)).toBe(local!.sha256);

    // The bucket holds the data, the manifest and the roles, under the prefix.
    expect(await s3.keys('')).toEqual(backupKeys('basement/', id));
    const remote = await s3.get(`basement/${id}${DUMP}`);
    expect(remote.length).toBe(localBytes.length);
    expect(sha256(remote)).toBe(sha256(localBytes));
    expect((await s3.get(`basement/${id}.roles.sql`)).toString()).toBe(fs.readFileSync(path.join(dir, 'backups', `${id}.roles.sql`), 'utf8'));

    // One manifest, the same on both, recording both targets as stored.
    const remoteManifest = await s3Manifest(s3, 'basement/', id);
    expect(remoteManifest).toEqual(localManifest(dir, id));
    expect(remoteManifest.roles_file).toBe(`${id}.roles.sql`);
    expect(remoteManifest.label).toBe('first off-site');
    expect(Object.keys(remoteManifest.targets!).sort()).toEqual(['local', 's3']);
    expect(remoteManifest.targets!.local!.state).toBe('stored');
    expect(remoteManifest.targets!.s3!.state).toBe('stored');

    const onS3 = await listOn(env, 's3');
    expect(onS3.map((b) => [b.id, b.file, b.state, b.sha256])).toEqual([[id, `${id}${DUMP}`, 'ok', local!.sha256]]);

    const sums = await cli(['verify', '--checksums-only', '--target', 's3', '--json'], env);
    expect(JSON.parse(sums.stdout)).toEqual([{ id, file: `${id}${DUMP}`, ok: true }]);

    const v = await cli(['verify', '--target', 's3', '--json'], env);
    const verdict = JSON.parse(v.stdout) as { id: string; ok: boolean; checksum_ok: boolean; tables_checked: number };
    expect(verdict).toMatchObject({ id, ok: true, checksum_ok: true, tables_checked: 7 });
    // The drill is recorded on the target it ran on.
    expect(await s3.keys('basement/')).toContain(`basement/${id}.verify.json`);
    expect((await listOn(env, 's3'))[0]!.verification?.ok).toBe(true);
    expect((await listOn(env))[0]!.verification).toBeUndefined();
  });

  it('a dump of several upload parts (S3_PART_SIZE_MB=5) is stored whole and restores from s3', async () => {
    const s3 = await bucket();
    const dir = tempDir();
    const env = backupEnv(bigDb(), dir, { ...s3.env(''), S3_PART_SIZE_MB: '5' });

    await cli(['backup'], env);
    const [m] = await listOn(env, 's3');
    expect(m!.state).toBe('ok');
    expect(m!.size_bytes).toBeGreaterThan(12 * MB);
    expect(await s3.keys('')).toEqual(backupKeys('', m!.id));
    const remote = await s3.get(m!.file);
    expect(remote.length).toBe(m!.size_bytes);
    expect(sha256(remote)).toBe(m!.sha256);
    expect(sha256(fs.readFileSync(path.join(dir, 'backups', m!.file)))).toBe(m!.sha256);

    const target = restoreDbName('offsite_parts');
    const r = await cli(['restore', '--target', 's3', '--target-db', target], env);
    expect(r.stdout).toContain(`Restored ${m!.id}`);
    expect(await tableCounts(target)).toEqual(await tableCounts(bigDb()));
    expect(await tableCounts(target)).toEqual({ 'public.blobs': 420000, 'public.notes': 1000 });
  });

  it('two S3 providers and local from a YAML BACKUP_CONFIG_FILE: all three hold every backup, each with its own retention', async () => {
    const spaces = await bucket();
    const b2 = await bucket();
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const file = path.join(dir, 'targets.yml');
    fs.writeFileSync(
      file,
      [
        'targets:',
        `  - { name: local, type: local, path: ${path.join(dir, 'backups')}, retention: { days: 7, min_count: 2 } }`,
        '  - name: spaces',
        '    type: s3',
        `    endpoint: ${spaces.endpoint}`,
        '    region: fra1',
        `    bucket: ${spaces.bucket}`,
        '    prefix: basement',
        '    access_key_id: ${SPACES_KEY}',
        '    secret_access_key: ${SPACES_SECRET}',
        '    force_path_style: true',
        '    retention: { days: 30, min_count: 3 }',
        '  - name: b2',
        '    type: s3',
        `    endpoint: ${b2.endpoint}`,
        '    region: eu-central-003',
        `    bucket: ${b2.bucket}`,
        '    prefix: offsite/db/',
        '    access_key_id: ${B2_KEY}',
        '    secret_access_key: ${B2_SECRET}',
        '    force_path_style: true',
        '    part_size_mb: 5',
        '    retention: { days: 90, min_count: 1 }',
        '',
      ].join('\n'),
    );
    const env = backupEnv(db, dir, {
      BACKUP_CONFIG_FILE: file,
      SPACES_KEY: spaces.accessKeyId,
      SPACES_SECRET: spaces.secretAccessKey,
      B2_KEY: b2.accessKeyId,
      B2_SECRET: b2.secretAccessKey,
    });
    const prefixes = { spaces: 'basement/', b2: 'offsite/db/' };

    for (const label of ['b1', 'b2', 'b3']) {
      const r = await cli(['backup', '--label', label], env);
      expect(r.stdout).toContain('Stored on: local, spaces, b2.');
    }
    const ids = (await listOn(env)).map((b) => b.id).reverse();
    expect(ids).toHaveLength(3);
    for (const target of ['spaces', 'b2'] as const) {
      const listed = await listOn(env, target);
      expect(listed.map((b) => b.id).reverse()).toEqual(ids);
      expect(listed.every((b) => b.state === 'ok')).toBe(true);
      const bucket = target === 'spaces' ? spaces : b2;
      const keys = await bucket.keys('');
      for (const id of ids) {
        expect(objectsOf(keys, prefixes[target], id)).toEqual(backupKeys(prefixes[target], id));
        const m = localManifest(dir, id);
        expect(sha256(await bucket.get(`${prefixes[target]}${m.file}`))).toBe(m.sha256);
        expect(await s3Manifest(bucket, prefixes[target], id)).toEqual(m);
        expect(Object.fromEntries(Object.entries(m.targets!).map(([k, t]) => [k, t.state]))).toEqual({ local: 'stored', spaces: 'stored', b2: 'stored' });
      }
    }

    // b1 and b2 become 40 days old everywhere: local (7 days, min 2) and spaces (30 days, min 3)
    // may drop them, b2 (90 days) keeps them.
    const now = Date.now();
    for (const id of ids.slice(0, 2)) {
      ageLocal(dir, id, 40, now);
      await ageS3(spaces, prefixes.spaces, id, 40, now);
      await ageS3(b2, prefixes.b2, id, 40, now);
    }
    const r = await cli(['backup', '--label', 'b4'], env);
    expect(r.stdout).toContain('Retention removed 2 old backup(s) from local.');
    expect(r.stdout).toContain('Retention removed 1 old backup(s) from spaces.');
    expect(r.stdout).not.toContain('from b2');

    const labels = async (target: string) => (await listOn(env, target)).map((b) => b.label);
    expect(await labels('local')).toEqual(['b4', 'b3']);
    expect(await labels('spaces')).toEqual(['b4', 'b3', 'b2']);
    expect(await labels('b2')).toEqual(['b4', 'b3', 'b2', 'b1']);
    expect(backupFiles(dir).filter((n) => n.startsWith(`${ids[0]!}.`) || n.startsWith(`${ids[1]!}.`))).toEqual([]);
    expect(objectsOf(await spaces.keys(''), prefixes.spaces, ids[0]!)).toEqual([]);
    expect(objectsOf(await spaces.keys(''), prefixes.spaces, ids[1]!)).toEqual(backupKeys(prefixes.spaces, ids[1]!));
    expect(objectsOf(await b2.keys(''), prefixes.b2, ids[0]!)).toEqual(backupKeys(prefixes.b2, ids[0]!));
  });

  it('a fresh machine with only the configuration lists, restores and verifies from the bucket; S3-only works without local storage', async () => {
    const s3 = await bucket();
    const db = await createWebserverDb(10);
    const machineA = tempDir();
    const envA = backupEnv(db, machineA, s3.env('prod/'));
    await cli(['backup', '--label', 'before'], envA);
    await query(db, `INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
    await cli(['backup', '--label', 'after'], envA);
    const idsA = (await listOn(envA)).map((b) => b.id);
    expect(idsA).toHaveLength(2);

    // The disk is lost: a new machine, empty BACKUP_DIR and state, the same S3 settings.
    const machineB = tempDir();
    const envB = backupEnv(db, machineB, { ...s3.env('prod/'), BACKUP_STATE_DIR: path.join(machineB, 'state') });
    expect(await listOn(envB)).toEqual([]);
    const onS3 = await listOn(envB, 's3');
    expect(onS3.map((b) => [b.id, b.label, b.state])).toEqual([
      [idsA[0], 'after', 'ok'],
      [idsA[1], 'before', 'ok'],
    ]);
    const table = await cli(['list', '--target', 's3'], envB);
    for (const id of idsA) expect(table.stdout).toContain(id);

    const latest = restoreDbName('offsite_fresh');
    await cli(['restore', '--target', 's3', '--target-db', latest], envB);
    expect(await tableContents(latest)).toEqual(await tableContents(db));
    const older = restoreDbName('offsite_fresh_old');
    await cli(['restore', idsA[1]!, '--target', 's3', '--target-db', older], envB);
    expect((await tableCounts(older))['public.users']).toBe((await tableCounts(db))['public.users']! - 1);

    const v = await cli(['verify', '--target', 's3', '--json'], envB);
    expect(JSON.parse(v.stdout)).toMatchObject({ id: idsA[0], ok: true, checksum_ok: true });
    expect(backupFiles(machineB)).toEqual([]);

    // S3 only: BACKUP_LOCAL=false; list and restore default to the bucket.
    const machineC = tempDir();
    const envC = backupEnv(db, machineC, { ...s3.env('s3only/'), BACKUP_LOCAL: 'false' });
    const r = await cli(['backup'], envC);
    expect(r.stdout).toMatch(/^Backup completed: \S+\.dump\.zst \(/);
    expect(r.stdout).not.toContain('Stored on');
    const [only, ...rest] = await listOn(envC);
    expect(rest).toEqual([]);
    expect(only!.file).toBe(`${only!.id}${DUMP}`);
    expect(only!.state).toBe('ok');
    expect(Object.keys(only!.targets!)).toEqual(['s3']);
    expect(await s3.keys('s3only/')).toEqual(backupKeys('s3only/', only!.id));
    expect(sha256(await s3.get(`s3only/${only!.file}`))).toBe(only!.sha256);
    expect(backupFiles(machineC)).toEqual([]);
    const fromOnly = restoreDbName('offsite_s3only');
    await cli(['restore', '--target-db', fromOnly], envC);
    expect(await tableContents(fromOnly)).toEqual(await tableContents(db));
  });

  it('per-target retention: local keeps 7 days, s3 90; sync does not copy back what local retention removed', async () => {
    const s3 = await bucket();
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, {
      ...s3.env('r/'),
      BACKUP_RETENTION_DAYS: '7',
      BACKUP_RETENTION_MIN_COUNT: '1',
      S3_RETENTION_DAYS: '90',
      S3_RETENTION_MIN_COUNT: '1',
    });
    for (const label of ['old1', 'old2', 'recent']) await cli(['backup', '--label', label], env);
    const byLabel = Object.fromEntries((await listOn(env)).map((b) => [b.label!, b.id]));
    const now = Date.now();
    for (const [label, days] of [
      ['old1', 30],
      ['old2', 20],
      ['recent', 3],
    ] as const) {
      ageLocal(dir, byLabel[label]!, days, now);
      await ageS3(s3, 'r/', byLabel[label]!, days, now);
    }

    const r = await cli(['backup', '--label', 'new'], env);
    expect(r.stdout).toContain('Retention removed 2 old backup(s) from local.');
    expect(r.stdout).not.toContain('from s3');
    expect((await listOn(env)).map((b) => b.label)).toEqual(['new', 'recent']);
    expect((await listOn(env, 's3')).map((b) => b.label)).toEqual(['new', 'recent', 'old2', 'old1']);
    expect(backupFiles(dir).filter((n) => n.startsWith(`${byLabel.old1!}.`) || n.startsWith(`${byLabel.old2!}.`))).toEqual([]);
    const keys = await s3.keys('r/');
    for (const label of ['old1', 'old2', 'recent']) expect(objectsOf(keys, 'r/', byLabel[label]!)).toEqual(backupKeys('r/', byLabel[label]!));

    // Only s3 has old1 and old2, outside local's 7 days: sync leaves them there.
    expect(await syncJson(env)).toEqual([]);
    expect((await listOn(env)).map((b) => b.label)).toEqual(['new', 'recent']);

    // A backup inside local's window that the local disk lost is copied back.
    const recent = byLabel.recent!;
    for (const n of backupFiles(dir).filter((f) => f.startsWith(`${recent}.`))) fs.rmSync(path.join(dir, 'backups', n));
    expect(await syncJson(env)).toEqual([{ id: recent, from: 's3', to: 'local', ok: true }]);
    expect((await listOn(env)).map((b) => b.label)).toEqual(['new', 'recent']);
    const back = localManifest(dir, recent);
    expect(back.targets!.local).toMatchObject({ state: 'synced', from: 's3' });
    expect(sha256(fs.readFileSync(path.join(dir, 'backups', back.file)))).toBe(back.sha256);
    expect(await syncJson(env)).toEqual([]);
  });
});

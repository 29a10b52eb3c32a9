import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ParsedMail } from 'mailparser';
import { freePort } from '../../scripts/lib/cluster';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { SyncCopy } from '../../src/backup/sync';
import type { Manifest } from '../../src/storage/manifest';
import { backupEnv, backupFiles, listJson, runCli, smtpEnv, spawnCli, tempDir, waitFor, type CliResult } from '../helpers/cli';
import { createTestDb, createWebserverDb, dropDb, query, tableCounts } from '../helpers/pg';
import { testBucket, type TestBucket } from '../helpers/s3';
import { smtpSink } from '../helpers/smtp';

/** A secret for targets that never authenticate (down, or refusing the key): it must never show either. */
const SECRET = 'offsite-SeCrEt-4f9d2c7a1e';
/** Every secret in play in this test: none may appear in any output. */
const SECRETS = new Set([SECRET]);
const MB = 1024 * 1024;
const DAY = 86400_000;
const HOST = os.hostname();

interface Listed extends Manifest {
  state: string;
}

function sha256(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Runs the CLI and checks that the S3 secret appears in none of its output. */
async function cli(args: string[], env: Record<string, string>, expectCode: number | null = 0): Promise<CliResult> {
  const r = await runCli(args, env);
  if (expectCode !== null) expect(r.code, `basement-backup ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(expectCode);
  for (const secret of SECRETS) expect(r.stdout + r.stderr).not.toContain(secret);
  return r;
}

/** `list --json` on a target (default: the first), newest first. */
async function listOn(env: Record<string, string>, target?: string): Promise<Listed[]> {
  return listJson<Listed>(env, target ? ['--target', target] : []);
}

async function syncJson(env: Record<string, string>): Promise<SyncCopy[]> {
  const r = await cli(['sync', '--json'], env);
  return JSON.parse(r.stdout) as SyncCopy[];
}

interface Bucket extends TestBucket {
  /** S3_* variables for a target under `prefix`. */
  env(prefix: string): Record<string, string>;
  /** The server goes down (as a provider outage would): connections refused; its data stays. */
  stop(): Promise<void>;
  /** It is back, on the same endpoint, with the same data. */
  restart(): Promise<void>;
}

/**
 * A fresh bucket of this run's S3 server (radosgw, or s3rver: test/helpers/s3.ts) behind a proxy
 * the test can cut, removed when the test finishes. Its secret joins the ones that must never show.
 */
async function bucket(): Promise<Bucket> {
  const b = await testBucket();
  SECRETS.add(b.secretAccessKey);
  onTestFinished(() => void SECRETS.delete(b.secretAccessKey));
  return Object.assign(b, { stop: () => b.proxy.cut(), restart: () => b.proxy.restore() });
}

function localManifest(dir: string, id: string): Manifest {
  return JSON.parse(fs.readFileSync(path.join(dir, 'backups', `${id}.manifest.json`), 'utf8')) as Manifest;
}

async function s3Manifest(s3: Bucket, prefix: string, id: string): Promise<Manifest> {
  return JSON.parse((await s3.get(`${prefix}${id}.manifest.json`)).toString('utf8')) as Manifest;
}

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

function backupKeys(prefix: string, id: string): string[] {
  return [`${prefix}${id}.dump`, `${prefix}${id}.manifest.json`, `${prefix}${id}.roles.sql`].sort();
}

/** Every table's row count and an md5 over its rows: equal only when the rows are identical. */
async function contents(database: string): Promise<Record<string, string>> {
  const tables = await query<{ s: string; t: string }>(
    database,
    `SELECT schemaname AS s, tablename AS t FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1, 2`,
  );
  const out: Record<string, string> = {};
  for (const { s, t } of tables) {
    const [r] = await query<{ n: string; h: string }>(
      database,
      `SELECT count(*)::text AS n, md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) AS h FROM "${s}"."${t}" x`,
    );
    out[`${s}.${t}`] = `${r!.n} rows, md5 ${r!.h}`;
  }
  return out;
}

/** A name for a database the test restores into, dropped when the test finishes. */
function restoreDbName(prefix: string): string {
  const name = `${prefix}_${crypto.randomBytes(4).toString('hex')}`;
  onTestFinished(() => dropDb(name));
  return name;
}

/** Every file below `dir` with its contents. */
function readTree(dir: string): { file: string; text: string }[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => ({ file: path.join(e.parentPath, e.name), text: fs.readFileSync(path.join(e.parentPath, e.name), 'latin1') }));
}

function mailText(m: ParsedMail): string {
  return `${m.subject ?? ''}\n${m.text ?? ''}\n${typeof m.html === 'string' ? m.html : ''}`;
}

/**
 * One database with a custom dump of well over 12 MB even compressed (random md5 text), and
 * about 30 MB uncompressed, shared by the tests that need several upload parts.
 */
let bigDb: string;
beforeAll(async () => {
  bigDb = await createTestDb('offsite_big', { keep: true });
  await query(bigDb, `CREATE TABLE blobs AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS a FROM generate_series(1, 420000) g`);
  await query(bigDb, `CREATE TABLE notes (id int PRIMARY KEY, note text); INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 1000) g`);
});
afterAll(async () => {
  if (bigDb) await dropDb(bigDb);
});

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
    expect(local!.file).toBe(path.join(dir, 'backups', `${id}.dump`));
    expect(backupFiles(dir)).toEqual([`${id}.dump`, `${id}.manifest.json`, `${id}.roles.sql`]);
    const localBytes = fs.readFileSync(local!.file);
    expect(sha256(localBytes)).toBe(local!.sha256);

    // The bucket holds the data, the manifest and the roles, under the prefix.
    expect(await s3.keys('')).toEqual(backupKeys('basement/', id));
    const remote = await s3.get(`basement/${id}.dump`);
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
    expect(onS3.map((b) => [b.id, b.file, b.state, b.sha256])).toEqual([[id, `${id}.dump`, 'ok', local!.sha256]]);

    const sums = await cli(['verify', '--checksums-only', '--target', 's3', '--json'], env);
    expect(JSON.parse(sums.stdout)).toEqual([{ id, file: `${id}.dump`, ok: true }]);

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
    const env = backupEnv(bigDb, dir, { ...s3.env(''), S3_PART_SIZE_MB: '5' });

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
    expect(await tableCounts(target)).toEqual(await tableCounts(bigDb));
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

  it('S3 stopped mid-upload: exit 0, the local copy is complete, the alert names s3, nothing partial in the bucket; sync completes the copy later', async () => {
    const s3 = await bucket();
    const sink = await smtpSink();
    const dir = tempDir();
    // Uncompressed, the dump is about 30 MB: seven 5 MB parts. The moment the server answers the
    // first part it stored, before the answer gets through, the server goes down; the uploader has
    // at most two parts in flight and one filling, so most of the dump is still unsent.
    const env = backupEnv(bigDb, dir, { ...s3.env('offsite/'), S3_PART_SIZE_MB: '5', BACKUP_COMPRESSION: '0', ...smtpEnv(sink.port) });
    const down = s3.proxy.whenUploadAnswered(5 * MB, () => void s3.stop());
    const backup = spawnCli(['backup'], env);
    await down;
    const partsStored = await s3.partsStored();
    const code = await backup.exited;
    const out = backup.output();
    expect(code, out).toBe(0);
    expect(out).toMatch(/warning: not stored on s3: s3: uploading part \d+ of offsite_big_\w+\.dump failed/);
    expect(out).not.toContain(SECRET);

    // The local copy is complete, checked and listed; its manifest says s3 failed and why.
    const [local, ...more] = await listOn(env);
    expect(more).toEqual([]);
    expect(local!.state).toBe('ok');
    expect(local!.size_bytes).toBeGreaterThan(25 * MB);
    expect(sha256(fs.readFileSync(local!.file))).toBe(local!.sha256);
    expect(backupFiles(dir)).toEqual([`${local!.id}.dump`, `${local!.id}.manifest.json`, `${local!.id}.roles.sql`]);
    const m = localManifest(dir, local!.id);
    // It really stopped mid-stream: some parts had arrived, not all.
    expect(partsStored).toBeGreaterThanOrEqual(1);
    expect(partsStored).toBeLessThan(Math.ceil(m.size_bytes / (5 * MB)));
    expect(m.targets!.local!.state).toBe('stored');
    expect(m.targets!.s3!.state).toBe('failed');
    expect(m.targets!.s3!.error).toMatch(/^s3: uploading part \d+ of .* failed: .*ECONNREFUSED/);

    const [mail] = await sink.waitFor(1);
    expect(mail!.subject).toBe(`[basement-backup] PROBLEM: Backup ${m.id} of ${bigDb} is safe on local but could not be stored on s3 on ${HOST}`);
    expect(mail!.text).toContain('s3: uploading part');
    expect(mail!.text).toContain('The copy on local is complete and checked.');
    expect(mail!.text).toContain('`basement-backup sync`');
    expect(mailText(mail!)).not.toContain(SECRET);

    // Back on the same port and data: nothing of the interrupted upload is visible.
    await s3.restart();
    expect(await s3.keys('')).toEqual([]);
    expect(await listOn(env, 's3')).toEqual([]);

    const copies = await syncJson(env);
    expect(copies).toEqual([{ id: m.id, from: 'local', to: 's3', ok: true }]);
    expect(await s3.keys('')).toEqual(backupKeys('offsite/', m.id));
    const remote = await s3.get(`offsite/${m.file}`);
    expect(remote.length).toBe(m.size_bytes);
    expect(sha256(remote)).toBe(m.sha256);
    const synced = await s3Manifest(s3, 'offsite/', m.id);
    expect(synced.sha256).toBe(m.sha256);
    expect(synced.targets!.s3).toMatchObject({ state: 'synced', from: 'local' });
    expect(synced.targets!.local!.state).toBe('stored');

    const v = await cli(['verify', '--target', 's3'], env);
    expect(v.stdout).toMatch(/PASSED/);
    expect(await syncJson(env)).toEqual([]);
    const again = await cli(['sync'], env);
    expect(again.stdout).toContain('Every target has every backup it should keep.');
    expect(sink.mails).toHaveLength(1);
  });

  it('an S3 endpoint that accepts connections and never answers: backup finishes in bounded time, local complete and checked, the alert names s3; config check, status and list --target s3 answer quickly and name it', async () => {
    const s3 = await bucket();
    const sink = await smtpSink();
    const db = await createWebserverDb(5);
    const dir = tempDir();
    s3.proxy.silence();
    const env = backupEnv(db, dir, { ...s3.env('silent/'), S3_TIMEOUT_SECONDS: '2', ...smtpEnv(sink.port) });
    const noAnswer = /no answer from http:\/\/127\.0\.0\.1:\d+ within 2 s/;

    let started = Date.now();
    const r = await cli(['backup'], env);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(r.stdout).toContain('Stored on: local.');
    expect(r.stderr).toMatch(new RegExp(`warning: not stored on s3: s3: listing the unfinished uploads under silent/ failed: ${noAnswer.source}`));

    // The local copy is complete, checked and listed, and nothing else is in BACKUP_DIR.
    const [local, ...more] = await listOn(env);
    expect(more).toEqual([]);
    expect(local!.state).toBe('ok');
    expect(sha256(fs.readFileSync(local!.file))).toBe(local!.sha256);
    expect(backupFiles(dir)).toEqual([`${local!.id}.dump`, `${local!.id}.manifest.json`, `${local!.id}.roles.sql`]);
    const m = localManifest(dir, local!.id);
    expect(m.targets!.local!.state).toBe('stored');
    expect(m.targets!.s3!.state).toBe('failed');
    expect(m.targets!.s3!.error).toMatch(noAnswer);

    const [mail] = await sink.waitFor(1);
    expect(mail!.subject).toBe(`[basement-backup] PROBLEM: Backup ${m.id} of ${db} is safe on local but could not be stored on s3 on ${HOST}`);
    expect(mail!.text).toMatch(noAnswer);
    expect(mail!.text).toContain('accepted the connection but stopped answering');
    expect(mail!.text).toContain('S3_TIMEOUT_SECONDS');

    started = Date.now();
    const check = await cli(['config', 'check'], env, 2);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(check.stdout).toMatch(new RegExp(`target s3 *│ *FAIL *│ *s3: listing silent/ failed: ${noAnswer.source}`));
    expect(check.stdout).toMatch(/target local *│ *ok/);

    started = Date.now();
    const status = await cli(['status'], env);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(status.stdout).toMatch(new RegExp(`target s3 *│ *UNREACHABLE: s3: listing silent/ failed: ${noAnswer.source}`));
    expect(status.stdout).toContain(m.file);
    const json = JSON.parse((await cli(['status', '--json'], env)).stdout) as { targets: { name: string; error: string | null; count: number | null }[] };
    expect(json.targets.map((t) => [t.name, t.count, t.error !== null])).toEqual([
      ['local', 1, false],
      ['s3', null, true],
    ]);

    started = Date.now();
    const list = await cli(['list', '--target', 's3'], env, 23);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(list.stderr).toMatch(
      new RegExp(
        `^basement-backup: a storage target failed: s3: listing silent/ failed: ${noAnswer.source}\n  fix: The s3 target's endpoint accepted the connection but stopped answering`,
      ),
    );
    expect(list.stderr).not.toMatch(/\bat .*\.js:\d+/);

    // Nothing half-written: once the endpoint answers again, the bucket holds nothing.
    await s3.restart();
    expect(await s3.keys()).toEqual([]);
    if (s3.kind === 'radosgw') expect(await s3.uploads()).toEqual([]);
  });

  it('S3 goes silent mid-upload: the backup completes on local in bounded time; the upload the server could not be told to drop is removed by the next backup', async () => {
    const s3 = await bucket();
    const sink = await smtpSink();
    const dir = tempDir();
    const env = backupEnv(bigDb, dir, { ...s3.env('offsite/'), S3_PART_SIZE_MB: '5', S3_TIMEOUT_SECONDS: '2', BACKUP_COMPRESSION: '0', ...smtpEnv(sink.port) });
    // the server stores the first part; its answer and everything after it are swallowed
    const silenced = s3.proxy.whenUploadAnswered(5 * MB, () => s3.proxy.silence());
    const started = Date.now();
    const r = await cli(['backup'], env);
    await silenced;
    // each part: 3 attempts of 2 s; the abort request: 2 s
    expect(Date.now() - started).toBeLessThan(45_000);
    expect(r.stdout).toContain('Stored on: local.');
    expect(r.stderr).toMatch(/warning: not stored on s3: s3: uploading part \d of offsite_big_\w+\.dump failed: no answer from .* within 2 s/);

    const [local] = await listOn(env);
    expect(local!.state).toBe('ok');
    expect(sha256(fs.readFileSync(local!.file))).toBe(local!.sha256);
    const m = localManifest(dir, local!.id);
    expect(m.targets!.s3!.state).toBe('failed');
    const [mail] = await sink.waitFor(1);
    expect(mail!.subject).toContain('is safe on local but could not be stored on s3');

    await s3.restart();
    expect(await s3.keys()).toEqual([]);
    if (s3.kind === 'radosgw') expect((await s3.uploads())!.map((u) => u.key)).toEqual([`offsite/${m.file}`]);

    // The next backup aborts the leftover before it starts its own upload.
    const next = await cli(['backup'], env);
    expect(next.stdout).toContain('Stored on: local, s3.');
    const [newest] = await listOn(env, 's3');
    expect(await s3.keys()).toEqual(backupKeys('offsite/', newest!.id));
    if (s3.kind === 'radosgw') {
      expect(next.stderr).toMatch(new RegExp(`removed leftovers of an interrupted backup.*${m.file}`));
      expect(await s3.uploads()).toEqual([]);
    }
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
    expect(await contents(latest)).toEqual(await contents(db));
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
    expect(r.stdout).toMatch(/^Backup completed: \S+\.dump \(/);
    expect(r.stdout).not.toContain('Stored on');
    const [only, ...rest] = await listOn(envC);
    expect(rest).toEqual([]);
    expect(only!.file).toBe(`${only!.id}.dump`);
    expect(only!.state).toBe('ok');
    expect(Object.keys(only!.targets!)).toEqual(['s3']);
    expect(await s3.keys('s3only/')).toEqual(backupKeys('s3only/', only!.id));
    expect(sha256(await s3.get(`s3only/${only!.file}`))).toBe(only!.sha256);
    expect(backupFiles(machineC)).toEqual([]);
    const fromOnly = restoreDbName('offsite_s3only');
    await cli(['restore', '--target-db', fromOnly], envC);
    expect(await contents(fromOnly)).toEqual(await contents(db));
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

  it('the S3 credentials never appear in output, logs, manifests or alert mails, also when the target fails', async () => {
    const sink = await smtpSink();
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const keyId = 'AKIAOFFSITETEST7Q2X';
    const outputs: string[] = [];
    const run = async (args: string[], env: Record<string, string>, code: number | null = 0) => {
      const r = await cli(args, env, code);
      outputs.push(r.stdout, r.stderr);
      return r;
    };

    // 1. The endpoint is down from the start.
    const down = await freePort();
    const envDown = backupEnv(db, dir, {
      S3_ENDPOINT: `http://127.0.0.1:${down}`,
      S3_BUCKET: 'backups',
      S3_ACCESS_KEY_ID: keyId,
      S3_SECRET_ACCESS_KEY: SECRET,
      S3_FORCE_PATH_STYLE: 'true',
      LOG_LEVEL: 'debug',
      ...smtpEnv(sink.port),
    });
    const r1 = await run(['backup'], envDown);
    expect(r1.stderr).toMatch(/warning: not stored on s3: s3: listing the unfinished uploads under \/ failed: .*ECONNREFUSED/);
    const [first] = await listOn(envDown);
    expect(localManifest(dir, first!.id).targets!.s3!.state).toBe('failed');
    await sink.waitFor(1);
    expect(sink.mails[0]!.subject).toContain('is safe on local but could not be stored on s3');
    expect((await run(['list', '--target', 's3'], envDown, 23)).stderr).toMatch(/s3: listing \/ failed: .*ECONNREFUSED/);
    await run(['verify', '--checksums-only', '--target', 's3'], envDown, 23);
    // sync cannot tell what an unreachable target lacks: it says so and fails.
    const syncDown = await run(['sync'], envDown, 23);
    expect(syncDown.stderr).toMatch(/sync cannot reach s3: s3: listing \/ failed: .*ECONNREFUSED/);
    expect(syncDown.stdout).not.toContain('Every target has every backup');
    await run(['status', '--json'], envDown);
    const check = await run(['config', 'check'], envDown, null);
    expect(check.stdout).toMatch(/S3_SECRET_ACCESS_KEY\s*│\s*\*\*\*/);

    // 2. A live server that refuses the access key (s3rver knows only S3RVER).
    const s3 = await bucket();
    const envRefused = { ...envDown, ...s3.env('sec/'), S3_ACCESS_KEY_ID: keyId };
    const r2 = await run(['backup'], envRefused);
    expect(r2.stderr).toMatch(/warning: not stored on s3: s3: listing the unfinished uploads under sec\/ failed: InvalidAccessKeyId \(HTTP 403\)/);
    await sink.waitFor(2);
    expect(await s3.keys('')).toEqual([]);

    // 3. A BACKUP_CONFIG_FILE with the secret written in it, its target down.
    const file = path.join(dir, 'targets.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        targets: [
          { name: 'local', type: 'local', path: path.join(dir, 'backups') },
          {
            name: 'offsite',
            type: 's3',
            endpoint: `http://127.0.0.1:${down}`,
            bucket: 'backups',
            access_key_id: keyId,
            secret_access_key: SECRET,
            force_path_style: true,
          },
        ],
      }),
    );
    const envFile = { ...backupEnv(db, dir, { BACKUP_CONFIG_FILE: file, LOG_LEVEL: 'debug', ...smtpEnv(sink.port) }) };
    const r3 = await run(['backup'], envFile);
    expect(r3.stderr).toMatch(/warning: not stored on offsite: offsite: listing the unfinished uploads under \/ failed/);
    await sink.waitFor(3);
    expect(sink.mails[2]!.subject).toContain('is safe on local but could not be stored on offsite');
    expect((await run(['sync'], envFile, 23)).stderr).toMatch(/sync cannot reach offsite/);
    await run(['config', 'check'], envFile, null);

    const places = [
      ...outputs.map((text, i) => ({ file: `output ${i}`, text })),
      ...readTree(path.join(dir, 'logs')),
      ...readTree(path.join(dir, 'backups')).filter((f) => !f.file.endsWith('.dump')),
      ...sink.mails.map((m, i) => ({ file: `mail ${i}`, text: mailText(m) })),
    ];
    expect(places.some((p) => p.file.endsWith('basement-backup.jsonl'))).toBe(true);
    expect(places.some((p) => p.file.endsWith('.manifest.json'))).toBe(true);
    for (const p of places) {
      expect(p.text, p.file).not.toContain(SECRET);
      expect(p.text, p.file).not.toContain(keyId);
    }
  });

  it('the daemon syncs after a scheduled backup: a backup taken while S3 was down reaches it on a later run', async () => {
    const s3 = await bucket();
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, { ...s3.env('daemon/'), BACKUP_SCHEDULE: '*/2 * * * * *', BACKUP_CATCH_UP: 'false', VERIFY_SCHEDULE: 'off' });
    await s3.stop();
    const d = spawnCli(['daemon'], env);

    // The first scheduled backup finds S3 down: it is kept locally and s3 recorded as failed.
    const manifests = () => backupFiles(dir).filter((n) => n.endsWith('.manifest.json'));
    await waitFor(() => manifests().length >= 1, 20_000, 'the first scheduled backup');
    const firstId = manifests()[0]!.replace('.manifest.json', '');
    const first = localManifest(dir, firstId);
    expect(first.trigger).toBe('schedule');
    expect(first.targets!.s3!.state).toBe('failed');

    await s3.restart();
    await waitFor(
      async () => {
        const keys = await s3.keys('daemon/').catch((): string[] => []);
        return keys.includes(`daemon/${firstId}.manifest.json`) && keys.filter((k) => k.endsWith('.manifest.json')).length >= 2;
      },
      20_000,
      'the earlier backup to be synced to s3 and a later one stored there',
    );
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
    expect(d.output()).toContain('sync: copied a backup');
    expect(d.output()).not.toContain(SECRET);

    const synced = await s3Manifest(s3, 'daemon/', firstId);
    expect(synced.targets!.s3).toMatchObject({ state: 'synced', from: 'local' });
    expect(sha256(await s3.get(`daemon/${first.file}`))).toBe(first.sha256);
    const onS3 = await listOn(env, 's3');
    expect(onS3.map((b) => b.id)).toContain(firstId);
    expect(onS3.every((b) => b.state === 'ok')).toBe(true);
    await cli(['verify', '--checksums-only', '--target', 's3'], env);
  });
});

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { ParsedMail } from 'mailparser';
import { freePort } from '../../scripts/lib/cluster';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { SyncCopy } from '../../src/backup/sync';
import type { Manifest } from '../../src/storage/manifest';
import { backupEnv, backupFiles, runCli, smtpEnv, spawnCli, tempDir, waitFor, type CliResult } from '../helpers/cli';
import { createTestDb, createWebserverDb, dropDb, query, tableCounts } from '../helpers/pg';
import { startS3, type S3Server } from '../helpers/s3';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp';

/** The S3 secret every run gets: s3rver does not check signatures, so any value works, and it must never show. */
const SECRET = 'offsite-SeCrEt-4f9d2c7a1e';
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
  expect(r.stdout + r.stderr).not.toContain(SECRET);
  return r;
}

/** `list --json` on a target (default: the first), newest first. */
async function listJson(env: Record<string, string>, target?: string): Promise<Listed[]> {
  const r = await cli(['list', '--json', ...(target ? ['--target', target] : [])], env);
  return JSON.parse(r.stdout) as Listed[];
}

async function syncJson(env: Record<string, string>): Promise<SyncCopy[]> {
  const r = await cli(['sync', '--json'], env);
  return JSON.parse(r.stdout) as SyncCopy[];
}

interface Bucket {
  port: number;
  endpoint: string;
  bucket: string;
  dir: string;
  /** S3_* variables for a target under `prefix`, with the distinctive secret. */
  env(prefix: string): Record<string, string>;
  /** Stops the server (as a provider outage would); its data stays in `dir`. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  restart(): Promise<void>;
  /** Object keys under `prefix`, sorted, read through the S3 API. */
  keys(prefix: string): Promise<string[]>;
  get(key: string): Promise<Buffer>;
  put(key: string, body: string): Promise<void>;
}

/** A real s3rver on loopback, closed when the test finishes (also after a stop or restart). */
async function s3rver(): Promise<Bucket> {
  const dir = tempDir('bb-s3-');
  let server: S3Server | undefined = await startS3({ dir });
  const { port, endpoint, bucket } = server;
  const first = server;
  const baseEnv = (prefix: string) => first.env(prefix);
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  onTestFinished(async () => {
    client.destroy();
    const s = server;
    server = undefined;
    await s?.close();
  });
  return {
    port,
    endpoint,
    bucket,
    dir,
    env: (prefix) => ({ ...baseEnv(prefix), S3_SECRET_ACCESS_KEY: SECRET }),
    async stop() {
      const s = server;
      server = undefined;
      await s?.close();
    },
    async restart() {
      server = await startS3({ port, dir, bucket });
    },
    async keys(prefix) {
      const out: string[] = [];
      let token: string | undefined;
      do {
        const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        out.push(...(r.Contents ?? []).map((c) => c.Key!));
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
      return out.sort();
    },
    async get(key) {
      const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await r.Body!.transformToByteArray());
    },
    async put(key, body) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
  };
}

async function smtpSink(): Promise<SmtpSink> {
  const sink = await startSmtpSink();
  onTestFinished(() => sink.close());
  return sink;
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

/** The directory where s3rver keeps the parts of the one multipart upload in progress. */
async function multipartUploadDir(s3: Bucket): Promise<string> {
  const uploads = path.join(s3.dir, s3.bucket, '._S3rver_uploads');
  let found: string | undefined;
  await waitFor(
    () => {
      const dirs = fs.existsSync(uploads) ? fs.readdirSync(uploads).map((u) => path.join(uploads, u)) : [];
      found = dirs.find((d) => fs.existsSync(path.join(d, 'key')));
      return found !== undefined;
    },
    30_000,
    'a multipart upload to start',
  );
  return found!;
}

/** Resolves as soon as `file` exists: watched, not polled, so nothing much happens in between. */
function fileAppears(file: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!fs.existsSync(file)) return;
      finish();
      resolve();
    };
    const watcher = fs.watch(path.dirname(file), check);
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`timed out waiting for ${file}`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      watcher.close();
    };
    check();
  });
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
    const s3 = await s3rver();
    const db = await createWebserverDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, s3.env('basement/'));

    const r = await cli(['backup', '--label', 'first off-site'], env);
    expect(r.stdout).toContain('Stored on: local, s3.');
    expect(r.stderr).not.toContain('warning: not stored');

    const [local, ...moreLocal] = await listJson(env);
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

    const onS3 = await listJson(env, 's3');
    expect(onS3.map((b) => [b.id, b.file, b.state, b.sha256])).toEqual([[id, `${id}.dump`, 'ok', local!.sha256]]);

    const sums = await cli(['verify', '--checksums-only', '--target', 's3', '--json'], env);
    expect(JSON.parse(sums.stdout)).toEqual([{ id, file: `${id}.dump`, ok: true }]);

    const v = await cli(['verify', '--target', 's3', '--json'], env);
    const verdict = JSON.parse(v.stdout) as { id: string; ok: boolean; checksum_ok: boolean; tables_checked: number };
    expect(verdict).toMatchObject({ id, ok: true, checksum_ok: true, tables_checked: 7 });
    // The drill is recorded on the target it ran on.
    expect(await s3.keys('basement/')).toContain(`basement/${id}.verify.json`);
    expect((await listJson(env, 's3'))[0]!.verification?.ok).toBe(true);
    expect((await listJson(env))[0]!.verification).toBeUndefined();
  });

  it('a dump of several upload parts (S3_PART_SIZE_MB=5) is stored whole and restores from s3', async () => {
    const s3 = await s3rver();
    const dir = tempDir();
    const env = backupEnv(bigDb, dir, { ...s3.env(''), S3_PART_SIZE_MB: '5' });

    await cli(['backup'], env);
    const [m] = await listJson(env, 's3');
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
    const spaces = await s3rver();
    const b2 = await s3rver();
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
    const env = backupEnv(db, dir, { BACKUP_CONFIG_FILE: file, SPACES_KEY: 'S3RVER', SPACES_SECRET: SECRET, B2_KEY: 'S3RVER', B2_SECRET: SECRET });
    const prefixes = { spaces: 'basement/', b2: 'offsite/db/' };

    for (const label of ['b1', 'b2', 'b3']) {
      const r = await cli(['backup', '--label', label], env);
      expect(r.stdout).toContain('Stored on: local, spaces, b2.');
    }
    const ids = (await listJson(env)).map((b) => b.id).reverse();
    expect(ids).toHaveLength(3);
    for (const target of ['spaces', 'b2'] as const) {
      const listed = await listJson(env, target);
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

    const labels = async (target: string) => (await listJson(env, target)).map((b) => b.label);
    expect(await labels('local')).toEqual(['b4', 'b3']);
    expect(await labels('spaces')).toEqual(['b4', 'b3', 'b2']);
    expect(await labels('b2')).toEqual(['b4', 'b3', 'b2', 'b1']);
    expect(backupFiles(dir).filter((n) => n.startsWith(`${ids[0]!}.`) || n.startsWith(`${ids[1]!}.`))).toEqual([]);
    expect(objectsOf(await spaces.keys(''), prefixes.spaces, ids[0]!)).toEqual([]);
    expect(objectsOf(await spaces.keys(''), prefixes.spaces, ids[1]!)).toEqual(backupKeys(prefixes.spaces, ids[1]!));
    expect(objectsOf(await b2.keys(''), prefixes.b2, ids[0]!)).toEqual(backupKeys(prefixes.b2, ids[0]!));
  });

  it('S3 stopped mid-upload: exit 0, the local copy is complete, the alert names s3, nothing partial in the bucket; sync completes the copy later', async () => {
    const s3 = await s3rver();
    const sink = await smtpSink();
    const dir = tempDir();
    // Uncompressed, the dump is about 30 MB: seven 5 MB parts. The uploader has at most two parts
    // in flight and one filling, and s3rver runs in this process, so when the watch sees the first
    // part stored and stops the server at once, most of the dump is still unsent.
    const env = backupEnv(bigDb, dir, { ...s3.env('offsite/'), S3_PART_SIZE_MB: '5', BACKUP_COMPRESSION: '0', ...smtpEnv(sink.port) });
    const backup = spawnCli(['backup'], env);
    const upload = await multipartUploadDir(s3);
    await fileAppears(path.join(upload, '1.md5'), 30_000);
    await s3.stop();
    const partsStored = fs.readdirSync(upload).filter((n) => /^\d+\.md5$/.test(n)).length;
    const code = await backup.exited;
    const out = backup.output();
    expect(code, out).toBe(0);
    expect(out).toMatch(/warning: not stored on s3: s3: uploading part \d+ of offsite_big_\w+\.dump failed/);
    expect(out).not.toContain(SECRET);

    // The local copy is complete, checked and listed; its manifest says s3 failed and why.
    const [local, ...more] = await listJson(env);
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
    expect(await listJson(env, 's3')).toEqual([]);

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

  it('a fresh machine with only the configuration lists, restores and verifies from the bucket; S3-only works without local storage', async () => {
    const s3 = await s3rver();
    const db = await createWebserverDb(10);
    const machineA = tempDir();
    const envA = backupEnv(db, machineA, s3.env('prod/'));
    await cli(['backup', '--label', 'before'], envA);
    await query(db, `INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
    await cli(['backup', '--label', 'after'], envA);
    const idsA = (await listJson(envA)).map((b) => b.id);
    expect(idsA).toHaveLength(2);

    // The disk is lost: a new machine, empty BACKUP_DIR and state, the same S3 settings.
    const machineB = tempDir();
    const envB = backupEnv(db, machineB, { ...s3.env('prod/'), BACKUP_STATE_DIR: path.join(machineB, 'state') });
    expect(await listJson(envB)).toEqual([]);
    const onS3 = await listJson(envB, 's3');
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
    const [only, ...rest] = await listJson(envC);
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
    const s3 = await s3rver();
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
    const byLabel = Object.fromEntries((await listJson(env)).map((b) => [b.label!, b.id]));
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
    expect((await listJson(env)).map((b) => b.label)).toEqual(['new', 'recent']);
    expect((await listJson(env, 's3')).map((b) => b.label)).toEqual(['new', 'recent', 'old2', 'old1']);
    expect(backupFiles(dir).filter((n) => n.startsWith(`${byLabel.old1!}.`) || n.startsWith(`${byLabel.old2!}.`))).toEqual([]);
    const keys = await s3.keys('r/');
    for (const label of ['old1', 'old2', 'recent']) expect(objectsOf(keys, 'r/', byLabel[label]!)).toEqual(backupKeys('r/', byLabel[label]!));

    // Only s3 has old1 and old2, outside local's 7 days: sync leaves them there.
    expect(await syncJson(env)).toEqual([]);
    expect((await listJson(env)).map((b) => b.label)).toEqual(['new', 'recent']);

    // A backup inside local's window that the local disk lost is copied back.
    const recent = byLabel.recent!;
    for (const n of backupFiles(dir).filter((f) => f.startsWith(`${recent}.`))) fs.rmSync(path.join(dir, 'backups', n));
    expect(await syncJson(env)).toEqual([{ id: recent, from: 's3', to: 'local', ok: true }]);
    expect((await listJson(env)).map((b) => b.label)).toEqual(['new', 'recent']);
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
    expect(r1.stderr).toMatch(/warning: not stored on s3: s3: .*ECONNREFUSED/);
    const [first] = await listJson(envDown);
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
    const s3 = await s3rver();
    const envRefused = { ...envDown, ...s3.env('sec/'), S3_ACCESS_KEY_ID: keyId };
    const r2 = await run(['backup'], envRefused);
    expect(r2.stderr).toMatch(/warning: not stored on s3: s3: .*InvalidAccessKeyId \(HTTP 403\)/);
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
    expect(r3.stderr).toMatch(/warning: not stored on offsite: offsite: (starting the upload|listing)/);
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
    const s3 = await s3rver();
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
    const onS3 = await listJson(env, 's3');
    expect(onS3.map((b) => b.id)).toContain(firstId);
    expect(onS3.every((b) => b.state === 'ok')).toBe(true);
    await cli(['verify', '--checksums-only', '--target', 's3'], env);
  });
});

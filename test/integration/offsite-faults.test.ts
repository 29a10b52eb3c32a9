import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ParsedMail } from 'mailparser';
import { freePort } from '../../scripts/lib/cluster';
import { describe, expect, it } from 'vitest';
import { DUMP, backupEnv, backupFiles, smtpEnv, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { backupKeys, bucket, cli, bigDbForThisFile, listOn, localManifest, MB, s3Manifest, SECRET, sha256, syncJson } from '../helpers/offsite';
import { createWebserverDb } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';

// Off-site copies on S3 when it fails: stopped or silent mid-upload, an endpoint that never answers, secrets kept out of every output, the daemon's sync; split from offsite.test.ts so the two halves run in parallel.

const HOST = os.hostname();

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

/** The big database shared by this file's tests that need several upload parts. */
const bigDb = bigDbForThisFile();

describe('off-site copies on S3', () => {
  it('S3 stopped mid-upload: exit 0, the local copy is complete, the alert names s3, nothing partial in the bucket; sync completes the copy later', async () => {
    const s3 = await bucket();
    const sink = await smtpSink();
    const dir = tempDir();
    // Uncompressed, the dump is about 30 MB: seven 5 MB parts. The moment the server answers the
    // first part it stored, before the answer gets through, the server goes down; the uploader has
    // at most two parts in flight and one filling, so most of the dump is still unsent.
    const env = backupEnv(bigDb(), dir, { ...s3.env('offsite/'), S3_PART_SIZE_MB: '5', BACKUP_COMPRESSION: '0', ...smtpEnv(sink.port) });
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
    expect(mail!.subject).toBe(`[basement-backup] PROBLEM: Backup ${m.id} of ${bigDb()} is safe on local but could not be stored on s3 on ${HOST}`);
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
    expect(await s3.keys('')).toEqual(backupKeys('offsite/', m.id, '.dump')); // BACKUP_COMPRESSION=0
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
    expect(backupFiles(dir)).toEqual([`${local!.id}${DUMP}`, `${local!.id}.manifest.json`, `${local!.id}.roles.sql`]);
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
    const env = backupEnv(bigDb(), dir, {
      ...s3.env('offsite/'),
      S3_PART_SIZE_MB: '5',
      S3_TIMEOUT_SECONDS: '2',
      BACKUP_COMPRESSION: '0',
      ...smtpEnv(sink.port),
    });
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
    expect(await s3.keys()).toEqual(backupKeys('offsite/', newest!.id, '.dump'));
    if (s3.kind === 'radosgw') {
      expect(next.stderr).toMatch(new RegExp(`removed leftovers of an interrupted backup.*${m.file}`));
      expect(await s3.uploads()).toEqual([]);
    }
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
      ...readTree(path.join(dir, 'backups')).filter((f) => !f.file.endsWith(DUMP)),
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

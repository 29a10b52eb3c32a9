import { ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Status } from '../../src/backup/status';
import type { Verification } from '../../src/repository/manifest';
import { backupEnv, runCli, smtpEnv, spawnCli, tempDir, waitFor, type Spawned } from '../helpers/cli';
import { backupsDir } from '../helpers/damaged';
import { exactly, smallDb } from '../helpers/daemon';
import { request } from '../helpers/http';
import { bucket, cli, listOn, type Listed } from '../helpers/offsite';
import { s3Backend } from '../helpers/s3';
import { smtpSink } from '../helpers/smtp';

// Issue 22, points 5 and 6: the daemon's drills reach every target, each read from that target
// alone, recorded there; list, status, the early warnings and /healthz show the last drill per
// target; status shows per target whether its copies are encrypted and immutable.

const HOST = os.hostname();
/** Once a year: no scheduled backup during a test. */
const YEARLY = '0 0 1 1 *';
const DAY = 86400_000;
const onS3rver = s3Backend().kind === 's3rver';
if (onS3rver) process.stderr.write('drills-per-target.test.ts: the locked-target test skipped: s3rver has no Object Lock; run with TEST_S3_SERVER=radosgw\n');

type Drilled = Listed & { drills: { target: string; ok: boolean; verified_at: string }[] };

async function status(env: Record<string, string>): Promise<Status> {
  return JSON.parse((await cli(['status', '--json'], env)).stdout) as Status;
}

const targetOf = (s: Status, name: string) => s.targets.find((t) => t.name === name)!;

async function stop(d: Spawned): Promise<void> {
  d.child.kill('SIGTERM');
  expect(await d.exited, d.output().slice(-3000)).toBe(0);
}

/** `keygen --out` in `dir`: the identity file and its public key. */
async function keygen(dir: string): Promise<{ file: string; publicKey: string }> {
  const file = path.join(dir, 'key.txt');
  const r = await runCli(['keygen', '--out', file], { PATH: process.env.PATH!, HOME: dir });
  expect(r.code, r.stderr).toBe(0);
  return { file, publicKey: /BACKUP_AGE_RECIPIENTS=(age1\S+)/.exec(r.stdout)![1]! };
}

describe('restore drills of every target', () => {
  it('the daemon drills the off-site copy from the bucket alone, then each target in turn; list and status show the drill per target', async () => {
    const s3 = await bucket();
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { ...s3.env('dr/'), BACKUP_SCHEDULE: YEARLY, BACKUP_CATCH_UP: 'false', VERIFY_SCHEDULE: '*/3 * * * * *' });
    await cli(['backup'], env);
    const [m] = await listOn(env, 's3');
    // the server's disk lost the backup's data: only the bucket's copy can be drilled
    const local = path.join(backupsDir(dir), m!.file);
    const away = path.join(tempDir(), m!.file);
    fs.renameSync(local, away);

    const first = spawnCli(['daemon'], env);
    await first.waitForOutput(/restore drill passed .*target=s3/, 60_000);
    await stop(first);
    expect(first.output()).toContain('restore drill of the newest backup on s3, read from s3 alone');
    expect(first.output()).not.toMatch(/restore drill FAILED|restore drill passed .*target=local/);
    expect(await s3.keys('dr/')).toContain(`dr/${m!.id}.verify.json`);
    expect(fs.existsSync(path.join(backupsDir(dir), `${m!.id}.verify.json`))).toBe(false);
    const onS3 = JSON.parse((await s3.get(`dr/${m!.id}.verify.json`)).toString()) as Verification;
    expect(onS3).toMatchObject({ kind: 'drill', ok: true, checksum_ok: true, error: null });
    let s = await status(env);
    expect(targetOf(s, 's3').last_drill).toMatchObject({ id: m!.id, ok: true, verified_at: onS3.verified_at, restore_ms: onS3.restore_ms });
    expect(targetOf(s, 'local').last_drill).toBeNull();

    // the data is back: local, never drilled, has its turn, then s3 again
    fs.renameSync(away, local);
    const second = spawnCli(['daemon'], env);
    await second.waitForOutput(/restore drill passed .*target=local[^]*restore drill passed .*target=s3/, 60_000);
    await stop(second);
    const order = [...second.output().matchAll(/restore drill passed .*target=(\w+)/g)].map((x) => x[1]);
    expect(order.slice(0, 2)).toEqual(['local', 's3']);

    s = await status(env);
    for (const t of ['local', 's3']) expect(targetOf(s, t).last_drill, t).toMatchObject({ id: m!.id, ok: true });
    const text = (await cli(['status'], env)).stdout;
    expect(text).toMatch(/target s3 .*\n.*last drill: PASSED \S+ on \S+, restore took \d+\.\ds/);
    expect(text).toMatch(/encrypted: no, immutable: no \(no object_lock\)/);
    const [row] = await runCli(['list', '--json'], env).then((r) => JSON.parse(r.stdout) as Drilled[]);
    expect(row!.drills.map((d) => d.target).sort()).toEqual(['local', 's3']);
    expect(row!.drills.every((d) => d.ok)).toBe(true);
    // the table's last column (wrapped onto several lines) names each target's drill
    const verified = (await cli(['list'], env)).stdout
      .split('\n')
      .map((l) => l.split('│').at(-2)?.trim() ?? '')
      .join(' ');
    expect(verified).toMatch(/ok \d{4}-\d\d-\d\d \d\d:\d\d on local, ok \d{4}-\d\d-\d\d \d\d:\d\d on s3/);
  }, 180_000); // two daemons, each waiting for its drills, and a dozen commands

  it('a target not drilled within twice its drill interval: one warning, /healthz red; a drill of it: one clear, /healthz green', async () => {
    const s3 = await bucket();
    const db = await smallDb();
    const dir = tempDir();
    const sink = await smtpSink();
    // drills daily, rotating between two targets: each every 2 days, overdue after 4
    const env = backupEnv(db, dir, { ...s3.env('od/'), ...smtpEnv(sink.port), VERIFY_SCHEDULE: '0 4 * * *' });
    await cli(['backup'], env);
    await cli(['verify'], env);
    await cli(['verify', '--target', 's3'], env);
    const [m] = await listOn(env, 's3');
    // the record of the s3 drill made 5 days old, as if the drills had not reached s3 since
    const key = `od/${m!.id}.verify.json`;
    const record = JSON.parse((await s3.get(key)).toString()) as Verification;
    await s3.put(key, JSON.stringify({ ...record, verified_at: new Date(Date.now() - 5 * DAY).toISOString() }));

    const d = spawnCli(['daemon'], {
      ...env,
      BACKUP_SCHEDULE: YEARLY,
      BACKUP_CATCH_UP: 'false',
      BACKUP_CHECK_MINUTES: '0.02',
      LOG_LEVEL: 'debug',
      BACKUP_HTTP_PORT: '0',
    });
    await d.waitForOutput(/status page at http:\/\/\S+\//);
    const url = /status page at (http:\/\/\S+\/),/.exec(d.output())![1]!;
    const title = `The copies of ${db} on s3 are not drilled`;
    expect(await exactly(sink, d, 1)).toEqual([`[basement-backup] WARNING: ${title} on ${HOST}`]);
    expect(sink.mails[0]!.text).toMatch(/The last restore drill of a backup read from s3 was at \S+, 5d 0h ago \(expected every 2d 0h\)\./);
    expect(sink.mails[0]!.text).toContain('basement-backup verify --target s3');
    const red = await request(`${url}healthz`);
    expect(red.status).toBe(503);
    expect((JSON.parse(red.body) as { reasons: { title: string }[] }).reasons.map((r) => r.title)).toEqual([title]);
    const metrics = (await request(`${url}metrics`)).body;
    expect(metrics).toMatch(new RegExp(`basement_backup_warning\\{database="${db}",kind="target-drill-overdue"\\} 1`));
    expect(metrics).toMatch(new RegExp(`basement_backup_target_drill_success\\{database="${db}",target="s3"\\} 1`));

    await cli(['verify', '--target', 's3'], env);
    expect(await exactly(sink, d, 2)).toEqual([`[basement-backup] WARNING: ${title} on ${HOST}`, `[basement-backup] CLEARED: ${title} on ${HOST}`]);
    await waitFor(async () => (await request(`${url}healthz`)).status === 200, 30_000, '/healthz to turn 200 after the drill of s3');
    await stop(d);
  });

  it('status shows per target whether its copies are encrypted and immutable', async () => {
    const s3 = await bucket();
    const db = await smallDb();
    const dir = tempDir();
    const { publicKey } = await keygen(dir);
    const env = backupEnv(db, dir, { ...s3.env('enc/'), BACKUP_AGE_RECIPIENTS: publicKey });
    let s = await status(env);
    expect(s.targets.map((t) => [t.name, t.encrypted, t.immutable])).toEqual([
      ['local', null, 'none'],
      ['s3', null, 'none'],
    ]);
    await cli(['backup'], env);
    s = await status(env);
    expect(s.targets.map((t) => [t.name, t.encrypted, t.immutable])).toEqual([
      ['local', true, 'none'],
      ['s3', true, 'none'],
    ]);
    const text = (await cli(['status'], env)).stdout;
    expect(text.match(/encrypted: yes, immutable: no \(no object_lock\)/g)).toHaveLength(2);
  });
});

describe.skipIf(onS3rver)('restore drills of a locked target', () => {
  it('an encrypted backup under compliance lock: the daemon drills it from the bucket, each drill recorded as a new version; status says it answers scenario 4', async () => {
    const s3 = await bucket({ objectLock: true });
    const db = await smallDb();
    const dir = tempDir();
    const key = await keygen(dir);
    const env = backupEnv(db, dir, {
      ...s3.env('lk/'),
      S3_OBJECT_LOCK: 'compliance',
      BACKUP_TEST_LOCK_SECONDS: '60',
      BACKUP_AGE_RECIPIENTS: key.publicKey,
      BACKUP_AGE_IDENTITY_FILE: key.file,
      BACKUP_SCHEDULE: YEARLY,
      BACKUP_CATCH_UP: 'false',
      VERIFY_SCHEDULE: '*/3 * * * * *',
    });
    await cli(['backup'], env);
    await cli(['verify'], env); // local drilled: the rotation's next turn is s3
    const [m] = await listOn(env, 's3');
    const d = spawnCli(['daemon'], env);
    await d.waitForOutput(/restore drill passed .*target=s3/, 60_000);
    await stop(d);
    // a later drill adds a version of the record: the locked one stays
    await cli(['verify', '--target', 's3'], env);
    const records = await s3.client.send(new ListObjectVersionsCommand({ Bucket: s3.bucket, Prefix: `lk/${m!.id}.verify.json` }));
    expect(records.Versions ?? []).toHaveLength(2);
    expect(records.DeleteMarkers ?? []).toEqual([]);
    const s = await status(env);
    expect(targetOf(s, 's3')).toMatchObject({ encrypted: true, immutable: 'compliance', last_drill: { id: m!.id, ok: true } });
    expect(targetOf(s, 'local')).toMatchObject({ encrypted: true, immutable: 'none' });
    expect((await cli(['status'], env)).stdout).toContain(
      'encrypted: yes, immutable: yes (Object Lock, compliance); a stolen server can neither read nor delete them (README scenario 4)',
    );
  });
});

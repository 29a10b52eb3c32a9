import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startCluster, type Cluster } from '../../scripts/lib/cluster';
import type { BaseManifest } from '../../src/wal/base-manifest';
import { parseLsn } from '../../src/wal/segment';
import { runCli, smtpEnv, spawnCli, tempDir, waitFor, type CliResult, type Spawned } from '../helpers/cli';
import { testBucket, type TestBucket } from '../helpers/s3';
import { smtpSink } from '../helpers/smtp';

// basebackup: pg_basebackup through the pipeline to every target, good only once its WAL is
// archived. The cluster archives with `cp` into ARCHDIR (owned by postgres); the test plays the
// WAL receiver, pushing what appears there with the CLI's wal-push, as root (another user than
// PostgreSQL, as on the server).

let cluster: Cluster;
let archDir: string;

beforeAll(async () => {
  archDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-arch-'));
  if (process.getuid?.() === 0) {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres']).toString().trim());
    fs.chownSync(archDir, id('-u'), id('-g'));
  }
  cluster = await startCluster({ settings: { archive_mode: 'on', archive_command: `cp %p ${archDir}/%f` } });
  await cluster.query('postgres', "CREATE ROLE norep LOGIN PASSWORD 'norep-pw'");
  await cluster.query('postgres', 'CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 20000) g');
}, 120_000);

afterAll(() => {
  cluster?.stop();
  fs.rmSync(archDir, { recursive: true, force: true });
});

const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/faketime/libfaketime.so.1'].find((f) => fs.existsSync(f));

function env(dir: string, extra: Record<string, string | undefined> = {}): Record<string, string> {
  const all: Record<string, string | undefined> = {
    PATH: process.env.PATH,
    HOME: process.env.HOME ?? '/root',
    DB_HOST: cluster.host,
    DB_PORT: String(cluster.port),
    DB_USER: cluster.user,
    DB_PASSWORD: cluster.password,
    DB_NAME: 'postgres',
    PG_BIN_DIR: cluster.binDir,
    BACKUP_DIR: path.join(dir, 'backups'),
    LOG_DIR: path.join(dir, 'logs'),
    BACKUP_MIN_FREE_MB: '0',
    ...extra,
  };
  return Object.fromEntries(Object.entries(all).filter((e): e is [string, string] => e[1] !== undefined));
}

/** The base backup objects (not archive.json, not the WAL) in the local archive. */
function localBase(dir: string): string[] {
  const root = path.join(dir, 'backups', 'pitr', 'postgres');
  return fs.existsSync(root) ? fs.readdirSync(root).filter((n) => n.startsWith('base_')) : [];
}

/**
 * Plays the WAL receiver while `work` runs: every file PostgreSQL archives into ARCHDIR is pushed
 * to the targets of `e` with `wal-push`. Returns what `work` returned, once the pusher stopped.
 */
async function pushingWal<T>(e: Record<string, string>, work: () => Promise<T>): Promise<T> {
  let stop = false;
  const pushed = new Set<string>();
  const loop = (async () => {
    while (!stop) {
      for (const f of fs.readdirSync(archDir).sort()) {
        if (pushed.has(f) || f.endsWith('.backup')) continue;
        const r = await runCli(['wal-push', path.join(archDir, f)], e);
        if (r.code !== 0) throw new Error(`wal-push ${f} exited ${r.code}: ${r.stderr}`);
        pushed.add(f);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  try {
    return await work();
  } finally {
    stop = true;
    await loop;
  }
}

/** Waits until no walsender is left on the server: a stopped pg_basebackup's backup has ended there (one left streaming would hold it and its connection slot). */
async function walsendersGone(): Promise<void> {
  await waitFor(
    async () =>
      (await cluster.query<{ n: string }>('postgres', "SELECT count(*)::text AS n FROM pg_stat_activity WHERE backend_type = 'walsender'"))[0]!.n === '0',
    10_000,
    "pg_basebackup's walsender to end",
  );
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const lsn = async () => (await cluster.query<{ l: string }>('postgres', 'SELECT pg_current_wal_lsn()::text AS l'))[0]!.l;

/** The tar stream of a stored base backup, opened with the standard CLIs as docs/pitr.md tells. */
function openTar(stored: Buffer, keyFile?: string): { tar: Buffer; decrypted?: Buffer } {
  const decrypted = keyFile ? execFileSync('age', ['-d', '-i', keyFile], { input: stored, maxBuffer: 1 << 30 }) : undefined;
  const tar = execFileSync('zstd', ['-dc'], { input: decrypted ?? stored, maxBuffer: 1 << 30 });
  return { tar, decrypted };
}

function tarMembers(tar: Buffer, dir: string): string[] {
  const file = path.join(dir, 'base.tar');
  fs.writeFileSync(file, tar);
  return execFileSync('tar', ['tf', file]).toString().split('\n').filter(Boolean);
}

async function checkStored(r: CliResult, dir: string, s3: TestBucket, keyFile?: string, before?: string): Promise<BaseManifest> {
  expect(r.code, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as { id: string; stored: string[]; manifest: BaseManifest };
  expect(out.stored).toEqual(['local', 's3']);
  const m = out.manifest;
  const root = path.join(dir, 'backups', 'pitr', 'postgres');
  const record = JSON.parse(fs.readFileSync(path.join(root, `${m.id}.base.json`), 'utf8')) as BaseManifest;
  expect(record).toEqual(m);
  expect(JSON.parse((await s3.get(`pitr/postgres/${m.id}.base.json`)).toString())).toEqual(m);
  // the record's fields: the cluster, and LSNs inside the WAL written around the backup
  const sysid = (await cluster.query<{ s: string }>('postgres', 'SELECT system_identifier::text AS s FROM pg_control_system()'))[0]!.s;
  expect(m.system_identifier).toBe(sysid);
  expect(m.pg_version).toBe(Number((await cluster.query<{ v: string }>('postgres', "SELECT current_setting('server_version_num') AS v"))[0]!.v.slice(0, -4)));
  if (before) expect(parseLsn(m.start_lsn) >= parseLsn(before)).toBe(true);
  expect(parseLsn(m.start_lsn) <= parseLsn(m.stop_lsn)).toBe(true);
  expect(parseLsn(m.stop_lsn) <= parseLsn(await lsn())).toBe(true);
  expect(m.wal_first).toBe(
    `00000001${m.start_lsn.split('/')[0]!.padStart(8, '0')}${(parseInt(m.start_lsn.split('/')[1]!, 16) >>> 24).toString(16).toUpperCase().padStart(8, '0')}`,
  );
  expect(fs.existsSync(path.join(archDir, m.wal_last))).toBe(true);
  // the stored object, the same on both targets, opens with zstd (and age) to pg_basebackup's tar
  const file = path.join(root, m.file);
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  const stored = fs.readFileSync(file);
  expect(sha256(await s3.get(`pitr/postgres/${m.file}`))).toBe(m.sha256);
  expect([stored.length, sha256(stored)]).toEqual([m.size_bytes, m.sha256]);
  const { tar, decrypted } = openTar(stored, keyFile);
  if (decrypted) expect(sha256(decrypted)).toBe(m.plain_sha256);
  // pg_basebackup compressed it (zstd): the stream was not read, so the size of the databases stands for the tar's
  if (m.compression.startsWith('zstd')) expect(Math.abs(m.source_bytes - tar.length)).toBeLessThan(tar.length * 0.25);
  else expect(tar.length).toBe(m.source_bytes);
  // the recorded range holds the one pg_basebackup wrote into its backup_manifest
  const manifest = JSON.parse(execFileSync('tar', ['-xOf', '-', 'backup_manifest'], { input: tar }).toString()) as {
    'WAL-Ranges': { Timeline: number; 'Start-LSN': string; 'End-LSN': string }[];
  };
  const real = manifest['WAL-Ranges'][0]!;
  expect(real.Timeline).toBe(m.timeline);
  // the start is the backup's own (its backup_label's: read off the head of a stream pg_basebackup compressed)
  expect(parseLsn(m.start_lsn)).toBe(parseLsn(real['Start-LSN']));
  expect(parseLsn(m.stop_lsn) >= parseLsn(real['End-LSN'])).toBe(true);
  const members = tarMembers(tar, dir);
  expect(members).toEqual(expect.arrayContaining(['backup_label', 'backup_manifest', 'PG_VERSION', 'global/pg_control']));
  expect(members.some((n) => n.startsWith('base/'))).toBe(true);
  return m;
}

describe('basebackup', () => {
  it('to a local and an S3 target: the record is right and the stored tar opens with zstd; list --base shows it, and a crash leftover is removed', async () => {
    const dir = tempDir();
    const s3 = await testBucket();
    const e = env(dir, s3.env());
    // what a crash between the data and its record left: unfinished, removed by the next run
    const root = path.join(dir, 'backups', 'pitr', 'postgres');
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(root, 'base_20200101T000000Z.tar.zst'), 'half', { mode: 0o600 });
    const listed = JSON.parse((await runCli(['list', '--base', '--json'], e)).stdout) as { id: string; state: string }[];
    expect(listed).toEqual([expect.objectContaining({ id: 'base_20200101T000000Z', state: 'UNFINISHED', in_progress: false })]);

    const before = await lsn();
    const r = await pushingWal(e, () => runCli(['basebackup', '--json'], e, { timeoutMs: 120_000 }));
    const m = await checkStored(r, dir, s3, undefined, before);
    expect(m.compression).toBe('zstd:1');
    expect(m.encryption).toBeNull();
    expect(localBase(dir).sort()).toEqual([`${m.id}.base.json`, m.file]);

    const rows = JSON.parse((await runCli(['list', '--base', '--json'], e)).stdout) as Record<string, unknown>[];
    expect(rows).toEqual([
      expect.objectContaining({ target: 'local', id: m.id, state: 'ok', start_lsn: m.start_lsn, stop_lsn: m.stop_lsn, timeline: 1, size_bytes: m.size_bytes }),
      expect.objectContaining({ target: 's3', id: m.id, state: 'ok', compression: 'zstd:1', encrypted: false }),
    ]);
    const table = await runCli(['list', '--base'], e);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(m.id);
    expect(table.stdout).toContain(m.stop_lsn);

    // data of another size than its record says: DAMAGED, with why
    fs.appendFileSync(path.join(root, m.file), 'x');
    const damaged = JSON.parse((await runCli(['list', '--base', '--json', '--target', 'local'], e)).stdout) as Record<string, unknown>[];
    expect(damaged).toEqual([expect.objectContaining({ id: m.id, state: 'DAMAGED', damage: expect.stringContaining(`${m.size_bytes}`) as unknown })]);
  }, 180_000);

  it('encrypted, to a local and an S3 target: nothing readable stored, age -d | zstd -dc gives the tar the record names', async () => {
    if (spawnSync('age', ['--version']).status !== 0) throw new Error('the age CLI is not installed: apt-get install age');
    const dir = tempDir();
    const s3 = await testBucket();
    const keyFile = path.join(dir, 'key.txt');
    const kg = await runCli(['keygen', '--out', keyFile], { PATH: process.env.PATH!, HOME: dir });
    const recipient = /BACKUP_AGE_RECIPIENTS=(age1\S+)/.exec(kg.stdout)![1]!;
    const e = env(dir, { ...s3.env(), BACKUP_AGE_RECIPIENTS: recipient });
    const r = await pushingWal(e, () => runCli(['basebackup', '--json'], e, { timeoutMs: 120_000 }));
    const m = await checkStored(r, dir, s3, keyFile);
    expect(m.file).toMatch(/\.tar\.zst\.age$/);
    expect(m.encryption).toEqual({ format: 'age', recipients: [recipient] });
  }, 180_000);

  it('without its WAL archived: fails after BASEBACKUP_WAL_WAIT_SECONDS naming the missing segment, keeps nothing, and alerts', async () => {
    const dir = tempDir();
    const smtp = await smtpSink();
    const e = env(dir, { BASEBACKUP_WAL_WAIT_SECONDS: '3', ...smtpEnv(smtp.port) });
    const r = await runCli(['basebackup'], e, { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(39);
    expect(r.stderr).toMatch(/the WAL this base backup needs was not archived within 3 s: local lacks 0000000100000000000000[0-9A-F]{2}/);
    expect(r.stderr).toContain('wal-receive');
    expect(r.stderr).toContain('pg_switch_wal()');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(localBase(dir)).toEqual([]);
    const [mail] = await smtp.waitFor(1);
    expect(mail!.subject).toContain('PROBLEM: Base backup of postgres failed');
    expect(mail!.text).toContain('BASEBACKUP_FAILED');
    const listed = await runCli(['list', '--base'], e);
    expect(listed.stdout).toContain('No base backups of postgres');
  }, 120_000);

  it.skipIf(!LIBFAKETIME)(
    "with this machine's clock two days behind: the record's times are the server's",
    async () => {
      const dir = tempDir();
      const e = env(dir);
      const r = await pushingWal(e, () => runCli(['basebackup', '--json'], { ...e, LD_PRELOAD: LIBFAKETIME!, FAKETIME: '-2d' }, { timeoutMs: 120_000 }));
      expect(r.code, r.stderr).toBe(0);
      const m = (JSON.parse(r.stdout) as { manifest: { id: string; start_time: string; stop_time: string } }).manifest;
      // named by this machine's clock, but timed by the server's (recovery targets are the server's times)
      const [, y, mo, d, h, mi, sec] = /^base_(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z/.exec(m.id)!;
      const named = Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +sec!);
      expect(Math.abs(named - (Date.now() - 2 * 86_400_000))).toBeLessThan(10 * 60_000);
      for (const t of [m.start_time, m.stop_time]) expect(Math.abs(new Date(t).getTime() - Date.now())).toBeLessThan(10 * 60_000);
      expect(new Date(m.start_time).getTime()).toBeLessThanOrEqual(new Date(m.stop_time).getTime());
    },
    180_000,
  );

  it('a role without REPLICATION: PRIVILEGE (14) with the ALTER ROLE that fixes it, nothing written', async () => {
    const dir = tempDir();
    const r = await runCli(['basebackup'], env(dir, { DB_USER: 'norep', DB_PASSWORD: 'norep-pw' }));
    expect(r.code, r.stderr).toBe(14);
    expect(r.stderr).toContain('the role norep may not take a base backup');
    expect(r.stderr).toContain('ALTER ROLE norep REPLICATION;');
    expect(r.stderr).not.toContain('norep-pw');
    expect(localBase(dir)).toEqual([]);
  });

  it('into an archive of another cluster: WAL_REFUSED (38) before anything is written', async () => {
    const dir = tempDir();
    const root = path.join(dir, 'backups', 'pitr', 'postgres');
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    const other = { system_identifier: '1234567890', wal_magic: 0xd110, pg_version: 15, segment_size: 16 * 1024 * 1024, created_at: new Date().toISOString() };
    fs.writeFileSync(path.join(root, 'archive.json'), JSON.stringify(other), { mode: 0o600 });
    const r = await runCli(['basebackup'], env(dir));
    expect(r.code, r.stderr).toBe(38);
    expect(r.stderr).toContain('this archive holds the WAL of system 1234567890');
    expect(localBase(dir)).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(root, 'archive.json'), 'utf8'))).toEqual(other);
    // pg_basebackup started while the targets were checked: stopped, its backup ended on the server
    await walsendersGone();
  });

  it('the target disk fills up while pg_basebackup streams: NO_SPACE (22) naming it, not "pg_basebackup failed"; nothing of it left', async (ctx) => {
    // a 4 MB tmpfs as BACKUP_DIR, root only; the plain tar of this cluster is about 30 MB
    const dir = tempDir();
    const backups = path.join(dir, 'backups');
    fs.mkdirSync(backups, { mode: 0o700 });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', backups], { stdio: 'ignore' });
    } catch {
      ctx.skip(true, 'cannot mount a tmpfs here');
    }
    onTestFinished(() => void execFileSync('umount', [backups], { stdio: 'ignore' }));
    const r = await runCli(['basebackup'], env(dir, { BACKUP_COMPRESSION: 'none' }), { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(22);
    expect(r.stderr).toMatch(/not enough disk space: the disk filled up while writing the backup to local/);
    expect(r.stderr).not.toContain('pg_basebackup failed');
    // no data, no record, no temporary file: only the archive's identity
    expect(fs.readdirSync(path.join(backups, 'pitr', 'postgres'), { recursive: true })).toEqual(['archive.json']);
    await walsendersGone();
  });

  it('one S3 target down, and BACKUP_COMPRESSION=none: stored and good on the local target as a plain tar, the S3 target reported', async () => {
    const dir = tempDir();
    const s3 = await testBucket();
    // the WAL is required on local only, as the S3 target cannot take it either
    const e = env(dir, { ...s3.env(), S3_TIMEOUT_SECONDS: '5', WAL_REQUIRED_TARGETS: 'local', BACKUP_COMPRESSION: 'none' });
    await s3.proxy.cut();
    const r = await pushingWal(e, () => runCli(['basebackup'], e, { timeoutMs: 120_000 }));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Stored on: local.');
    expect(r.stderr).toMatch(/warning: not stored on s3: /);
    const [record] = localBase(dir).filter((n) => n.endsWith('.base.json'));
    const m = JSON.parse(fs.readFileSync(path.join(dir, 'backups', 'pitr', 'postgres', record!), 'utf8')) as BaseManifest;
    expect(m.targets).toEqual(['local']);
    // without zstd the tar passes through this process, watched there: the same record
    expect([m.file, m.compression]).toEqual([`${m.id}.tar`, 'none']);
    const tar = fs.readFileSync(path.join(dir, 'backups', 'pitr', 'postgres', m.file));
    expect([tar.length, m.source_bytes, sha256(tar)]).toEqual([m.size_bytes, m.size_bytes, m.sha256]);
    expect(tarMembers(tar, dir)).toEqual(expect.arrayContaining(['backup_label', 'backup_manifest', 'PG_VERSION']));
    expect(parseLsn(m.start_lsn) <= parseLsn(m.stop_lsn)).toBe(true);
    expect((await s3.keys('pitr/')).filter((k) => k.includes('base_'))).toEqual([]);
  }, 180_000);
});

describe('basebackup while the daemon runs: the daemon takes it', () => {
  /** The daemon of `e`, no schedule near; resolves once its control socket listens. */
  async function daemon(e: Record<string, string>): Promise<Spawned> {
    const d = spawnCli(['daemon'], e);
    await d.waitForOutput(/control socket listening at /, 30_000);
    return d;
  }
  const quiet = { BACKUP_SCHEDULE: '0 3 1 1 *', VERIFY_SCHEDULE: 'off', BACKUP_CATCH_UP: 'false' };

  it('the same result and record, said to come from the daemon; another configuration, or --no-daemon, takes it in the command', async () => {
    const dir = tempDir();
    const s3 = await testBucket();
    const e = env(dir, { ...s3.env(), ...quiet });
    const d = await daemon(e);
    const sock = path.join(dir, 'backups', '.basement-backup', 'daemon.sock');
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);

    const r = await pushingWal(e, () => runCli(['basebackup', '--json'], e, { timeoutMs: 120_000 }));
    const m = await checkStored(r, dir, s3);
    const out = JSON.parse(r.stdout) as { taken_by: string; daemon_pid: number };
    expect([out.taken_by, out.daemon_pid]).toEqual(['daemon', d.child.pid]);
    await d.waitForOutput(new RegExp(`base backup of postgres asked for by \`basebackup\`[^]*base backup completed.*${m.id}`));
    const human = await pushingWal(e, () => runCli(['basebackup'], e, { timeoutMs: 120_000 }));
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^Base backup completed: base_/);
    expect(human.stdout).toContain(`Taken by the daemon (pid ${d.child.pid})`);

    // another setting than the daemon's: the command takes it, and its log says why
    const other = { ...e, BASEBACKUP_WAL_WAIT_SECONDS: '90' };
    const own = await pushingWal(e, () => runCli(['basebackup', '--json'], other, { timeoutMs: 120_000 }));
    expect(own.code, own.stderr).toBe(0);
    expect((JSON.parse(own.stdout) as { taken_by: string }).taken_by).toBe('this command');
    const logged = fs.readFileSync(path.join(dir, 'logs', 'basement-backup.jsonl'), 'utf8');
    expect(logged).toContain("the daemon did not take this base backup (its configuration differs from this daemon's in pitr)");
    const here = await pushingWal(e, () => runCli(['basebackup', '--json', '--no-daemon'], e, { timeoutMs: 120_000 }));
    expect(here.code, here.stderr).toBe(0);
    expect((JSON.parse(here.stdout) as { taken_by: string }).taken_by).toBe('this command');
    expect(localBase(dir).filter((n) => n.endsWith('.base.json'))).toHaveLength(4);

    // the daemon gone: its socket too, and the command takes it itself
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
    expect(fs.existsSync(sock)).toBe(false);
  }, 240_000);

  it("Ctrl-C on the command stops the daemon's base backup (ABORTED, nothing left); so does the daemon's stop, and the command says so", async () => {
    const dir = tempDir();
    // no WAL is pushed: each base backup waits for its WAL until stopped
    const e = env(dir, { ...quiet, BASEBACKUP_WAL_WAIT_SECONDS: '120' });
    const d = await daemon(e);
    const root = path.join(dir, 'backups', 'pitr', 'postgres');
    const waiting = () => d.waitForOutput(/base backup waits for its WAL to be archived/, 60_000);

    const c = spawnCli(['basebackup'], e, { detached: true });
    await waiting();
    c.ctrlC();
    expect(await c.exited, c.output()).toBe(24);
    expect(c.output()).toContain('the command that asked for it stopped');
    await d.waitForOutput(/base backup interrupted/, 30_000);
    expect(fs.readdirSync(root).filter((f) => f.includes('base_'))).toEqual([]);

    const before = d.output().length;
    const c2 = spawnCli(['basebackup'], e);
    await waitFor(() => /base backup waits for its WAL to be archived/.test(d.output().slice(before)), 60_000, 'the second base backup to wait for its WAL');
    d.child.kill('SIGTERM');
    expect(await c2.exited, c2.output()).toBe(24);
    expect(c2.output()).toContain('the daemon is stopping');
    expect(c2.output()).not.toMatch(/\n\s+at /);
    expect(await d.exited, d.output()).toBe(0);
    expect(fs.readdirSync(root).filter((f) => f.includes('base_'))).toEqual([]);
    await walsendersGone();
  }, 240_000);
});

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../../scripts/lib/cluster';
import { generateIdentity } from '../../src/crypto/age';
import { ERROR_CODES } from '../../src/errors';
import { runCli, smtpEnv, spawnCli, tempDir, waitFor, type Spawned } from '../helpers/cli';
import { smtpSink } from '../helpers/smtp';
import { exited } from '../helpers/daemon';
import { bucket, type Bucket } from '../helpers/offsite';

// The WAL receiver (design (b) of docs/pitr.md): pg_receivewal through a replication slot, each
// completed segment pushed to every target from the spool; against a cluster of this file's own.

let cluster: Cluster;
const DB = 'shop';
const PREFIX = 'basement/';

beforeAll(async () => {
  cluster = await startCluster({ settings: { archive_timeout: '60' } });
  await cluster.createDatabase(DB);
  await cluster.query(DB, 'CREATE TABLE t (id int, note text)');
}, 120_000);

afterAll(() => cluster?.stop());

afterEach(async () => {
  // a slot nobody streams from would make the server keep WAL for ever
  await cluster.query('postgres', 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active');
});

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

function envFor(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH!,
    HOME: process.env.HOME ?? '/root',
    DB_HOST: cluster.host,
    DB_PORT: String(cluster.port),
    DB_USER: cluster.user,
    DB_PASSWORD: cluster.password,
    DB_NAME: DB,
    PG_BIN_DIR: cluster.binDir,
    BACKUP_DIR: path.join(dir, 'backups'),
    LOG_DIR: path.join(dir, 'logs'),
    BACKUP_MIN_FREE_MB: '0',
    // a slot of each test's own: a test's leftovers never feed the next
    WAL_SLOT_NAME: `bb_${crypto.randomBytes(4).toString('hex')}`,
    ...extra,
  };
}

/** Writes rows, switches to a new segment, and returns the completed one: its name and the bytes PostgreSQL has in pg_wal. */
async function switchedSegment(): Promise<{ name: string; bytes: Buffer }> {
  await cluster.query(DB, `INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g`);
  const [row] = await cluster.query<{ name: string }>(DB, 'SELECT pg_walfile_name(pg_switch_wal()) AS name');
  const name = row!.name;
  return { name, bytes: fs.readFileSync(path.join(cluster.dataDir, 'pg_wal', name)) };
}

/** The WAL files archived on the local target: name → sha256 (from the object names). */
function localArchive(dir: string): Map<string, string> {
  const d = path.join(dir, 'backups', 'pitr', DB, 'wal');
  const out = new Map<string, string>();
  if (!fs.existsSync(d)) return out;
  for (const n of fs.readdirSync(d)) {
    const m = /^([0-9A-F]{24})-([0-9a-f]{64})/.exec(n);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

async function s3Archive(s3: Bucket): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const k of await s3.keys(`${PREFIX}pitr/${DB}/wal/`)) {
    const m = /\/([0-9A-F]{24})-([0-9a-f]{64})/.exec(k);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

/** The completed files waiting in the spool (the newest one archived stays there as pg_receivewal's marker). */
function spooled(dir: string): string[] {
  const d = path.join(dir, 'backups', '.basement-backup', 'wal-spool', DB);
  return fs.existsSync(d) ? fs.readdirSync(d).filter((n) => /^[0-9A-F]{24}$/.test(n)) : [];
}

/** Every segment name from `first` to `last`, in order (one timeline, 16 MB segments). */
function consecutive(first: string, last: string): string[] {
  const n = (s: string) => parseInt(s.slice(8, 16), 16) * 0x100 + parseInt(s.slice(16), 16);
  const out: string[] = [];
  for (let i = n(first); i <= n(last); i++)
    out.push(first.slice(0, 8) + (i >> 8).toString(16).toUpperCase().padStart(8, '0') + (i & 0xff).toString(16).toUpperCase().padStart(8, '0'));
  return out;
}

async function fetched(env: Record<string, string>, name: string): Promise<Buffer> {
  const dest = path.join(tempDir(), name);
  const r = await runCli(['wal-fetch', name, dest], env);
  expect(r.code, r.stderr).toBe(0);
  return fs.readFileSync(dest);
}

function receive(env: Record<string, string>): Spawned {
  return spawnCli(['wal-receive'], env);
}

async function stopCleanly(r: Spawned): Promise<void> {
  r.child.kill('SIGTERM');
  expect(await r.exited, r.output()).toBe(0);
}

describe('wal-receive', () => {
  it.each([
    ['plain', false],
    ['encrypted', true],
  ])(
    'a switched segment is stored on the local and the S3 target with the bytes PostgreSQL wrote (%s)',
    async (_, encrypted) => {
      const s3 = await bucket();
      const dir = tempDir();
      let keys: Record<string, string> = {};
      if (encrypted) {
        const id = await generateIdentity();
        const keyFile = path.join(dir, 'key.txt');
        fs.writeFileSync(keyFile, id.secret + '\n', { mode: 0o600 });
        keys = { BACKUP_AGE_RECIPIENTS: id.publicKey, BACKUP_AGE_IDENTITY_FILE: keyFile };
      }
      const env = envFor(dir, { ...s3.env(PREFIX), ...keys });
      const r = receive(env);
      await r.waitForOutput(/starting log streaming at/);
      const seg = await switchedSegment();

      await waitFor(async () => localArchive(dir).has(seg.name) && (await s3Archive(s3)).has(seg.name), 60_000, `${seg.name} on both targets`);
      await r.waitForOutput(new RegExp(`WAL file archived wal=${seg.name}`));
      expect(localArchive(dir).get(seg.name)).toBe(sha256(seg.bytes));
      expect((await s3Archive(s3)).get(seg.name)).toBe(sha256(seg.bytes));
      if (encrypted) {
        // nothing readable is stored: the object is age ciphertext
        const local = path.join(dir, 'backups', 'pitr', DB, 'wal');
        const object = fs.readdirSync(local).find((n) => n.startsWith(seg.name))!;
        expect(object).toMatch(/\.age$/);
        expect(fs.readFileSync(path.join(local, object)).subarray(0, 21).toString()).toBe('age-encryption.org/v1');
      }
      expect(sha256(await fetched(env, seg.name))).toBe(sha256(seg.bytes));
      expect(sha256(await fetched({ ...env, BACKUP_LOCAL: 'false' }, seg.name))).toBe(sha256(seg.bytes));
      expect(r.output()).not.toContain(s3.secretAccessKey);
      expect(r.output()).not.toContain(cluster.password);
      await stopCleanly(r);
    },
    180_000,
  );

  it('S3 down: the spool keeps every segment, and once it is back every one is archived, with no gap', async () => {
    const s3 = await bucket();
    const dir = tempDir();
    const env = envFor(dir, s3.env(PREFIX));
    const r = receive(env);
    await r.waitForOutput(/starting log streaming at/);
    const first = await switchedSegment();
    await waitFor(async () => (await s3Archive(s3)).has(first.name), 60_000, `${first.name} on S3`);

    await s3.stop();
    const held: string[] = [];
    for (let i = 0; i < 4; i++) held.push((await switchedSegment()).name);
    // the queue grows: every segment written while S3 is down waits in the spool (stored locally already)
    await waitFor(() => held.every((n) => spooled(dir).includes(n)), 60_000, 'the segments in the spool');
    await waitFor(() => held.every((n) => localArchive(dir).has(n)), 60_000, 'the segments on the local target');
    await r.waitForOutput(/WAL file not stored/);
    expect(held.some((n) => localArchive(dir).has(n) && spooled(dir).includes(n))).toBe(true);

    await s3.restart();
    const last = await switchedSegment();
    const all = consecutive(first.name, last.name);
    await waitFor(
      async () => {
        const on = await s3Archive(s3);
        return all.every((n) => on.has(n));
      },
      120_000,
      'every segment on S3 once it is back',
    );
    // the queue is empty: at most the newest segment archived stays, as pg_receivewal's marker
    await waitFor(() => spooled(dir).every((n) => n === last.name), 30_000, 'the spool to empty');
    const local = localArchive(dir);
    expect(all.filter((n) => !local.has(n))).toEqual([]);
    await stopCleanly(r);
  }, 300_000);

  it('S3 accepts and never answers: each push ends at WAL_PUSH_TIMEOUT_SECONDS and is tried again until it is stored', async () => {
    const s3 = await bucket();
    const dir = tempDir();
    const env = envFor(dir, { ...s3.env(PREFIX), WAL_PUSH_TIMEOUT_SECONDS: '3' });
    const r = receive(env);
    await r.waitForOutput(/starting log streaming at/);
    s3.proxy.silence();
    const seg = await switchedSegment();
    await r.waitForOutput(new RegExp(`the push of ${seg.name} did not finish within WAL_PUSH_TIMEOUT_SECONDS \\(3 s\\)`), 60_000);
    expect(spooled(dir)).toContain(seg.name);
    await s3.proxy.restore();
    await waitFor(async () => (await s3Archive(s3)).get(seg.name) === sha256(seg.bytes), 90_000, `${seg.name} on S3 once it answers`);
    await waitFor(() => spooled(dir).every((n) => n === seg.name), 30_000, 'the spool to empty');
    await stopCleanly(r);
  }, 240_000);

  it('killed with SIGKILL and started again: no segment is missing', async () => {
    const dir = tempDir();
    const env = envFor(dir);
    const r1 = receive(env);
    await r1.waitForOutput(/starting log streaming at/);
    const first = await switchedSegment();
    await waitFor(() => localArchive(dir).has(first.name), 60_000, `${first.name} archived`);
    const pidFile = path.join(dir, 'backups', '.basement-backup', 'wal-spool', `${DB}.pid`);
    const orphan = Number(fs.readFileSync(pidFile, 'utf8'));
    r1.child.kill('SIGKILL');
    await r1.exited;
    // its pg_receivewal outlives it, holding the slot (until it next writes to its dead parent's pipe)
    expect(exited(orphan)).toBe(false);
    await cluster.query(DB, `INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g`);
    // what a receiver killed while zstd compressed a batch leaves: removed by the next start
    const compressDir = path.join(dir, 'backups', '.basement-backup', 'wal-spool', `${DB}.compress`);
    // (named after no segment of this test: a segment's own output may be there for a moment, while it is compressed)
    fs.writeFileSync(path.join(compressDir, '00000001FFFFFFFF000000FF.zst'), 'cut short');

    const r2 = receive(env);
    await r2.waitForOutput(/starting log streaming at/);
    expect(fs.readdirSync(compressDir)).not.toContain('00000001FFFFFFFF000000FF.zst');
    // the new receiver stopped the one left behind, rather than fight it for the slot
    expect(exited(orphan)).toBe(true);
    await switchedSegment();
    const last = await switchedSegment();
    const all = consecutive(first.name, last.name);
    await waitFor(() => all.every((n) => localArchive(dir).has(n)), 90_000, 'every segment archived after the restart');
    expect(r2.output()).not.toMatch(/is active for PID|another receiver/);
    await stopCleanly(r2);
    expect(fs.existsSync(pidFile)).toBe(false);
  }, 240_000);

  it('a zstd without --output-dir-flat (older than 1.4.1): each segment is pushed on its own, said at each failure, then once that batches stop', async () => {
    const dir = tempDir();
    const old = path.join(dir, 'old-zstd');
    fs.writeFileSync(
      old,
      '#!/bin/sh\nfor a in "$@"; do [ "$a" = --output-dir-flat ] && { echo "zstd: Incorrect parameter: $a" >&2; exit 1; }; done\nexec zstd "$@"\n',
      {
        mode: 0o755,
      },
    );
    const r = receive(envFor(dir, { BACKUP_ZSTD_PROGRAM: old }));
    await r.waitForOutput(/starting log streaming at/);
    const names: string[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await switchedSegment();
      names.push(s.name);
      await waitFor(() => localArchive(dir).has(s.name), 60_000, `${s.name} archived`);
    }
    // stored as zstd frames all the same (the codec, file by file)
    const stored = fs.readdirSync(path.join(dir, 'backups', 'pitr', DB, 'wal')).filter((n) => n.startsWith(names[3]!));
    expect(stored).toEqual([expect.stringMatching(/\.zst$/)]);
    const out = r.output();
    expect(out.match(/zstd could not compress WAL files together; each is pushed on its own/g)).toHaveLength(3);
    expect(out.match(/from now on, until the receiver starts again/g)).toHaveLength(1);
    expect(out).toContain('Incorrect parameter: --output-dir-flat');
    await stopCleanly(r);
  }, 120_000);

  it('a second receiver on the same spool is refused (exit 3), naming the one that runs', async () => {
    const env = envFor(tempDir());
    const r = receive(env);
    await r.waitForOutput(/starting log streaming at/);
    const second = await runCli(['wal-receive'], env);
    expect(second.code, second.stderr).toBe(ERROR_CODES.LOCKED.exit);
    expect(second.stderr).toContain(`a WAL receiver of ${DB} runs already (pid ${r.child.pid}`);
    expect(second.stderr).toContain('One receiver per server');
    await stopCleanly(r);
  }, 60_000);

  it('a role without REPLICATION: exit 14 (PRIVILEGE) with the ALTER ROLE that fixes it', async () => {
    await cluster.query('postgres', `DROP ROLE IF EXISTS shop_reader; CREATE ROLE shop_reader LOGIN PASSWORD 'reader-pw-1'`);
    const env = envFor(tempDir(), { DB_USER: 'shop_reader', DB_PASSWORD: 'reader-pw-1' });
    const r = await runCli(['wal-receive'], env);
    expect(r.code, r.stderr).toBe(ERROR_CODES.PRIVILEGE.exit);
    expect(r.stderr).toContain('shop_reader may not stream WAL');
    expect(r.stderr).toContain('ALTER ROLE shop_reader REPLICATION;');
    expect(r.stderr).not.toContain('reader-pw-1');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  }, 60_000);

  it('no replication line in pg_hba.conf for the role: exit 11 (DB_AUTH) with the line to add', async () => {
    await cluster.query('postgres', `DROP ROLE IF EXISTS shop_streamer; CREATE ROLE shop_streamer LOGIN REPLICATION PASSWORD 'streamer-pw-1'`);
    const hba = path.join(cluster.dataDir, 'pg_hba.conf');
    const before = fs.readFileSync(hba, 'utf8');
    // replication connections for the superuser only, as many servers have it
    fs.writeFileSync(hba, before.replace(/^(host\s+replication\s+)all(\s)/gm, '$1postgres$2'));
    await cluster.query('postgres', 'SELECT pg_reload_conf()');
    try {
      const r = await runCli(['wal-receive'], envFor(tempDir(), { DB_USER: 'shop_streamer', DB_PASSWORD: 'streamer-pw-1' }));
      expect(r.code, r.stderr).toBe(ERROR_CODES.DB_AUTH.exit);
      expect(r.stderr).toContain('does not accept replication connections from 127.0.0.1 as shop_streamer');
      expect(r.stderr).toContain('host replication shop_streamer 127.0.0.1/32 scram-sha-256');
      expect(r.stderr).not.toContain('streamer-pw-1');
    } finally {
      fs.writeFileSync(hba, before);
      await cluster.query('postgres', 'SELECT pg_reload_conf()');
    }
  }, 60_000);
});

describe('the daemon with WAL_RECEIVE=on', () => {
  it('archives a switched segment, and its shutdown stops pg_receivewal', async () => {
    const dir = tempDir();
    const env = envFor(dir, { WAL_RECEIVE: 'on', BASEBACKUP_SCHEDULE: 'off', BACKUP_CATCH_UP: 'false', VERIFY_SCHEDULE: 'off' });
    const d = spawnCli(['daemon'], env);
    await d.waitForOutput(/starting log streaming at/);
    const seg = await switchedSegment();
    await waitFor(() => localArchive(dir).get(seg.name) === sha256(seg.bytes), 60_000, `${seg.name} archived by the daemon`);
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
    expect(d.output()).toContain('WAL receivers stopped');
    // the walsender ends once pg_receivewal has gone
    await waitFor(
      async () =>
        (await cluster.query<{ active: boolean }>('postgres', 'SELECT active FROM pg_replication_slots WHERE slot_name = $1', [env.WAL_SLOT_NAME]))[0]
          ?.active === false,
      30_000,
      'the slot to be released',
    );
  }, 180_000);

  it('a receiver that keeps failing alerts once, and streams by itself once the role may', async () => {
    const sink = await smtpSink();
    await cluster.query('postgres', `DROP ROLE IF EXISTS shop_late; CREATE ROLE shop_late LOGIN PASSWORD 'late-pw-1'`);
    const dir = tempDir();
    const env = envFor(dir, {
      ...smtpEnv(sink.port),
      DB_USER: 'shop_late',
      DB_PASSWORD: 'late-pw-1',
      WAL_RECEIVE: 'on',
      BASEBACKUP_SCHEDULE: 'off',
      BACKUP_CATCH_UP: 'false',
      VERIFY_SCHEDULE: 'off',
    });
    const d = spawnCli(['daemon'], env);
    const [mail] = await sink.waitFor(1, 60_000);
    expect(mail!.subject).toMatch(/PROBLEM: WAL archiving of shop is failing \(pg_receivewal failed 3 times in a row\)/);
    expect(mail!.text).toContain('ALTER ROLE shop_late REPLICATION;');
    expect(mail!.text).not.toContain('late-pw-1');

    // a fourth failure after the alert
    await d.waitForOutput(/(?:WAL receiver of shop: shop_late may not stream WAL[^]*){4}/, 60_000);
    await cluster.query('postgres', 'ALTER ROLE shop_late REPLICATION');
    await d.waitForOutput(/starting log streaming at/, 90_000);
    const seg = await switchedSegment();
    await waitFor(() => localArchive(dir).get(seg.name) === sha256(seg.bytes), 60_000, `${seg.name} archived after the fix`);
    // the failures between the alert and the fix sent nothing more
    await sink.settled();
    expect(sink.mails.map((m) => m.subject)).toHaveLength(1);
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
  }, 240_000);

  it('the server removed WAL the receiver had not taken: an alert naming the gap, streaming again from where the server is, and a new base backup', async () => {
    const sink = await smtpSink();
    const dir = tempDir();
    const root = path.join(dir, 'backups', 'pitr', DB);
    const records = () => (fs.existsSync(root) ? fs.readdirSync(root).filter((f) => f.endsWith('.base.json')) : []);
    const env = envFor(dir, {
      ...smtpEnv(sink.port),
      WAL_RECEIVE: 'on',
      BACKUP_CATCH_UP: 'false',
      VERIFY_SCHEDULE: 'off',
      BASEBACKUP_SCHEDULE: '0 3 1 1 *',
      BASEBACKUP_WAL_WAIT_SECONDS: '120',
    });
    const r = receive(env);
    await r.waitForOutput(/starting log streaming at/);
    const base = await runCli(['basebackup'], env);
    expect(base.code, base.stderr).toBe(0);
    const before = await switchedSegment();
    await waitFor(() => localArchive(dir).has(before.name), 60_000, `${before.name} archived`);
    await stopCleanly(r);

    // the receiver away, the server keeps at most 1 MB for the slot: it removes what the slot held
    await cluster.query('postgres', "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    await cluster.query('postgres', 'SELECT pg_reload_conf()');
    try {
      for (let i = 0; i < 4; i++) await switchedSegment();
      const slotStatus = async () => {
        await cluster.query('postgres', 'CHECKPOINT');
        const [row] = await cluster.query<{ s: string }>('postgres', 'SELECT wal_status AS s FROM pg_replication_slots WHERE slot_name = $1', [
          env.WAL_SLOT_NAME,
        ]);
        return row?.s;
      };
      await waitFor(async () => (await slotStatus()) === 'lost', 60_000, 'the slot lost');
    } finally {
      await cluster.query('postgres', 'ALTER SYSTEM RESET max_slot_wal_keep_size');
      await cluster.query('postgres', 'SELECT pg_reload_conf()');
    }

    const d = spawnCli(['daemon'], env);
    await d.waitForOutput(/the server removed WAL from [0-9A-F]{24} before it was archived: the archive has a gap/, 90_000);
    // the daemon's own checks may mail first (the slot lost, the archive's gap): the receiver's alert among them
    await waitFor(() => sink.mails.some((m) => /WAL archiving of shop has a gap/.test(m.subject ?? '')), 60_000, 'the gap alert');
    const gap = sink.mails.find((m) => /WAL archiving of shop has a gap/.test(m.subject ?? ''))!;
    expect(gap.subject).toMatch(/PROBLEM: WAL archiving of shop has a gap: the server removed WAL from [0-9A-F]{24}/);
    expect(gap.text).toMatch(/A new base backup is being taken now[\s\S]*max_slot_wal_keep_size/);
    // streaming goes on from where the server is; a new base backup makes the time after the gap recoverable
    const after = await switchedSegment();
    await waitFor(() => localArchive(dir).has(after.name), 60_000, `${after.name} archived after the gap`);
    await waitFor(() => records().length === 2, 150_000, 'a new base backup');
    const status = await runCli(['status', '--json'], env);
    const window = (JSON.parse(status.stdout) as { recovery_window: { target: string; gaps: unknown[] }[] }).recovery_window;
    expect(window.find((w) => w.target === 'local')!.gaps.length).toBeGreaterThan(0);
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
  }, 400_000);

  it('stopped while a base backup waits for its WAL: the daemon waits for it to stop, and nothing of it is left', async () => {
    const dir = tempDir();
    const root = path.join(dir, 'backups', 'pitr', DB);
    const env = envFor(dir, { WAL_RECEIVE: 'on', BACKUP_CATCH_UP: 'false', VERIFY_SCHEDULE: 'off', BASEBACKUP_SCHEDULE: '0 3 1 1 *' });
    // a wal-receive holds the spool, its pg_receivewal paused: nothing is archived, and the daemon's
    // own receiver waits to start (so its stop is instant, as when pg_receivewal is in a backoff)
    const r = receive(env);
    await r.waitForOutput(/starting log streaming at/);
    const receivewal = execFileSync('pgrep', ['-f', `pg_receivewal .*-S ${env.WAL_SLOT_NAME}`])
      .toString()
      .trim()
      .split('\n');
    const signal = (sig: NodeJS.Signals) =>
      receivewal.forEach((pid) => {
        try {
          process.kill(Number(pid), sig);
        } catch {
          // gone
        }
      });
    signal('SIGSTOP');
    try {
      const d = spawnCli(['daemon'], env);
      await d.waitForOutput(/base backup waits for its WAL to be archived/, 120_000);
      expect(fs.readdirSync(root).filter((f) => f.startsWith('.base_'))).toHaveLength(1);
      d.child.kill('SIGTERM');
      expect(await d.exited, d.output()).toBe(0);
      // the shutdown waited for the base backup: interrupted, and nothing of it left
      expect(d.output()).toMatch(/base backup interrupted/);
      expect(fs.readdirSync(root).filter((f) => f.startsWith('base_') || f.startsWith('.base_'))).toEqual([]);
    } finally {
      signal('SIGCONT');
      await stopCleanly(r);
    }
  }, 240_000);

  it('takes a base backup at start when no target has a good one, then on BASEBACKUP_SCHEDULE', async () => {
    const dir = tempDir();
    const records = () => {
      const root = path.join(dir, 'backups', 'pitr', DB);
      return fs.existsSync(root) ? fs.readdirSync(root).filter((f) => f.endsWith('.base.json')) : [];
    };
    // the base backup is good only once its WAL is archived: switches complete the segments
    const switches = setInterval(() => void cluster.query('postgres', 'SELECT pg_switch_wal()').catch(() => undefined), 2000);
    try {
      // no slot soon (1 January): the one at start comes from the catch-up alone
      const base = { WAL_RECEIVE: 'on', BACKUP_CATCH_UP: 'false', VERIFY_SCHEDULE: 'off', BASEBACKUP_WAL_WAIT_SECONDS: '120' };
      const env = envFor(dir, { ...base, BASEBACKUP_SCHEDULE: '0 3 1 1 *' });
      const first = spawnCli(['daemon'], env);
      await first.waitForOutput(/no good base backup of shop on any target: taking one now/, 60_000);
      await waitFor(() => records().length === 1, 170_000, 'the start-up base backup');
      first.child.kill('SIGTERM');
      expect(await first.exited, first.output()).toBe(0);
      // every 20 s: a scheduled one comes next (the one there already stops any catch-up)
      const second = spawnCli(['daemon'], { ...env, BASEBACKUP_SCHEDULE: '*/20 * * * * *' });
      await waitFor(() => records().length >= 2, 170_000, 'a scheduled base backup');
      expect(second.output()).toMatch(/base backup of shop: starting the schedule run/);
      const listed = await runCli(['list', '--base', '--json'], env);
      expect(listed.code, listed.stderr).toBe(0);
      expect((JSON.parse(listed.stdout) as unknown[]).length).toBeGreaterThanOrEqual(2);
      second.child.kill('SIGTERM');
      expect(await second.exited, second.output()).toBe(0);
    } finally {
      clearInterval(switches);
    }
  }, 400_000);
});

import crypto from 'node:crypto';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../../scripts/lib/cluster';
import type { Status } from '../../src/backup/status';
import { runCli, smtpEnv, tempDir, waitFor } from '../helpers/cli';
import { daemonWithHttp, NEVER, request } from '../helpers/http';
import { bucket } from '../helpers/offsite';
import { metricValue, parseMetrics } from '../helpers/prom';
import { smtpSink } from '../helpers/smtp';

// The monitoring of WAL archiving (issue 23, docs/pitr.md#monitoring): the daemon with its WAL
// receiver, an S3 target that goes down and comes back, the warning mails, `status --json` and
// /metrics; against a cluster of this file's own.

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

function envFor(dir: string, extra: Record<string, string>): Record<string, string> {
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
    WAL_SLOT_NAME: `bb_${crypto.randomBytes(4).toString('hex')}`,
    ...extra,
  };
}

/** Writes rows and switches to a new segment: one more completed segment on the server. */
async function switchedSegment(): Promise<string> {
  await cluster.query(DB, `INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g`);
  const [row] = await cluster.query<{ name: string }>(DB, 'SELECT pg_walfile_name(pg_switch_wal()) AS name');
  return row!.name;
}

async function status(env: Record<string, string>): Promise<Status> {
  const r = await runCli(['status', '--json'], env);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Status;
}

async function metrics(url: string): Promise<ReturnType<typeof parseMetrics>> {
  const r = await request(`${url}metrics`);
  expect(r.status).toBe(200);
  return parseMetrics(r.body);
}

describe('monitoring WAL archiving', () => {
  it('S3 down: a lag warning with the cause and the fix, the queue grows in status; S3 back: archived, cleared; /metrics has the window and the last archived time', async () => {
    const sink = await smtpSink();
    const s3 = await bucket();
    const dir = tempDir();
    const env = envFor(dir, {
      ...s3.env(PREFIX),
      ...smtpEnv(sink.port),
      WAL_RECEIVE: 'on',
      // the start-up base backup only (none on either target yet)
      BASEBACKUP_SCHEDULE: NEVER,
      BACKUP_SCHEDULE: NEVER,
      BACKUP_CATCH_UP: 'false',
      VERIFY_SCHEDULE: 'off',
      BACKUP_CHECK_MINUTES: '0.05',
      WAL_MAX_LAG_MINUTES: '0.1',
    });
    const { daemon, url } = await daemonWithHttp(env);
    const db = { database: DB };
    const on = (target: string) => ({ database: DB, target });

    // the start-up base backup is good once its WAL is archived: a recovery window on both targets
    let m = await metrics(url);
    await waitFor(
      async () => {
        m = await metrics(url);
        return ['local', 's3'].every((t) => metricValue(m, 'basement_backup_recovery_window_end_timestamp_seconds', on(t)) !== undefined);
      },
      180_000,
      'a recovery window on both targets in /metrics',
    );
    const start = metricValue(m, 'basement_backup_recovery_window_start_timestamp_seconds', on('local'))!;
    const end = metricValue(m, 'basement_backup_recovery_window_end_timestamp_seconds', on('local'))!;
    // (the window's end, when the base backup's last segment was stored, may be a moment before its recorded stop_time)
    expect(Math.abs(start - Date.now() / 1000)).toBeLessThan(300);
    expect(Math.abs(end - Date.now() / 1000)).toBeLessThan(300);
    expect(metricValue(m, 'basement_backup_base_backup_last_good_timestamp_seconds', on('s3'))).toBeCloseTo(start, 0);
    expect(metricValue(m, 'basement_backup_recovery_window_gaps', on('local'))).toBe(0);
    expect(metricValue(m, 'basement_backup_wal_receiver_up', db)).toBe(1);
    const archivedAt = metricValue(m, 'basement_backup_wal_last_archived_timestamp_seconds', db)!;
    expect(Math.abs(archivedAt - Date.now() / 1000)).toBeLessThan(300);
    expect(metricValue(m, 'basement_backup_wal_queue_files', db)).toBe(0);
    expect(metricValue(m, 'basement_backup_wal_lag_seconds', db)).toBe(0);

    await s3.stop();
    const held = [await switchedSegment(), await switchedSegment()];
    await waitFor(async () => (await status(env)).archiving!.queue.files >= 2, 60_000, 'two files in the queue');
    const before = (await status(env)).archiving!;
    held.push(await switchedSegment());
    await waitFor(async () => (await status(env)).archiving!.queue.files > before.queue.files, 60_000, 'the queue to grow');
    const during = (await status(env)).archiving!;
    expect(during.behind_segments).toBeGreaterThanOrEqual(3);
    expect(during.queue.bytes).toBeGreaterThan(before.queue.bytes);
    expect(during.receiver).toMatchObject({ running: true, streaming: true });
    expect(during.receiver.last_push_error?.wal).toMatch(/^[0-9A-F]{24}$/);
    expect(during.last_archived!.wal < held[0]!).toBe(true);

    // WAL_MAX_LAG_MINUTES is 6 s: the warning names the failing push and what to do
    await waitFor(() => sink.mails.some((x) => /WARNING: WAL archiving of shop is behind/.test(x.subject ?? '')), 90_000, 'the lag warning');
    const warning = sink.mails.find((x) => /WARNING: WAL archiving of shop is behind/.test(x.subject ?? ''))!;
    expect(warning.text).toMatch(/\d+ segment\(s\) the server completed waited \S+ unarchived \(WAL_MAX_LAG_MINUTES: 6s\)/);
    expect(warning.text).toMatch(/Pushes fail: [0-9A-F]{24}: /);
    expect(warning.text).toContain('What to do: A storage target does not take the WAL');
    m = await metrics(url);
    expect(metricValue(m, 'basement_backup_warning', { database: DB, kind: 'wal-lag' })).toBe(1);
    expect(metricValue(m, 'basement_backup_wal_queue_files', db)).toBeGreaterThanOrEqual(3);
    expect(metricValue(m, 'basement_backup_wal_lag_seconds', db)).toBeGreaterThan(6);

    await s3.restart();
    await waitFor(() => sink.mails.some((x) => /CLEARED: WAL archiving of shop is behind/.test(x.subject ?? '')), 120_000, 'the warning cleared');
    await waitFor(async () => (await status(env)).archiving!.queue.files === 0, 60_000, 'the queue to empty');
    const after = (await status(env)).archiving!;
    expect(after.lag_seconds).toBe(0);
    expect(after.last_archived!.wal >= held[2]!).toBe(true);
    // one warning for the whole outage
    expect(sink.mails.filter((x) => /WARNING: WAL archiving/.test(x.subject ?? ''))).toHaveLength(1);
    const text = (await runCli(['status'], env)).stdout;
    expect(text).toMatch(/WAL archiving\W+receiver: pid \d+, streaming/);
    expect(text).toContain('behind: no');

    daemon.child.kill('SIGTERM');
    expect(await daemon.exited, daemon.output()).toBe(0);
  }, 400_000);
});

import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config';
import { BackupError } from '../../src/errors';
import { evaluate, type Finding } from '../../src/monitor/findings';
import { renderMetrics } from '../../src/monitor/metrics';
import { statusPage } from '../../src/monitor/page';
import { archiveLag } from '../../src/wal/lag';
import { metricValue, parseMetrics } from '../helpers/prom';
import { archiving, hoursAgo, NOW, observation, pitrObservation, pitrWindow, snapshot } from '../helpers/snapshot';

// The monitoring of WAL archiving (issue 23): how far behind the server it is, and the warnings.

const checks = { alertAfterFailures: 1, diskAlertDays: 14, maxRestoreMinutes: undefined, minFreeBytes: 0 };
const MIN = 60_000;
const ago = (ms: number) => new Date(NOW.getTime() - ms).toISOString();

function pitrFindingsOf(p: Parameters<typeof pitrObservation>[0]): Finding[] {
  return evaluate(observation({ pitr: pitrObservation(p) }), checks, NOW).filter((f) => /^(wal|base)-/.test(f.kind));
}

describe('archiveLag', () => {
  const base = { archivedSegment: 0x2an, archivedAt: ago(5 * 3600_000), queueFiles: 0, queueOldestMs: 0, streaming: false, now: NOW.getTime() };

  it('an idle server is not behind, however long ago the last segment was archived', () => {
    // the server writes in the segment after the last archived one (or has written nothing in it)
    expect(archiveLag({ ...base, serverSegment: 0x2bn })).toEqual({ behindSegments: 0, lagMs: 0 });
    expect(archiveLag({ ...base, serverSegment: 0x2an })).toEqual({ behindSegments: 0, lagMs: 0 });
  });

  it('segments waiting in the spool: the oldest one’s age', () => {
    expect(archiveLag({ ...base, serverSegment: 0x2en, queueFiles: 3, queueOldestMs: 7 * MIN })).toEqual({ behindSegments: 3, lagMs: 7 * MIN });
  });

  it('completed segments no receiver takes: since the last archived one; a receiver that streams has them on their way', () => {
    expect(archiveLag({ ...base, serverSegment: 0x30n, queueFiles: 1, queueOldestMs: MIN })).toEqual({ behindSegments: 5, lagMs: 5 * 3600_000 });
    expect(archiveLag({ ...base, serverSegment: 0x30n, queueFiles: 1, queueOldestMs: MIN, streaming: true })).toEqual({ behindSegments: 5, lagMs: MIN });
  });

  it('the server cannot be asked: the spool alone tells', () => {
    expect(archiveLag({ ...base, serverSegment: undefined, queueFiles: 2, queueOldestMs: 3 * MIN })).toEqual({ behindSegments: undefined, lagMs: 3 * MIN });
    expect(archiveLag({ ...base, serverSegment: undefined })).toEqual({ behindSegments: undefined, lagMs: undefined });
  });
});

describe('the point-in-time warnings', () => {
  it('none while archiving keeps up, the base backup is recent and the archive has no gap', () => {
    expect(pitrFindingsOf({})).toEqual([]);
  });

  it('wal-lag past WAL_MAX_LAG_MINUTES names the failing push and the fix; none when off or within it', () => {
    const behind = archiving({
      behind_segments: 4,
      lag_seconds: 20 * 60,
      queue: { files: 4, bytes: 64 * 1024 * 1024, oldest_seconds: 20 * 60 },
      receiver: { ...archiving().receiver, last_push_error: { wal: '00000001000000000000002B', message: 'offsite: connect ECONNREFUSED', at: ago(MIN) } },
    });
    const [f, ...rest] = pitrFindingsOf({ archiving: behind });
    expect(rest).toEqual([]);
    expect(f).toMatchObject({ kind: 'wal-lag', key: 'wal-lag:shop', target: null, title: 'WAL archiving of shop is behind', health: true });
    expect(f!.message).toContain('4 segment(s) the server completed waited 20m unarchived (WAL_MAX_LAG_MINUTES: 15m)');
    expect(f!.message).toContain('offsite: connect ECONNREFUSED');
    expect(f!.fix).toContain('A storage target does not take the WAL');
    expect(pitrFindingsOf({ archiving: behind, max_lag_ms: null })).toEqual([]);
    expect(pitrFindingsOf({ archiving: behind, max_lag_ms: 30 * MIN })).toEqual([]);
  });

  it('wal-lag with no receiver running says to start the daemon', () => {
    const stopped = archiving({ behind_segments: 2, lag_seconds: 3600, receiver: { ...archiving().receiver, running: false, streaming: false, pid: null } });
    const [f] = pitrFindingsOf({ archiving: stopped });
    expect(f!.message).toContain('No WAL receiver runs');
    expect(f!.fix).toContain('pm2 restart basement-backup');
  });

  it('wal-queue once the slot’s WAL and the spool pass WAL_QUEUE_MAX_MB', () => {
    const full = archiving({
      queue: { files: 10, bytes: 600 * 1024 * 1024, oldest_seconds: 60 },
      lag_seconds: 60,
      server: { ...archiving().server!, slot: { active: true, retained_bytes: 500 * 1024 * 1024, wal_status: 'extended' } },
    });
    const found = pitrFindingsOf({ archiving: full });
    expect(found.map((f) => f.kind)).toEqual(['wal-queue']);
    expect(found[0]!.message).toMatch(/1\.2 GB of WAL is not archived: 524 MB kept in pg_wal .*629 MB in the spool \(10 file\(s\)\); the limit is 1\.1 GB/);
    expect(found[0]!.fix).toContain("pg_drop_replication_slot('basement_backup')");
    expect(pitrFindingsOf({ archiving: full, queue_max_bytes: null })).toEqual([]);
  });

  it('wal-slot when the slot is lost (a gap) or unreserved (about to be)', () => {
    const lost = pitrFindingsOf({
      archiving: archiving({ server: { ...archiving().server!, slot: { active: false, retained_bytes: 0, wal_status: 'lost' } } }),
    });
    expect(lost.map((f) => f.kind)).toEqual(['wal-slot']);
    expect(lost[0]!.message).toContain('The archive has a gap');
    expect(lost[0]!.fix).toContain('basement-backup basebackup');
    const unreserved = archiving({ server: { ...archiving().server!, slot: { active: true, retained_bytes: 0, wal_status: 'unreserved' } } });
    expect(pitrFindingsOf({ archiving: unreserved })[0]!.message).toContain('removes it at its next checkpoint');
  });

  it('wal-gap per target that has one, and base-stale per target whose newest base backup is older than the schedule allows', () => {
    const found = pitrFindingsOf({
      windows: [
        pitrWindow('local', { gaps: [{ from: '000000010000000000000010', to: '000000010000000000000012' }] }),
        pitrWindow('offsite', { newest_base_at: hoursAgo(8 * 24).toISOString() }),
        pitrWindow('third', { newest_base: null, newest_base_at: null, earliest: null, latest: null }),
        pitrWindow('down', { error: 'no answer', newest_base_at: null }),
      ],
    });
    expect(found.map((f) => f.key)).toEqual(['wal-gap:shop:local', 'base-stale:shop:offsite', 'base-stale:shop:third']);
    expect(found[0]!.message).toContain('000000010000000000000010..000000010000000000000012');
    expect(found[1]!.message).toMatch(/ended 8d 0h ago; the limit is 7d 6h/);
    expect(found[2]!.message).toContain('holds no good base backup');
    expect(pitrFindingsOf({ windows: [pitrWindow('offsite', { newest_base_at: hoursAgo(8 * 24).toISOString() })], base_max_age_ms: null })).toEqual([]);
  });
});

describe('the point-in-time metrics', () => {
  it('the receiver, the queue, the slot, the lag, each target’s window and base backup', async () => {
    const o = observation({
      pitr: pitrObservation({
        archiving: archiving({ queue: { files: 2, bytes: 32 * 1024 * 1024, oldest_seconds: 90 }, behind_segments: 2, lag_seconds: 90 }),
        windows: [pitrWindow('local', { gaps: [{ from: '000000010000000000000010', to: '000000010000000000000010' }] })],
      }),
    });
    const m = parseMetrics(await renderMetrics(snapshot([o]), { processMetrics: false }));
    const db = { database: 'shop' };
    const local = { database: 'shop', target: 'local' };
    const ts = (iso: string) => Date.parse(iso) / 1000;
    expect(metricValue(m, 'basement_backup_wal_receiver_up', db)).toBe(1);
    expect(metricValue(m, 'basement_backup_wal_receiver_failure_streak', db)).toBe(0);
    expect(metricValue(m, 'basement_backup_wal_last_archived_timestamp_seconds', db)).toBe(ts(ago(40_000)));
    expect(metricValue(m, 'basement_backup_wal_queue_files', db)).toBe(2);
    expect(metricValue(m, 'basement_backup_wal_queue_bytes', db)).toBe(32 * 1024 * 1024);
    expect(metricValue(m, 'basement_backup_wal_queue_oldest_seconds', db)).toBe(90);
    expect(metricValue(m, 'basement_backup_wal_slot_retained_bytes', db)).toBe(1024 * 1024);
    expect(metricValue(m, 'basement_backup_wal_lag_seconds', db)).toBe(90);
    expect(metricValue(m, 'basement_backup_recovery_window_start_timestamp_seconds', local)).toBe(ts(hoursAgo(48).toISOString()));
    expect(metricValue(m, 'basement_backup_recovery_window_end_timestamp_seconds', local)).toBe(ts(ago(40_000)));
    expect(metricValue(m, 'basement_backup_recovery_window_gaps', local)).toBe(1);
    expect(metricValue(m, 'basement_backup_base_backup_last_good_timestamp_seconds', local)).toBe(ts(hoursAgo(48).toISOString()));
    expect(metricValue(m, 'basement_backup_warning', { ...db, kind: 'wal-gap' })).toBe(1);
    expect(metricValue(m, 'basement_backup_warning', { ...db, kind: 'wal-lag' })).toBe(0);
  });

  it('none without a receiver', async () => {
    const text = await renderMetrics(snapshot([observation({ pitr: undefined })]), { processMetrics: false });
    expect(text).not.toMatch(/basement_backup_(wal_|recovery_window|base_backup)/);
  });
});

describe('the status page', () => {
  it('shows the archiving and each target’s recovery window on the receiver’s entry', () => {
    const o = observation({
      pitr: pitrObservation({
        archiving: archiving({ behind_segments: 3, lag_seconds: 125, queue: { files: 3, bytes: 48_000_000, oldest_seconds: 125 } }),
        windows: [pitrWindow('local'), pitrWindow('offsite', { gaps: [{ from: '000000010000000000000010', to: '000000010000000000000010' }] })],
      }),
    });
    const html = statusPage(snapshot([o]));
    expect(html).toContain('<dt>WAL archiving</dt><dd><span class="ok">streaming</span> · last archived <code>00000001000000000000002A</code>');
    expect(html).toContain('3 segment(s) behind, the oldest waiting 2m<');
    expect(html).toMatch(/<dt>Recovery window \(local\)<\/dt><dd>2026-12-04 12:00:00 → 2026-12-06 11:59:20 UTC<\/dd>/);
    expect(html).toContain('<dt>Recovery window (offsite)</dt><dd>2026-12-04 12:00:00 → 2026-12-06 11:59:20 UTC · <span class="bad">1 gap(s)</span>');
    expect(statusPage(snapshot([observation({ pitr: undefined })]))).not.toContain('WAL archiving');
  });
});

describe('WAL_MAX_LAG_MINUTES and WAL_QUEUE_MAX_MB', () => {
  const BASE = { DB_NAME: 'shop', DB_USER: 'u', DB_PASSWORD: 'p' };
  const parse = (env: Record<string, string>) => parseConfig({ ...BASE, ...env }, '/tmp').pitr;

  it('default to 15 minutes and off; take decimals, MB and off', () => {
    expect(parse({})).toMatchObject({ maxLagMs: 15 * MIN, queueMaxBytes: undefined });
    expect(parse({ WAL_MAX_LAG_MINUTES: '0.5', WAL_QUEUE_MAX_MB: '2048' })).toMatchObject({ maxLagMs: 30_000, queueMaxBytes: 2048 * 1024 * 1024 });
    expect(parse({ WAL_MAX_LAG_MINUTES: 'off', WAL_QUEUE_MAX_MB: 'off' })).toMatchObject({ maxLagMs: undefined, queueMaxBytes: undefined });
  });

  it('a value that is not one is a CONFIG error naming the variable and the fix', () => {
    for (const [name, value] of [
      ['WAL_MAX_LAG_MINUTES', '-3'],
      ['WAL_QUEUE_MAX_MB', '2 GB'],
    ]) {
      let err: unknown;
      try {
        parse({ [name!]: value! });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BackupError);
      expect((err as BackupError).code).toBe('CONFIG');
      expect((err as BackupError).message).toContain(name);
      expect(`${(err as BackupError).message} ${(err as BackupError).hint ?? ''}`).toMatch(new RegExp(`Set ${name} to`));
    }
  });
});

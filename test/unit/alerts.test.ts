import { describe, expect, it } from 'vitest';
import { BackupError } from '../../src/errors';
import { composeAlert, type AlertEvent } from '../../src/notify/alerts';
import type { Manifest } from '../../src/repository/manifest';

const now = new Date('2026-01-22T02:05:00.000Z');
const newest = { id: 'db_20260120T020000Z', file: 'db_20260120T020000Z.dump', created_at: '2026-01-20T02:00:00.000Z', size_bytes: 28_000 } as Manifest;

function failed(over: Partial<Extract<AlertEvent, { kind: 'backup-failed' }>>): string {
  const event: AlertEvent = {
    kind: 'backup-failed',
    database: 'db',
    error: new BackupError('DB_AUTH', 'login refused'),
    newestGood: undefined,
    nextAttempt: undefined,
    failureStreak: 1,
    backupDir: '/var/backups/pg',
    ...over,
  };
  return composeAlert(event, 'srv1', now).text;
}

describe('the failure alert with several targets', () => {
  it('names the target holding the newest good backup', () => {
    expect(failed({ newestGood: newest, newestOn: 's3' })).toContain(
      'Newest good backup: db_20260120T020000Z.dump (28 kB) on s3, taken 2026-01-20T02:00:00.000Z, 2d 0h old.',
    );
  });

  it('does not say there is nothing to restore from when a target could not be listed', () => {
    const text = failed({ backupDir: '/var/backups/pg', unlisted: ['s3'] });
    expect(text).toContain('Newest good backup: NONE in /var/backups/pg; s3 could not be listed and may hold one.');
    expect(text).not.toContain('There is no backup to restore from');
    expect(failed({ backupDir: '', unlisted: ['local', 's3'] })).toContain('Newest good backup: unknown: local, s3 could not be listed.');
  });

  it('says there is none only when every target was listed', () => {
    expect(failed({ backupDir: '/var/backups/pg, s3://b/p/ (AWS eu-central-1)', unlisted: [] })).toContain(
      'Newest good backup: NONE in /var/backups/pg, s3://b/p/ (AWS eu-central-1). There is no backup to restore from.',
    );
  });
});

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Status } from '../../src/backup/status';
import { VERSION } from '../../src/version';
import { backupEnv, listJson, runCli, spawnCli, tempDir, waitFor, type Spawned } from '../helpers/cli';
import { smallDb } from '../helpers/daemon';
import { metricValue, parseMetrics, type PromFamily } from '../helpers/prom';

/** Once a year: the daemon takes one catch-up backup at start, then waits. */
const YEARLY = '0 0 1 1 *';

function textfile(file: string): Map<string, PromFamily> | undefined {
  return fs.existsSync(file) ? parseMetrics(fs.readFileSync(file, 'utf8')) : undefined;
}

async function stop(d: Spawned): Promise<void> {
  d.child.kill('SIGTERM');
  expect(await d.exited, d.output()).toBe(0);
}

describe('BACKUP_METRICS_FILE with a real daemon', () => {
  it('after a real backup and drill holds what status --json says; failures_total survives a good backup and a restart', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const file = path.join(tempDir('bb-textfile-'), 'basement-backup.prom');
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY, BACKUP_METRICS_FILE: file, BACKUP_CHECK_MINUTES: '0.05' });
    // two refused logins: failed attempts the counter must keep after the next good backup
    for (let i = 0; i < 2; i++) expect((await runCli(['backup'], { ...env, DB_PASSWORD: 'not-the-password' })).code).toBe(11);

    const d = spawnCli(['daemon'], env);
    await waitFor(
      () => metricValue(textfile(file) ?? new Map<string, PromFamily>(), 'basement_backup_good_backups') === 1,
      60_000,
      'the catch-up backup in the textfile',
    );
    const verify = await runCli(['verify'], env);
    expect(verify.code, verify.stderr).toBe(0);
    // the next check (every 3 s) sees the drill the CLI recorded
    await waitFor(() => metricValue(textfile(file)!, 'basement_backup_last_drill_success') === 1, 30_000, 'the drill in the textfile');
    await stop(d);

    const m = textfile(file)!;
    const s = JSON.parse((await runCli(['status', '--json'], env)).stdout) as Status;
    const db1 = { database: s.name };
    const t = { database: s.name, target: s.targets[0]!.name };
    const at = (iso: string) => Date.parse(iso) / 1000;
    expect(metricValue(m, 'basement_backup_up')).toBe(1);
    expect(metricValue(m, 'basement_backup_build_info', { version: VERSION })).toBe(1);
    expect(metricValue(m, 'basement_backup_last_success_timestamp_seconds', t)).toBe(at(s.newest!.created_at));
    expect(metricValue(m, 'basement_backup_last_success_size_bytes', t)).toBe(s.newest!.size_bytes);
    expect(metricValue(m, 'basement_backup_good_backups', t)).toBe(s.count);
    expect(metricValue(m, 'basement_backup_stored_bytes', t)).toBe(s.total_bytes);
    expect(metricValue(m, 'basement_backup_damaged_backups', t)).toBe(s.damaged.length);
    expect(s.failures_total).toBe(2);
    expect(s.failure_streak).toBe(0);
    expect(metricValue(m, 'basement_backup_failures_total', db1)).toBe(s.failures_total);
    expect(metricValue(m, 'basement_backup_failure_streak', db1)).toBe(s.failure_streak);
    expect(metricValue(m, 'basement_backup_last_attempt_success', db1)).toBe(1);
    expect(metricValue(m, 'basement_backup_last_attempt_timestamp_seconds', db1)).toBeGreaterThanOrEqual(at(s.newest!.created_at));
    expect(metricValue(m, 'basement_backup_next_run_timestamp_seconds', { ...db1, kind: 'backup' })).toBe(at(s.next_scheduled_run));
    expect(metricValue(m, 'basement_backup_last_drill_timestamp_seconds', db1)).toBe(at(s.last_drill!.verified_at));
    expect(metricValue(m, 'basement_backup_last_drill_restore_seconds', db1)).toBe(s.last_drill!.restore_ms! / 1000);
    expect(metricValue(m, 'basement_backup_running', db1)).toBe(0);
    expect(metricValue(m, 'basement_backup_healthy', db1)).toBe(1);
    // free space moves with everything else on the disk: the same within 10 %
    const free = metricValue(m, 'basement_backup_disk_free_bytes', t)!;
    expect(Math.abs(free - s.free_bytes!) / s.free_bytes!).toBeLessThan(0.1);

    // no label value is a backup id, a file name or a time
    const backups = await listJson<{ id: string; file: string }>(env);
    const names = new Set(backups.flatMap((b) => [b.id, b.file, path.basename(b.file)]));
    for (const f of m.values())
      for (const sample of f.metrics)
        for (const v of Object.values(sample.labels ?? {})) {
          expect(names.has(v), `${f.name}: ${v}`).toBe(false);
          expect(v).not.toMatch(/\d{8}T\d{6}|\d{4}-\d\d-\d\d/);
        }
    expect(fs.statSync(file).mode & 0o777).toBe(0o644);

    // the counter is kept in the state: a restarted daemon exports the same
    const checkedAt = metricValue(m, 'basement_backup_last_check_timestamp_seconds')!;
    const again = spawnCli(['daemon'], env);
    await waitFor(() => metricValue(textfile(file)!, 'basement_backup_last_check_timestamp_seconds')! > checkedAt, 30_000, 'a check by the new daemon');
    await stop(again);
    expect(metricValue(textfile(file)!, 'basement_backup_failures_total', db1)).toBe(2);
    expect(metricValue(textfile(file)!, 'basement_backup_good_backups', t)).toBe(1);
  });
});

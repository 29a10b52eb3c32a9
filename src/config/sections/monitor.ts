import { registerSecret } from '../../redact';
import type { Reader } from '../reader';
import type { MonitorConfig } from '../types';
import { checkCron } from './schedules';

/** BACKUP_SIZE_ALERT_RATIO: above 0, below 1. */
function sizeRatio(r: Reader): number {
  const hint = 'Set BACKUP_SIZE_ALERT_RATIO to a number above 0 and below 1, e.g. 0.5 (a backup under half, or over twice, the usual size warns).';
  const v = r.decimal('BACKUP_SIZE_ALERT_RATIO', 0.5, 1, hint);
  if (v >= 1) {
    r.fail('BACKUP_SIZE_ALERT_RATIO', `"${v}" is not below 1`, hint);
    return 0.5;
  }
  return v;
}

/** BACKUP_HTTP_PORT, _HOST, _TOKEN and _BUSY_RATE: off unless the port is set (0: any free port, logged). */
function http(r: Reader): MonitorConfig['http'] {
  const token = r.raw('BACKUP_HTTP_TOKEN');
  registerSecret(token);
  if (r.raw('BACKUP_HTTP_PORT') === undefined) {
    for (const v of ['BACKUP_HTTP_HOST', 'BACKUP_HTTP_TOKEN', 'BACKUP_HTTP_BUSY_RATE'])
      if (r.raw(v) !== undefined)
        r.fail(v, 'is set but BACKUP_HTTP_PORT is not, so no HTTP server starts', `Set BACKUP_HTTP_PORT (e.g. 9187), or remove ${v}.`);
    return undefined;
  }
  const port = r.int('BACKUP_HTTP_PORT', 9187, 0, 65535, 'Set BACKUP_HTTP_PORT to a TCP port such as 9187, or remove it to turn the HTTP server off.');
  const host = r.string('BACKUP_HTTP_HOST', '127.0.0.1');
  if (token !== undefined && token.length < 16)
    r.fail('BACKUP_HTTP_TOKEN', 'is shorter than 16 characters', 'Use a long random token, e.g. the output of `openssl rand -hex 24`.');
  const busyRate = r.int(
    'BACKUP_HTTP_BUSY_RATE',
    50,
    0,
    100_000,
    'Set BACKUP_HTTP_BUSY_RATE to how many requests a second the server answers while a backup runs, e.g. 50, or 0 for no cap.',
  );
  return { port, host, token, busyRate };
}

/** BACKUP_METRICS_FILE: a `.prom` file, as node_exporter's textfile collector reads no other. */
function metricsFile(r: Reader): string | undefined {
  if (r.raw('BACKUP_METRICS_FILE') === undefined) return undefined;
  const file = r.dir('BACKUP_METRICS_FILE', '');
  if (!file.endsWith('.prom'))
    r.fail(
      'BACKUP_METRICS_FILE',
      `"${file}" does not end in .prom, so node_exporter's textfile collector would never read it`,
      "Set BACKUP_METRICS_FILE to a .prom file in the textfile collector's directory, e.g. /var/lib/node_exporter/textfile_collector/basement-backup.prom.",
    );
  return file;
}

/** BACKUP_SUMMARY_SCHEDULE: a cron expression in BACKUP_TIMEZONE, or unset/off. */
function summarySchedule(r: Reader, cronZone: string): string | undefined {
  const v = r.raw('BACKUP_SUMMARY_SCHEDULE');
  if (v === undefined || v.toLowerCase() === 'off') return undefined;
  return checkCron(r, 'BACKUP_SUMMARY_SCHEDULE', v, cronZone, 'Use a cron expression like "0 8 * * 1" (Mondays at 08:00), or off.') ? v : undefined;
}

/** The early-warning checks, metrics, the HTTP server and the summary mail (see MonitorConfig). */
export function parseMonitor(r: Reader, cronZone: string): MonitorConfig {
  const maxAge = r.raw('BACKUP_MAX_AGE_HOURS');
  const rto = r.raw('BACKUP_MAX_RESTORE_MINUTES');
  return {
    checkIntervalMs: Math.round(
      r.decimal(
        'BACKUP_CHECK_MINUTES',
        5,
        1440,
        'Set BACKUP_CHECK_MINUTES to how often the daemon checks for stale backups, full disks and overdue drills, e.g. 5.',
      ) * 60_000,
    ),
    maxAgeHours:
      maxAge === undefined
        ? undefined
        : r.decimal(
            'BACKUP_MAX_AGE_HOURS',
            26,
            24 * 366,
            'Set BACKUP_MAX_AGE_HOURS to the age in hours after which the newest backup is stale, e.g. 26 for a daily backup, or remove it to take it from the schedule.',
          ),
    alertAfterFailures: r.int(
      'BACKUP_ALERT_AFTER_FAILURES',
      1,
      1,
      1000,
      'Set BACKUP_ALERT_AFTER_FAILURES to how many failed backups in a row send the alert, e.g. 1 (the first) or 3.',
    ),
    sizeAlertRatio: sizeRatio(r),
    diskAlertDays: r.int(
      'BACKUP_DISK_ALERT_DAYS',
      14,
      0,
      3650,
      'Set BACKUP_DISK_ALERT_DAYS to how many days ahead a full disk should be announced, e.g. 14, or 0 for off.',
    ),
    maxRestoreMinutes:
      rto === undefined
        ? undefined
        : r.decimal(
            'BACKUP_MAX_RESTORE_MINUTES',
            60,
            7 * 24 * 60,
            'Set BACKUP_MAX_RESTORE_MINUTES to the longest a restore may take (your recovery-time objective), e.g. 60, or remove it.',
          ),
    metricsFile: metricsFile(r),
    http: http(r),
    summarySchedule: summarySchedule(r, cronZone),
  };
}

/**
 * What a point-in-time recovery will do, decided before anything is written: the recovery target,
 * the base backup it starts from, and the settings the recovered server is given. Pure.
 */
import { BackupError } from '../errors';
import type { BaseManifest } from '../wal/base-manifest';
import { formatLsn, parseLsn } from '../wal/segment';

/** Where recovery stops. */
export type RecoveryTarget = { kind: 'time'; time: Date; text: string } | { kind: 'lsn'; lsn: bigint } | { kind: 'name'; name: string } | { kind: 'latest' };

/** The target from the command's options: exactly one of --to, --to-lsn, --to-name, --to-latest. */
export function recoveryTarget(o: {
  to?: string | undefined;
  toLsn?: string | undefined;
  toName?: string | undefined;
  toLatest?: boolean | undefined;
}): RecoveryTarget {
  const given = [o.to, o.toLsn, o.toName, o.toLatest ? true : undefined].filter((v) => v !== undefined);
  if (given.length !== 1) {
    throw new BackupError('CONFIG', given.length === 0 ? 'pitr-restore needs a recovery target' : 'give only one recovery target', {
      hint: 'Give one of --to "2026-01-22 14:00:00+00", --to-latest, --to-lsn 0/16B3740 or --to-name NAME.',
    });
  }
  if (o.toLatest) return { kind: 'latest' };
  if (o.toLsn !== undefined) return { kind: 'lsn', lsn: parseLsn(o.toLsn) };
  if (o.toName !== undefined) return { kind: 'name', name: o.toName };
  const text = o.to!.trim();
  const iso = text
    .replace(/^(\d{4}-\d\d-\d\d) /, '$1T')
    .replace(/([+-]\d\d)$/, '$1:00')
    .replace(/([+-]\d\d)(\d\d)$/, '$1:$2');
  const time = new Date(iso);
  if (Number.isNaN(time.getTime()) || !/(Z|[+-]\d\d(:?\d\d)?)$/i.test(text)) {
    throw new BackupError('CONFIG', `--to "${text}" is not a time with its zone`, {
      hint: 'Give the time with its UTC offset, as psql prints timestamptz: --to "2026-01-22 14:00:00+00" (or …+01:00).',
    });
  }
  return { kind: 'time', time, text };
}

export function describeTarget(t: RecoveryTarget): string {
  switch (t.kind) {
    case 'time':
      return `the time ${t.time.toISOString()}`;
    case 'lsn':
      return `LSN ${formatLsn(t.lsn)}`;
    case 'name':
      return `the restore point "${t.name}"`;
    case 'latest':
      return 'the end of the archived WAL';
  }
}

/**
 * The base backup to start from: the newest that ended before the target (a time or an LSN), or
 * the newest for a restore point or the latest. `good` newest first.
 */
export function chooseBase(good: readonly BaseManifest[], t: RecoveryTarget): BaseManifest {
  const fits = good.filter((b) => {
    if (t.kind === 'time') return new Date(b.stop_time).getTime() < t.time.getTime();
    if (t.kind === 'lsn') return parseLsn(b.stop_lsn) <= t.lsn;
    return true;
  });
  if (fits[0]) return fits[0];
  if (good.length === 0) {
    throw new BackupError('NOT_FOUND', 'there is no base backup on this target', {
      hint: 'Take one with `basement-backup basebackup` (the daemon takes them on BASEBACKUP_SCHEDULE); recovery starts from a base backup.',
    });
  }
  const oldest = good[good.length - 1]!;
  throw new BackupError('NOT_FOUND', `no base backup ended before ${describeTarget(t)}`, {
    hint: `The oldest ended at ${oldest.stop_time} (LSN ${oldest.stop_lsn}): recovery can reach only points after it. For an earlier point, restore a dump (\`basement-backup list\`).`,
  });
}

/** `text` as a postgresql.conf string. */
function confString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * The lines appended to the recovered cluster's postgresql.auto.conf: where WAL comes from, what
 * runs when recovery ends (the prefetched WAL removed, however the server was started), where
 * recovery stops, and no archiving (a recovered cluster that archived into the production archive
 * would fork its timelines).
 */
export function recoverySettings(o: { restoreCommand: string; endCommand: string; target: RecoveryTarget; port: number | undefined }): string {
  const lines = [
    '# written by basement-backup pitr-restore',
    `restore_command = ${confString(o.restoreCommand)}`,
    `recovery_end_command = ${confString(o.endCommand)}`,
    "recovery_target_timeline = 'latest'",
    "recovery_target_action = 'promote'",
    "archive_mode = 'off'",
  ];
  const t = o.target;
  if (t.kind === 'time') lines.push(`recovery_target_time = ${confString(t.text)}`);
  if (t.kind === 'lsn') lines.push(`recovery_target_lsn = ${confString(formatLsn(t.lsn))}`);
  if (t.kind === 'name') lines.push(`recovery_target_name = ${confString(t.name)}`);
  if (o.port !== undefined) lines.push(`port = ${o.port}`);
  return lines.join('\n') + '\n';
}

/**
 * The early warnings of point-in-time recovery (issue 23): WAL archiving behind the server, the
 * unarchived WAL past WAL_QUEUE_MAX_MB, a replication slot that lost (or is about to lose) WAL, a
 * gap in a target's archive, a base backup older than its schedule. Pure, from the observation.
 */
import { formatAge, formatBytes } from '../util/format';
import type { ArchivingStatus } from '../pitr/archiving';
import type { PitrObservation } from './observe-pitr';

export type PitrFindingKind = 'wal-lag' | 'wal-queue' | 'wal-slot' | 'wal-gap' | 'base-stale';

export type PitrAdd = (kind: PitrFindingKind, target: string | null, title: string, message: string, fix: string, health: boolean) => void;

/** Every point-in-time finding of the entry `name`. */
export function pitrFindings(name: string, p: PitrObservation, now: number, add: PitrAdd): void {
  const a = p.archiving;
  if (a) archivingFindings(name, a, p, add);
  for (const w of p.windows) {
    if (w.error !== null) continue; // the target cannot be listed: the `unlisted` warning tells
    if (w.gaps.length > 0) {
      const missing = w.gaps.map((g) => (g.from === g.to ? g.from : `${g.from}..${g.to}`)).join(', ');
      add(
        'wal-gap',
        w.target,
        `The WAL archive of ${name} on ${w.target} has a gap`,
        `Segments missing on ${w.target}: ${missing}. Recovery cannot pass a gap: from a base backup before it, only the times before it can be reached.`,
        'Take a base backup now (`basement-backup basebackup`): the times after it are recoverable again. The gap stays until retention removes the base backups before it (docs/pitr.md#monitoring).',
        false,
      );
    }
    if (p.base_max_age_ms === null) continue;
    const age = w.newest_base_at === null ? undefined : now - Date.parse(w.newest_base_at);
    if (age !== undefined && age <= p.base_max_age_ms) continue;
    add(
      'base-stale',
      w.target,
      `No recent base backup of ${name} on ${w.target}`,
      age === undefined
        ? `${w.target} holds no good base backup of ${name}: none of its archived WAL can be recovered.`
        : `The newest good base backup on ${w.target} (${w.newest_base}) ended ${formatAge(age)} ago; the limit is ${formatAge(p.base_max_age_ms)} (BASEBACKUP_SCHEDULE's longest gap and 6 h). Recovery replays all the WAL since.`,
      'Check why the scheduled base backups fail (`pm2 logs basement-backup`, the failure mails), then run `basement-backup basebackup`.',
      true,
    );
  }
}

function archivingFindings(name: string, a: ArchivingStatus, p: PitrObservation, add: PitrAdd): void {
  if (p.max_lag_ms !== null && a.lag_seconds !== null && a.lag_seconds * 1000 > p.max_lag_ms) {
    const last = a.last_archived
      ? `the last archived is ${a.last_archived.wal}${a.last_archived.at ? ` (${a.last_archived.at})` : ''}`
      : 'nothing is archived yet';
    const behind = a.behind_segments === null ? 'WAL' : `${a.behind_segments} segment(s)`;
    add(
      'wal-lag',
      null,
      `WAL archiving of ${name} is behind`,
      `${behind} the server completed ${a.lag_seconds > 0 ? `waited ${formatAge(a.lag_seconds * 1000)} unarchived` : 'are not archived'} (WAL_MAX_LAG_MINUTES: ${formatAge(p.max_lag_ms)}); ${last}. The spool holds ${a.queue.files} file(s), ${formatBytes(a.queue.bytes)}. ${cause(a)}`,
      fixOf(a),
      true,
    );
  }
  const slot = a.server?.slot;
  const unarchived = (slot?.retained_bytes ?? 0) + a.queue.bytes;
  if (p.queue_max_bytes !== null && unarchived > p.queue_max_bytes) {
    add(
      'wal-queue',
      null,
      `The unarchived WAL of ${name} passed WAL_QUEUE_MAX_MB`,
      `${formatBytes(unarchived)} of WAL is not archived: ${formatBytes(slot?.retained_bytes ?? 0)} kept in pg_wal by the server for slot ${a.slot}, ${formatBytes(a.queue.bytes)} in the spool (${a.queue.files} file(s)); the limit is ${formatBytes(p.queue_max_bytes)}. ${cause(a)}`,
      `Bring archiving back before pg_wal fills its disk and PostgreSQL stops (${fixOf(a)}). If it cannot be in time, drop the slot (\`SELECT pg_drop_replication_slot('${a.slot}')\`): the server frees that WAL, the archive gets a gap, and a base backup (\`basement-backup basebackup\`) starts a recoverable window again.`,
      true,
    );
  }
  if (slot && (slot.wal_status === 'lost' || slot.wal_status === 'unreserved')) {
    const lost = slot.wal_status === 'lost';
    add(
      'wal-slot',
      null,
      `The replication slot of ${name} loses WAL (max_slot_wal_keep_size)`,
      lost
        ? `Slot ${a.slot} is lost: the server removed WAL the receiver had not taken. The archive has a gap there; recovery cannot cross it.`
        : `Slot ${a.slot} keeps more WAL than max_slot_wal_keep_size: the server removes it at its next checkpoint, and the archive gets a gap.`,
      lost
        ? `If the receiver has not made the slot anew by itself, drop it (\`SELECT pg_drop_replication_slot('${a.slot}')\`): the receiver creates it and streams again. Then make sure a base backup is taken after the gap (\`basement-backup basebackup\`), so the times after it are recoverable. Find what kept archiving behind, or raise max_slot_wal_keep_size.`
        : `Bring archiving back now (${fixOf(a)}), or raise max_slot_wal_keep_size if pg_wal's disk has room.`,
      true,
    );
  }
}

/** What stops archiving, as the receiver last said. */
function cause(a: ArchivingStatus): string {
  const r = a.receiver;
  if (!r.running) return 'No WAL receiver runs (the daemon with WAL_RECEIVE=on, or `wal-receive`).';
  if (r.last_push_error) return `Pushes fail: ${r.last_push_error.wal}: ${r.last_push_error.message}`;
  if (r.stream_error) return `pg_receivewal ended ${r.failures_in_a_row} time(s) in a row: ${r.stream_error.message}`;
  if (a.server_error) return `The server cannot be asked: ${a.server_error}`;
  return 'The receiver streams and no push failed.';
}

function fixOf(a: ArchivingStatus): string {
  const r = a.receiver;
  if (!r.running) return 'Start the daemon (`pm2 status`, `pm2 restart basement-backup`); the slot keeps the WAL meanwhile, up to max_slot_wal_keep_size.';
  if (r.last_push_error)
    return 'A storage target does not take the WAL: check it (`basement-backup status`); the files wait in the spool and are archived once it is back. Recovery cannot reach past the last archived segment until then.';
  if (r.stream_error) return 'pg_receivewal cannot stream: read its error (`pm2 logs basement-backup`); the slot keeps the WAL meanwhile.';
  return "The receiver does not keep up with the server's WAL: look at the daemon's log (`pm2 logs basement-backup`) and the targets' speed.";
}

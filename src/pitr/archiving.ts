/**
 * The measured state of a WAL receiver's archiving (issue 23, monitoring): what waits in its
 * spool (looked at on disk, not asked of the receiver), what the replication slot makes the server
 * keep, the last file archived, and how far behind the server it is (../wal/lag.ts). Read by
 * `status` and the daemon's checks; reads only, never throws for the server or the spool.
 */
import fs from 'node:fs';
import type { App } from '../app';
import { asBackupError } from '../errors';
import { lockHolder } from '../lock/file-lock';
import { connect } from '../pg/connection';
import { archiveLag } from '../wal/lag';
import { parseLsn, segmentName, segmentNumber, timelineOf, walKind } from '../wal/segment';
import { readReceiverRecord } from './receiver-record';
import { completedFiles, spoolPaths } from './spool';
import type { PitrWindowStatus } from './window-status';

/** The server's side: where it writes now and what its slot keeps. */
export interface ServerWal {
  /** The segment it writes in now (holding pg_current_wal_lsn()). */
  current_wal: string;
  current_lsn: string;
  segment_size: number;
  /** The receiver's slot; null when there is none. */
  slot: { active: boolean; retained_bytes: number; wal_status: string | null } | null;
}

export interface ArchivingStatus {
  slot: string;
  spool: string;
  receiver: {
    /** A receiver (the daemon's or `wal-receive`) holds the spool now. */
    running: boolean;
    pid: number | null;
    /** pg_receivewal streams now (as the receiver last said). */
    streaming: boolean;
    failures_in_a_row: number;
    stream_error: { message: string; at: string } | null;
    last_push_error: { wal: string; message: string; at: string } | null;
  };
  /** The newest WAL file stored on every required target, and when (the receiver's record, else the archive's listing). */
  last_archived: { wal: string; at: string | null } | null;
  /** Completed files in the spool not yet archived. */
  queue: { files: number; bytes: number; oldest_seconds: number };
  server: ServerWal | null;
  /** Why the server could not be asked; null when it could. */
  server_error: string | null;
  /** Segments the server completed that are not archived; null: unknown. */
  behind_segments: number | null;
  /** How long the oldest of them has waited, in seconds; 0: nothing waits; null: unknown. */
  lag_seconds: number | null;
}

/**
 * Measures the archiving of `app`'s receiver now. `windows` (the targets' recovery windows) are
 * awaited only when no receiver recorded a last archived file (a fresh state directory).
 */
export async function measureArchiving(app: App, windows: Promise<readonly PitrWindowStatus[]>, now = new Date()): Promise<ArchivingStatus> {
  const paths = spoolPaths(app);
  const record = readReceiverRecord(paths.recordFile);
  const holder = lockHolder(paths.lockFile);
  const files = fs.existsSync(paths.dir) ? (await completedFiles(paths.dir)).filter((f) => f.name !== record?.marker) : [];
  const oldest = files.reduce((m, f) => Math.min(m, f.mtimeMs), Infinity);
  const queue = {
    files: files.length,
    bytes: files.reduce((n, f) => n + f.size, 0),
    oldest_seconds: files.length === 0 ? 0 : Math.max(0, Math.round((now.getTime() - oldest) / 1000)),
  };
  let server: ServerWal | null = null;
  let serverError: string | null = null;
  try {
    server = await readServerWal(app, app.config.pitr.slotName);
  } catch (err) {
    serverError = asBackupError(err).message;
  }
  const last = record?.last_archived ?? newestListed(await windows);
  const size = server?.segment_size;
  const lag = archiveLag({
    serverSegment: server ? parseLsn(server.current_lsn) / BigInt(server.segment_size) : undefined,
    archivedSegment: last && size && walKind(last.wal) === 'segment' ? segmentNumber(last.wal, size) : undefined,
    archivedAt: last?.at ?? undefined,
    queueFiles: queue.files,
    queueOldestMs: queue.oldest_seconds * 1000,
    streaming: holder !== undefined && record?.streaming === true && server?.slot?.active === true,
    now: now.getTime(),
  });
  const running = holder !== undefined;
  return {
    slot: app.config.pitr.slotName,
    spool: paths.dir,
    receiver: {
      running,
      pid: holder?.pid ?? null,
      streaming: running && (record?.streaming ?? false),
      failures_in_a_row: running ? (record?.failures_in_a_row ?? 0) : 0,
      stream_error: running ? (record?.stream_error ?? null) : null,
      // a push error older than the last file archived is over
      last_push_error: running && record?.last_error && !(last?.at && last.at > record.last_error.at) ? record.last_error : null,
    },
    last_archived: last,
    queue,
    server,
    server_error: serverError,
    behind_segments: lag.behindSegments ?? null,
    lag_seconds: lag.lagMs === undefined ? null : Math.round(lag.lagMs / 1000),
  };
}

/** The newest segment any target lists, when the receiver recorded none (a fresh state directory). */
function newestListed(windows: readonly PitrWindowStatus[]): { wal: string; at: string | null } | null {
  const newest = windows.filter((w) => w.newest_wal !== null).sort((a, b) => (a.newest_wal! < b.newest_wal! ? 1 : -1))[0];
  return newest ? { wal: newest.newest_wal!, at: newest.newest_wal_at } : null;
}

/** One short query: the server's WAL position, its segment size and the slot (pg_replication_slots). */
async function readServerWal(app: App, slot: string): Promise<ServerWal> {
  const c = await connect(app.database.db);
  try {
    const r = await c.query<{ lsn: string; size: string; wal: string; active: boolean | null; retained: string | null; wal_status: string | null }>(
      `SELECT pg_current_wal_lsn()::text AS lsn, pg_size_bytes(current_setting('wal_segment_size'))::text AS size,
              pg_walfile_name(pg_current_wal_lsn()) AS wal,
              s.active, pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint::text AS retained, s.wal_status
         FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`,
      [slot],
    );
    const row = r.rows[0]!;
    const size = Number(row.size);
    return {
      current_wal: segmentName(timelineOf(row.wal), parseLsn(row.lsn), size),
      current_lsn: row.lsn,
      segment_size: size,
      slot: row.active === null ? null : { active: row.active, retained_bytes: Number(row.retained ?? 0), wal_status: row.wal_status },
    };
  } finally {
    await c.end().catch(() => undefined);
  }
}

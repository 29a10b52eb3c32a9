/**
 * How far WAL archiving is behind the server (pure): measured, not taken from pg_stat_archiver.
 * Lag is WAL the server has completed that is not archived: a server that wrote nothing since the
 * last archived segment is not behind, however long ago that was (pg_switch_wal does nothing on
 * an idle server, and archive_timeout completes no empty segment).
 */

export interface LagInput {
  /** The segment number the server writes in now (the one holding pg_current_wal_lsn()); undefined: unknown. */
  serverSegment: bigint | undefined;
  /** The segment number of the newest segment archived; undefined: none yet. */
  archivedSegment: bigint | undefined;
  /** When it was archived. */
  archivedAt: string | undefined;
  /** Completed files waiting in the spool, and the age of the oldest. */
  queueFiles: number;
  queueOldestMs: number;
  /** The receiver streams from an active slot: what the server completed and the spool does not hold yet is on its way, not waiting. */
  streaming: boolean;
  now: number;
}

export interface Lag {
  /** Segments the server completed that are not archived (in the spool or not yet received); undefined: unknown. */
  behindSegments: number | undefined;
  /** How long the oldest of them has waited; 0: nothing waits; undefined: unknown. */
  lagMs: number | undefined;
}

export function archiveLag(i: LagInput): Lag {
  const behind = i.serverSegment === undefined || i.archivedSegment === undefined ? undefined : Math.max(0, Number(i.serverSegment - i.archivedSegment - 1n));
  const queued = i.queueFiles > 0 ? i.queueOldestMs : 0;
  if (behind === undefined) return { behindSegments: undefined, lagMs: i.queueFiles > 0 ? queued : undefined };
  if (behind === 0 || behind <= i.queueFiles || i.streaming) return { behindSegments: behind, lagMs: queued };
  // the server holds completed segments no receiver takes: waiting since the last archived one at most
  const since = i.archivedAt === undefined ? 0 : Math.max(0, i.now - Date.parse(i.archivedAt));
  return { behindSegments: behind, lagMs: Math.max(queued, since) };
}

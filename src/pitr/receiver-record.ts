/**
 * What a running WAL receiver says of itself, in a small file beside its spool
 * (`BACKUP_STATE_DIR/wal-spool/NAME.json`, 0600): whether pg_receivewal streams, its failures in a
 * row, the last file archived and the last push error, and which spooled segment is only
 * pg_receivewal's marker. `status` and the daemon's checks read it (another process than the
 * receiver, for `status`); the last archived file outlives a restart.
 */
import { readJson, writeJsonAtomic } from '../state/json-file';
import { newerSegment } from '../wal/segment';
import type { QueueState } from './spool-pusher';

export interface ReceiverRecord {
  pid: number;
  updated_at: string;
  streaming: boolean;
  stream_error: { message: string; at: string } | null;
  failures_in_a_row: number;
  /** The newest WAL segment stored on every required target, and when. */
  last_archived: { wal: string; at: string } | null;
  last_error: { wal: string; message: string; at: string } | null;
  /** The newest segment archived, left in the spool as pg_receivewal's marker: not waiting. */
  marker: string | null;
}

export function readReceiverRecord(file: string): ReceiverRecord | undefined {
  return readJson<ReceiverRecord>(file);
}

/**
 * Keeps the record of one receiver up to date: `save` writes it when something changed (a look
 * at the spool every second calls it), keeping the last archived file of the record before.
 */
export class ReceiverRecorder {
  private written = '';
  private readonly before: ReceiverRecord | undefined;

  constructor(private readonly file: string) {
    this.before = readReceiverRecord(file);
  }

  save(s: QueueState & { streaming: boolean; streamError: ReceiverRecord['stream_error'] | undefined; failuresInARow: number }, running = true): void {
    const record: Omit<ReceiverRecord, 'updated_at'> = {
      pid: process.pid,
      streaming: running && s.streaming,
      stream_error: s.streamError ?? null,
      failures_in_a_row: s.failuresInARow,
      // the pusher keeps the newest segment it archived; the record's from before a restart may be newer
      last_archived: newerSegment(this.before?.last_archived ?? undefined, s.lastArchived) ?? null,
      last_error: s.lastError ?? null,
      marker: s.marker ?? this.before?.marker ?? null,
    };
    const text = JSON.stringify(record);
    if (text === this.written) return;
    writeJsonAtomic(this.file, { ...record, updated_at: new Date().toISOString() } satisfies ReceiverRecord, { durable: false });
    this.written = text;
  }
}

/**
 * When the server removed WAL the receiver had not taken (the slot passed max_slot_wal_keep_size
 * and was invalidated, or the files went otherwise): pg_receivewal asks for the segment after the
 * spool's newest and is refused for ever ("requested WAL segment … has already been removed").
 * Nothing brings that WAL back. The receiver records the gap, starts again from where the server
 * is now (the slot made anew, the spool's position cleared), and the daemon alerts and takes a
 * new base backup, as point-in-time recovery cannot cross the gap.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { App } from '../app';
import { connect } from '../pg/connection';
import { walKind } from '../wal/segment';
import { createSlot } from './receivewal';

/** The WAL the server no longer has, as the receiver found out. */
export interface WalGap {
  /** The first file pg_receivewal asked for and the server had removed. */
  from: string;
  /** Where streaming starts again (the server's position when the slot was made anew). */
  resumeLsn: string;
  at: string;
}

/** The segment the server said it had removed, from pg_receivewal's error; undefined for any other error. */
export function removedSegment(message: string): string | undefined {
  return /requested WAL segment ([0-9A-F]{24}) has already been removed/.exec(message)?.[1];
}

/**
 * Starts the receiver again after `from`: drops the slot and creates it again (it reserves WAL
 * from the server's position now), and removes the spool's position (the newest segment kept as
 * pg_receivewal's marker, and the `.partial` of a segment the server no longer has), so that
 * pg_receivewal starts from the new slot. Only once the spool holds nothing unpushed: those files
 * come before the gap and are still wanted.
 */
export async function skipGap(app: App, slot: string, spool: string, from: string, signal: AbortSignal): Promise<WalGap> {
  const c = await connect(app.database.db);
  let resumeLsn: string;
  try {
    await c.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [slot]);
    resumeLsn = (await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
  } finally {
    await c.end().catch(() => undefined);
  }
  await createSlot(app, slot, signal);
  for (const name of await fsp.readdir(spool)) {
    const kind = walKind(name.replace(/\.partial$/, ''));
    if (kind === 'segment') await fsp.rm(path.join(spool, name), { force: true });
  }
  return { from, resumeLsn, at: new Date().toISOString() };
}

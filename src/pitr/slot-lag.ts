import type { App } from '../app';
import { connect } from '../pg/connection';

/** The replication slot as the server sees it: how much WAL it keeps for the receiver, and whether a receiver streams. */
export interface SlotLag {
  /** Bytes of WAL between the slot's restart point and the server's current position. */
  bytes: number;
  active: boolean;
  /** `lost` once max_slot_wal_keep_size was passed: the server removed WAL the receiver had not taken. */
  walStatus: string | undefined;
  at: string;
}

/** Reads `slot` from pg_replication_slots (one short query); undefined when there is no such slot. */
export async function readSlotLag(app: App, slot: string): Promise<SlotLag | undefined> {
  const c = await connect(app.database.db);
  try {
    const r = await c.query<{ bytes: string | null; active: boolean; wal_status: string | null }>(
      `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS bytes, active, wal_status
         FROM pg_replication_slots WHERE slot_name = $1`,
      [slot],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    return { bytes: Number(row.bytes ?? 0), active: row.active, walStatus: row.wal_status ?? undefined, at: new Date().toISOString() };
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * The record of the last PITR drill of a database, in the state directory (`status` shows it):
 * whether it passed, from which base backup, to which restore point, how long recovery took,
 * what was compared, and why it failed.
 */
import path from 'node:path';
import type { App } from '../app';
import type { DigestMismatch } from '../digest/table-digests';
import { readJson, writeJsonAtomic } from '../state/json-file';

export interface PitrDrillRecord {
  ok: boolean;
  verified_at: string;
  target: string;
  /** The base backup recovered from; null when the drill failed before choosing one. */
  base_backup: string | null;
  restore_point: string | null;
  restore_point_lsn: string | null;
  /** Where recovery stopped, from the server's log ("recovery stopping at restore point …"). */
  reached: string | null;
  /** From laying out the base backup to the promoted server accepting connections. */
  recovery_ms: number | null;
  tables_checked: number;
  rows_checked: number;
  /** Tables whose content differs from production's at the restore point (damage when `exact`). */
  mismatches: DigestMismatch[];
  /**
   * True when no transaction committed between the drill's snapshot and its restore point: the
   * recovered content must then equal the digests exactly. False: the transactions in
   * `committed_between` did, and the tables in `mismatches` may differ because of them.
   */
  exact: boolean;
  committed_between: string[];
  /** UNLOGGED tables, not compared: PostgreSQL recovers them empty by design. */
  skipped_unlogged: string[];
  error: string | null;
  error_code: string | null;
}

export function pitrDrillFile(app: App): string {
  return path.join(app.config.stateDir, `pitr-drill-${encodeURIComponent(app.database.name)}.json`);
}

export function writePitrDrill(app: App, r: PitrDrillRecord): void {
  writeJsonAtomic(pitrDrillFile(app), r);
}

/** The last drill's record, or null when none ran here. */
export function lastPitrDrill(app: App): PitrDrillRecord | null {
  return readJson<PitrDrillRecord>(pitrDrillFile(app)) ?? null;
}

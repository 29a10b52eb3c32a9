/**
 * The recovered side of a PITR drill: the cluster opens, every table reads, and its content
 * equals the digests taken at the restore point on production; which of the transactions that
 * might have committed between the drill's snapshot and its restore point did (pg_xact_status).
 */
import type pg from 'pg';
import type { DbConfig } from '../config/types';
import { compareDigests, digestTables, type DigestMismatch } from '../digest/table-digests';
import { connect } from '../pg/connection';
import { recoverableTables, type DrillPoint } from './drill-point';

export interface DrillComparison {
  tables: number;
  rows: number;
  mismatches: DigestMismatch[];
  /** Candidates that committed before the restore point: the snapshot then is not exactly the restore point's content. */
  committedBetween: string[];
  /** False when the candidates were too many to record. */
  candidatesKnown: boolean;
}

/** Connects to the recovered server through its private socket directory (trusted there: only this user can reach it). */
export async function compareRecovered(db: DbConfig, socketDir: string, port: number, point: DrillPoint): Promise<DrillComparison> {
  const client = await connect({ ...db, host: socketDir, port, password: undefined, sslmode: 'disable', settings: undefined });
  try {
    const tables = (await recoverableTables(client)).logged;
    // every table read whole: a page that cannot be read fails here
    const digests = await digestTables(client, tables, 'full', { method: point.method, autocommit: true });
    const committedBetween = point.candidates ? await committed(client, point.candidates) : [];
    return {
      tables: tables.length,
      rows: Object.values(digests).reduce((n, d) => n + d.rows, 0),
      mismatches: compareDigests(point.digests, digests),
      committedBetween,
      candidatesKnown: point.candidates !== undefined,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Which of `xids` committed in the recovered cluster (those past its next xid never reached it). */
async function committed(client: pg.Client, xids: string[]): Promise<string[]> {
  if (xids.length === 0) return [];
  const r = await client.query<{ x: string }>(
    // CASE, not AND: pg_xact_status raises on an xid past the cluster's next one, and AND may ask it first
    `SELECT x::text FROM unnest($1::xid8[]) x
      WHERE CASE WHEN x < pg_snapshot_xmax(pg_current_snapshot()) THEN pg_xact_status(x) = 'committed' ELSE false END ORDER BY x`,
    [xids],
  );
  return r.rows.map((row) => row.x);
}

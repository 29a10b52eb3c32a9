/**
 * The production side of a PITR drill: a restore point (pg_create_restore_point) and, in the
 * snapshot taken right before it, the content digest of every table; then the WAL switched so
 * the segment holding the point completes and is archived.
 *
 * Exactness: the snapshot sees every transaction committed before it; the restore point's record
 * follows. A transaction may commit between the two (a busy server): it is then in the
 * snapshot's in-progress list or at or past its xmax, and below the next xid read just after the
 * restore point. Those candidates are recorded; the recovered cluster says which of them
 * committed before the restore point (pg_xact_status). None: the recovered content must equal
 * the digests exactly. Some: the tables that differ may differ because of them, not damage.
 */
import type pg from 'pg';
import type { App } from '../app';
import { digestMethodFor, digestTables, type DigestMethod, type TableDigests } from '../digest/table-digests';
import { BackupError } from '../errors';
import { listUserTables, qualified, type TableRef } from '../pg/catalog';
import { classifyPgError, connect } from '../pg/connection';

/** More candidates than this (a server assigning thousands of xids a second) are not recorded: the drill is then not exact. */
const MAX_CANDIDATES = 100_000;

export interface DrillPoint {
  /** The restore point's name (recovery_target_name). */
  name: string;
  /** Where its record is, and the WAL file that holds it. */
  lsn: string;
  wal: string;
  created_at: string;
  method: DigestMethod;
  digests: TableDigests;
  /** Transactions that may have committed between the snapshot and the restore point; undefined: too many to record. */
  candidates: string[] | undefined;
  /** UNLOGGED tables: never in WAL nor base backups (recovered empty), so not compared. */
  unlogged: string[];
}

/** The user tables, apart: those recovery restores, and the UNLOGGED ones it leaves empty by design. */
export async function recoverableTables(client: pg.Client): Promise<{ logged: TableRef[]; unlogged: TableRef[] }> {
  const tables = await listUserTables(client);
  const r = await client.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND c.relpersistence = 'u'`,
  );
  const unlogged = new Set(r.rows.map(qualified));
  return { logged: tables.filter((t) => !unlogged.has(qualified(t))), unlogged: tables.filter((t) => unlogged.has(qualified(t))) };
}

export function drillPointName(now: Date): string {
  return `bb-drill-${now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}`;
}

/** Creates the restore point and digests every table at it, then switches WAL. */
export async function markDrillPoint(app: App, now = new Date()): Promise<DrillPoint> {
  const db = app.database.db;
  const [snap, next] = [await connect(db), await connect(db)];
  try {
    const name = drillPointName(now);
    await snap.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    // the transaction's snapshot is taken by this first statement, before the restore point is written
    const point = await privileged(
      snap,
      db,
      `SELECT pg_current_snapshot()::text AS snapshot, p::text AS lsn, pg_walfile_name(p) AS wal, current_setting('server_version_num')::int AS version
         FROM pg_create_restore_point($1) p`,
      [name],
    );
    const after = await next.query<{ xmax: string }>('SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax');
    const row = point.rows[0] as { snapshot: string; lsn: string; wal: string; version: number };
    const method = digestMethodFor(row.version);
    const { logged, unlogged } = await recoverableTables(snap);
    const digests = await digestTables(snap, logged, 'full', { method });
    await snap.query('COMMIT');
    await privileged(next, db, 'SELECT pg_switch_wal()', []);
    return {
      name,
      lsn: row.lsn,
      wal: row.wal,
      created_at: now.toISOString(),
      method,
      digests,
      candidates: candidatesOf(row.snapshot, after.rows[0]!.xmax),
      unlogged: unlogged.map(qualified),
    };
  } finally {
    await Promise.all([snap.end().catch(() => undefined), next.end().catch(() => undefined)]);
  }
}

/** xids in progress in snapshot `snapshot` ("xmin:xmax:xip,…"), and those from its xmax to `nextXid`. */
export function candidatesOf(snapshot: string, nextXid: string): string[] | undefined {
  const [, xmaxText, xip = ''] = snapshot.split(':');
  const xmax = BigInt(xmaxText!);
  const end = BigInt(nextXid);
  if (end - xmax > BigInt(MAX_CANDIDATES)) return undefined;
  const out = xip.split(',').filter(Boolean);
  for (let x = xmax; x < end; x++) out.push(x.toString());
  return out;
}

async function privileged(c: pg.Client, db: App['database']['db'], text: string, values: unknown[]): Promise<pg.QueryResult> {
  try {
    return await c.query(text, values);
  } catch (err) {
    if ((err as { code?: string }).code === '42501') {
      throw new BackupError('PRIVILEGE', `the PITR drill needs ${db.user} to create a restore point and switch WAL: ${(err as Error).message}`, {
        hint: `As a superuser: GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() TO ${db.user};`,
      });
    }
    throw classifyPgError(err, db);
  }
}

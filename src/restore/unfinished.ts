import type pg from 'pg';
import { quoteIdent } from '../digest/table-digests';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import { ownerAlive, thisProcess, type Owner } from '../util/owner';

/**
 * Databases a restore or a drill is filling carry a mark, COMMENT ON DATABASE, from just after
 * CREATE DATABASE until the restored data is checked: `{"basement_backup":"unfinished restore",…}`
 * with the database restored and the owner process. A mark that outlives its process proves that
 * the database was left half-restored (the process was killed), so it may be dropped; a database
 * without one (a finished restore an operator keeps) is never touched.
 */
export type UnfinishedKind = 'restore' | 'verify';

const TAG = 'basement_backup';

interface Mark extends Owner {
  [TAG]: `unfinished ${UnfinishedKind}`;
  /** The database whose backup is being restored. */
  of: string;
  started_at: string;
}

export interface Unfinished {
  /** The half-restored database. */
  name: string;
  kind: UnfinishedKind;
  of: string;
  /** Its owner still runs (or is on another host): in use, not a leftover. */
  running: boolean;
  pid: number;
  host: string;
  started_at: string;
}

export async function dropDatabase(client: pg.Client, name: string): Promise<void> {
  await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
}

/**
 * Marks `name` (just created) as being filled by this process with a backup of `of`. Returns
 * false when it could not (a user that created the database for another owner may not comment on
 * it): the database is then only not found by the next run.
 */
export async function markUnfinished(admin: pg.Client, name: string, kind: UnfinishedKind, of: string): Promise<boolean> {
  const mark: Mark = { [TAG]: `unfinished ${kind}`, of, ...thisProcess(), started_at: new Date().toISOString() };
  try {
    await admin.query(`COMMENT ON DATABASE ${quoteIdent(name)} IS ${admin.escapeLiteral(JSON.stringify(mark))}`);
    return true;
  } catch (err) {
    log.warn('could not mark the new database as unfinished', { database: name, error: asBackupError(err).message });
    return false;
  }
}

/** Removes the mark: `name` holds a finished restore now. */
export async function clearUnfinished(admin: pg.Client, name: string): Promise<void> {
  await admin.query(`COMMENT ON DATABASE ${quoteIdent(name)} IS NULL`);
}

/** Every marked database on `admin`'s server. */
export async function findUnfinished(admin: pg.Client): Promise<Unfinished[]> {
  const rows = await admin.query<{ datname: string; mark: string }>(
    `SELECT datname, shobj_description(oid, 'pg_database') AS mark FROM pg_database WHERE starts_with(shobj_description(oid, 'pg_database'), $1) ORDER BY 1`,
    [`{"${TAG}":"unfinished `],
  );
  const out: Unfinished[] = [];
  for (const { datname, mark } of rows.rows) {
    let m: Mark;
    try {
      m = JSON.parse(mark) as Mark;
    } catch {
      continue;
    }
    const kind = m[TAG] === 'unfinished restore' ? 'restore' : m[TAG] === 'unfinished verify' ? 'verify' : undefined;
    if (!kind || typeof m.of !== 'string') continue;
    out.push({ name: datname, kind, of: m.of, running: ownerAlive(m), pid: m.pid, host: m.host, started_at: m.started_at });
  }
  return out;
}

/**
 * Drops the databases a killed restore of `of` left half-restored (marked, their process gone).
 * Call under `of`'s backup lock. Returns their names.
 */
export async function dropUnfinishedRestores(admin: pg.Client, of: string): Promise<string[]> {
  const left = (await findUnfinished(admin)).filter((u) => u.kind === 'restore' && u.of === of && !u.running);
  for (const u of left) {
    await dropDatabase(admin, u.name);
    log.warn('dropped a database left half-restored by an interrupted restore', { database: u.name, pid: u.pid, since: u.started_at });
  }
  return left.map((u) => u.name);
}

/** After a failed restore into the new database `target`: drops it, and says in the error what is true now (`liveState`). */
export async function dropPartial(admin: pg.Client, target: string, liveState: string, err: unknown, rolesCreated: string[]): Promise<BackupError> {
  const e = asBackupError(err);
  let partial: string;
  try {
    await dropDatabase(admin, target);
    partial = `The partly restored database "${target}" was dropped again`;
  } catch (dropErr) {
    const why = (dropErr as Error).message;
    log.error('could not drop the partial restore', { database: target, error: why });
    partial = `The partly restored database "${target}" could NOT be dropped (${why}): drop it with DROP DATABASE ${quoteIdent(target)} WITH (FORCE)`;
  }
  const roles = rolesCreated.length > 0 ? ` The roles it created stay: ${rolesCreated.join(', ')}.` : '';
  const hint = `${e.hint ? `${e.hint} ` : ''}${partial}; ${liveState}.${roles}`;
  return new BackupError(e.code, e.message, { hint, detail: e.detail, cause: e });
}

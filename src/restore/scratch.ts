import type pg from 'pg';
import type { DbConfig } from '../config/types';
import { BackupError } from '../errors';
import { log } from '../logger';
import { classifyPgError, connect } from '../pg/connection';
import { sqlRole } from '../pg/privileges';
import { compactTimestamp, safeName } from '../repository/manifest';
import { dropDatabase, findUnfinished } from './unfinished';

/** Scratch databases of restore drills are named bb_verify_<db>_<time>; nothing else uses the prefix. */
export function scratchPrefix(database: string): string {
  return `bb_verify_${safeName(database).toLowerCase()}_`;
}

export function scratchName(database: string, at = new Date()): string {
  return `${scratchPrefix(database)}${compactTimestamp(at).toLowerCase()}`;
}

/**
 * A connection for creating, renaming and dropping databases on the server `db` points at:
 * to "postgres", else "template1", else `db`'s own database (which then cannot be renamed).
 */
export async function connectAdmin(db: DbConfig): Promise<pg.Client> {
  let firstError: unknown;
  for (const name of ['postgres', 'template1', db.database]) {
    try {
      return await connect(db, name);
    } catch (err) {
      firstError ??= err;
      const code = (err as { code?: string }).code;
      if (code !== 'DB_MISSING' && code !== 'DB_AUTH') throw err;
    }
  }
  throw firstError;
}

/**
 * Why CREATE DATABASE `name` failed on `db`'s server, as an error that says what is missing:
 * PRIVILEGE (no CREATEDB, or not a member of the owner role), NO_SPACE, or a connection problem.
 * `other` says what else to do for the privileges (e.g. use another server for drills).
 */
export function createDatabaseError(err: unknown, db: DbConfig, name: string, other: string): BackupError {
  const e = err as { code?: string; message?: string };
  const where = `${db.host}:${db.port}`;
  if (e.code === '42501') {
    const member = /must be (?:able to SET ROLE|member of role) "([^"]+)"/.exec(e.message ?? '')?.[1];
    if (member) {
      return new BackupError('PRIVILEGE', `${db.user} may not create database "${name}" owned by ${member} on ${where}: ${e.message}`, {
        hint: `As a superuser: GRANT ${sqlRole(member)} TO ${sqlRole(db.user)}; ${other}`,
        cause: err,
      });
    }
    return new BackupError('PRIVILEGE', `${db.user} may not create databases on ${where} (needed for "${name}"): ${e.message}`, {
      hint: `As a superuser: ALTER ROLE ${sqlRole(db.user)} CREATEDB; ${other}`,
      cause: err,
    });
  }
  if (e.code === '53100') {
    return new BackupError('NO_SPACE', `no disk space on ${where} to create database "${name}": ${e.message}`, {
      hint: `Free disk space on the database server. ${other}`,
      cause: err,
    });
  }
  const classified = classifyPgError(err, db);
  if (classified.code !== 'DUMP_FAILED') return classified;
  return new BackupError('INTERNAL', `cannot create database "${name}" on ${where}: ${e.message ?? String(err)}`, {
    hint: `Read the server's message; nothing was restored. ${other}`,
    cause: err,
  });
}

const SCRATCH_TIME = /^\d{8}t\d{6}z$/;

/**
 * Is `datname` a scratch database of `database`? The prefix alone is not enough: the drills of
 * "app_staging" (bb_verify_app_staging_…) also start with the prefix of "app". PostgreSQL cuts
 * names at 63 bytes, and with it the time of a long database name's scratch database.
 */
export function isScratchOf(database: string, datname: string): boolean {
  const prefix = scratchPrefix(database);
  if (!datname.startsWith(prefix)) return false;
  const rest = datname.slice(prefix.length);
  return SCRATCH_TIME.test(rest) || (Buffer.byteLength(datname) === 63 && SCRATCH_TIME.test(rest + '00000000t000000z'.slice(rest.length)));
}

/** The scratch databases of `database`'s drills on `admin`'s server, each with whether the drill that fills it still runs. */
export async function findScratch(admin: pg.Client, database: string): Promise<{ name: string; running: boolean; pid: number | undefined }[]> {
  const rows = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1`, [scratchPrefix(database)]);
  const marked = new Map((await findUnfinished(admin)).map((u) => [u.name, u]));
  return rows.rows
    .map((r) => r.datname)
    .filter((name) => isScratchOf(database, name))
    .map((name) => ({ name, running: marked.get(name)?.running ?? false, pid: marked.get(name)?.pid }));
}

/**
 * Drops scratch databases a crashed drill left behind: all of `database`'s but those a running
 * drill marked as its own (another process's, or one on another host). Call while holding the verify lock.
 */
export async function dropStaleScratch(db: DbConfig, database: string): Promise<string[]> {
  const client = await connectAdmin(db);
  try {
    const stale = (await findScratch(client, database)).filter((s) => !s.running);
    for (const { name } of stale) {
      await dropDatabase(client, name);
      log.warn('dropped a scratch database left by an interrupted restore drill', { database: name });
    }
    return stale.map((s) => s.name);
  } finally {
    await client.end().catch(() => undefined);
  }
}

import crypto from 'node:crypto';
import pg from 'pg';
import { inject, onTestFinished } from 'vitest';
import { WEBSERVER_SCHEMA, webserverRows } from '../../scripts/lib/seed-db';

export function pgInfo() {
  return inject('pg');
}

export async function query<T extends pg.QueryResultRow = pg.QueryResultRow>(database: string, sql: string, params?: unknown[]): Promise<T[]> {
  const info = pgInfo();
  const client = new pg.Client({ host: info.host, port: info.port, user: info.user, password: info.password, database });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** A fresh database for this test, dropped when the test finishes. */
export async function createTestDb(prefix = 'db', opts: { keep?: boolean } = {}): Promise<string> {
  const name = `${prefix}_${crypto.randomBytes(4).toString('hex')}`;
  await query('postgres', `CREATE DATABASE "${name}"`);
  if (!opts.keep) onTestFinished(() => dropDb(name));
  return name;
}

export async function dropDb(name: string): Promise<void> {
  await query('postgres', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
}

/** A database shaped like the seed's webserver_db, with a few rows per table. */
export async function createWebserverDb(users = 20): Promise<string> {
  const name = await createTestDb('webserver_db');
  await query(name, WEBSERVER_SCHEMA + webserverRows(users));
  return name;
}

/** Row count of every user table, as {"schema.table": n}. */
export async function tableCounts(database: string): Promise<Record<string, number>> {
  const tables = await query<{ s: string; t: string }>(
    database,
    `SELECT schemaname AS s, tablename AS t FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1, 2`,
  );
  const out: Record<string, number> = {};
  for (const { s, t } of tables) {
    const r = await query<{ n: string }>(database, `SELECT count(*)::text AS n FROM "${s}"."${t}"`);
    out[`${s}.${t}`] = Number(r[0]!.n);
  }
  return out;
}

/** Holds ACCESS EXCLUSIVE on `table` in its own transaction until release(), so pg_dump blocks on it. */
export async function lockTable(database: string, table: string): Promise<{ release(): Promise<void> }> {
  const info = pgInfo();
  const client = new pg.Client({ host: info.host, port: info.port, user: info.user, password: info.password, database });
  client.on('error', () => undefined); // the database may be dropped under it at the end
  await client.connect();
  await client.query(`BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    await client.query('COMMIT').catch(() => undefined);
    await client.end().catch(() => undefined);
  };
  onTestFinished(release);
  return { release };
}

/** Every table's row count and an md5 over its rows: equal only when the rows are identical. */
export async function tableContents(database: string): Promise<Record<string, string>> {
  const tables = await query<{ s: string; t: string }>(
    database,
    `SELECT schemaname AS s, tablename AS t FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1, 2`,
  );
  const out: Record<string, string> = {};
  for (const { s, t } of tables) {
    const [r] = await query<{ n: string; h: string }>(
      database,
      `SELECT count(*)::text AS n, md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) AS h FROM "${s}"."${t}" x`,
    );
    out[`${s}.${t}`] = `${r!.n} rows, md5 ${r!.h}`;
  }
  return out;
}

/** A name for a database the test restores into, dropped when the test finishes. */
export function restoreDbName(prefix: string): string {
  const name = `${prefix}_${crypto.randomBytes(4).toString('hex')}`;
  onTestFinished(() => dropDb(name));
  return name;
}

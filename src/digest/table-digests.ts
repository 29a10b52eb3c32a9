import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { DigestMode } from '../config/types';
import { qualified, type TableRef } from '../pg/catalog';
import { RowDigest } from './row-digest';

/**
 * How a table's content digest (mode "full") is computed; a drill recomputes it the same way.
 * - `server`: by the server, in the snapshot: the sum, as an exact number, of
 *   hashtextextended(row as text, 0) over the rows (PostgreSQL 11+). Nothing crosses the network
 *   but the result, and the server's C code does the hashing: half the CPU of `copy`.
 * - `copy`: every row read through COPY into this process and hashed here (RowDigest). Backups
 *   before `digest_method` was recorded used it, and so do servers before 11.
 * Both digest the rows' text in the same canonical output settings, so both see every value.
 */
export type DigestMethod = 'server' | 'copy';

/** The method for a server of this version (server_version_num). */
export function digestMethodFor(versionNum: number): DigestMethod {
  return versionNum >= 110000 ? 'server' : 'copy';
}

export interface TableDigest {
  rows: number;
  /** Order-independent content digest (mode "full" only). */
  digest?: string;
}

export type TableDigests = Record<string, TableDigest>;

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Output settings that make COPY text identical for identical data, whatever the session or
 * server defaults: for the current transaction, or with `session` for the whole connection.
 */
export async function setCanonicalOutput(client: pg.Client, session = false): Promise<void> {
  const set = session ? 'SET' : 'SET LOCAL';
  await client.query(`${set} DateStyle = 'ISO, YMD'; ${set} IntervalStyle = 'postgres'; ${set} TimeZone = 'UTC';
    ${set} extra_float_digits = 3; ${set} bytea_output = 'hex'`);
}

export interface DigestOptions {
  /**
   * Read each table in its own statement outside a transaction, holding no lock longer than
   * one table's read: for a database that is still being restored (its data already loaded).
   * Otherwise the tables are read in the caller's transaction, e.g. the snapshot of a dump.
   */
  autocommit?: boolean;
  /** How content digests are computed (default `copy`, what backups without a recorded method used). */
  method?: DigestMethod;
  /** Count (and digest) the large objects too (default true). */
  largeObjects?: boolean;
}

/**
 * Row counts (and, in mode "full", content digests) of `tables`, read through `client` in its
 * current transaction: run it in the snapshot a dump uses and the two agree exactly.
 */
export async function digestTables(client: pg.Client, tables: TableRef[], mode: DigestMode, opts: DigestOptions = {}): Promise<TableDigests> {
  const out: TableDigests = {};
  if (mode === 'off') return out;
  await setCanonicalOutput(client, opts.autocommit);
  for (const t of tables) {
    const rel = `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
    if (mode === 'counts') {
      const r = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ONLY ${rel}`);
      out[qualified(t)] = { rows: Number(r.rows[0]!.n) };
      continue;
    }
    if (opts.method === 'server') {
      const r = await client.query<{ n: string; h: string }>(
        `SELECT count(*)::text AS n, coalesce(sum(hashtextextended(t::text, 0)), 0)::text AS h FROM ONLY ${rel} t`,
      );
      out[qualified(t)] = { rows: Number(r.rows[0]!.n), digest: r.rows[0]!.h };
      continue;
    }
    out[qualified(t)] = await copyDigest(client, `COPY ${rel} TO STDOUT`);
  }
  if (opts.largeObjects !== false) await digestLargeObjects(client, mode, out, opts.autocommit === true);
  return out;
}

/**
 * digestTables in autocommit over `clients` at once, for a restored copy whose data no longer
 * changes: each table read whole by one connection, the largest (pg_relation_size) handed out
 * first to the connection with the fewest bytes so far; the large objects by the first. One
 * table's digest is the same whichever connection reads it.
 */
export async function digestTablesAcross(clients: pg.Client[], tables: TableRef[], mode: DigestMode, opts: DigestOptions = {}): Promise<TableDigests> {
  if (clients.length <= 1 || tables.length <= 1 || mode === 'off') return digestTables(clients[0]!, tables, mode, { ...opts, autocommit: true });
  const sizes = await clients[0]!.query<{ i: number; size: string }>(
    `SELECT i::int AS i, pg_relation_size(format('%I.%I', s, n)::regclass)::text AS size FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(s, n, i)`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  const bytes = new Map(sizes.rows.map((r) => [r.i - 1, Number(r.size)]));
  const shares = clients.map(() => ({ tables: [] as TableRef[], bytes: 0 }));
  const largestFirst = tables.map((t, i) => ({ t, size: bytes.get(i) ?? 0 })).sort((a, b) => b.size - a.size);
  for (const { t, size } of largestFirst) {
    const least = shares.reduce((a, b) => (b.bytes < a.bytes ? b : a));
    least.tables.push(t);
    least.bytes += size;
  }
  const parts = await Promise.all(
    clients.map((c, i) => digestTables(c, shares[i]!.tables, mode, { ...opts, autocommit: true, largeObjects: i === 0 && opts.largeObjects !== false })),
  );
  const all = Object.assign({}, ...parts) as TableDigests;
  // in the order of `tables`, as digestTables gives them
  const out: TableDigests = {};
  for (const key of [...tables.map(qualified), LARGE_OBJECTS]) if (all[key]) out[key] = all[key];
  return out;
}

/** The rows COPY `statement` sends, counted and digested here (RowDigest). */
async function copyDigest(client: pg.Client, statement: string): Promise<TableDigest> {
  const digest = new RowDigest();
  const stream = client.query(copyTo(statement));
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => digest.update(chunk));
    stream.once('error', reject);
    stream.once('end', resolve);
  });
  return digest.finish();
}

/** The key under which large objects are recorded beside the tables. */
export const LARGE_OBJECTS = '(large objects)';

/**
 * Large objects live outside the tables: count them (and in mode "full" digest each one's oid and
 * md5) in the same snapshot. Inside a savepoint, so that a user who may not read them only loses
 * this record, not the transaction the dump's snapshot belongs to.
 */
async function digestLargeObjects(client: pg.Client, mode: DigestMode, out: TableDigests, autocommit: boolean): Promise<void> {
  await client.query(autocommit ? 'BEGIN' : 'SAVEPOINT bb_large_objects');
  try {
    const n = Number((await client.query<{ n: string }>('SELECT count(*)::text AS n FROM pg_largeobject_metadata')).rows[0]!.n);
    if (n === 0) return;
    if (mode === 'counts') {
      out[LARGE_OBJECTS] = { rows: n };
      return;
    }
    out[LARGE_OBJECTS] = await copyDigest(client, 'COPY (SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata) TO STDOUT');
  } catch {
    await client.query(autocommit ? 'ROLLBACK' : 'ROLLBACK TO SAVEPOINT bb_large_objects');
  } finally {
    await client.query(autocommit ? 'COMMIT' : 'RELEASE SAVEPOINT bb_large_objects').catch(() => undefined);
  }
}

export interface DigestMismatch {
  table: string;
  problem: string;
}

/** Compares digests taken at backup time with those of a restored copy. */
export function compareDigests(expected: TableDigests, actual: TableDigests): DigestMismatch[] {
  const out: DigestMismatch[] = [];
  for (const [table, e] of Object.entries(expected)) {
    const a = actual[table];
    if (!a) {
      out.push({ table, problem: 'missing from the restored copy' });
      continue;
    }
    if (a.rows !== e.rows) out.push({ table, problem: `${a.rows} rows restored, ${e.rows} at backup time` });
    else if (e.digest && a.digest && e.digest !== a.digest) out.push({ table, problem: `content differs (digest ${a.digest}, expected ${e.digest})` });
  }
  return out;
}

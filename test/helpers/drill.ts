/**
 * What the restore-drill tests (verify.test.ts, drills.test.ts) share: databases for drills with a
 * check that none leaves a scratch database behind, the CLI, backups and their listing.
 */
import pg from 'pg';
import { afterEach, expect } from 'vitest';
import type { Cluster } from '../../scripts/lib/cluster';
import type { Verification } from '../../src/repository/manifest';
import { listJson, runCli, type CliResult } from './cli';
import { createTestDb, query } from './pg';

export interface Listed {
  id: string;
  file: string;
  database: string;
  digest_mode: 'full' | 'counts' | 'off';
  digest_method?: 'server' | 'copy';
  table_digests: Record<string, { rows: number; digest?: string }>;
  tables: string[];
  created_at: string;
  finished_at: string;
  state?: string;
  verification?: Verification;
}

export async function scratchDatabases(run: (sql: string, params: unknown[]) => Promise<{ datname: string }[]>, prefix: string): Promise<string[]> {
  return (await run('SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1', [prefix])).map((r) => r.datname);
}

/**
 * Databases for drills, named <prefix>_<hex>, so every scratch database a drill of the calling file
 * can create starts with bb_verify_<prefix>_ (other test files may run drills on the shared cluster
 * at the same time, so the check after each test does not claim theirs: give each file its own
 * prefix). After each test, no drill of the file has left a scratch database behind, on the primary
 * or on any second cluster the test put in `extraClusters` (started by the running test).
 */
export function drillDatabases(prefix: string): { drillDb: (sql: string) => Promise<string>; extraClusters: Set<Cluster> } {
  const extraClusters = new Set<Cluster>();
  const scratchPrefix = `bb_verify_${prefix}_`;
  afterEach(async () => {
    expect(await scratchDatabases((sql, p) => query<{ datname: string }>('postgres', sql, p), scratchPrefix)).toEqual([]);
    for (const c of extraClusters) expect(await scratchDatabases((sql, p) => c.query<{ datname: string }>('postgres', sql, p), 'bb_verify_')).toEqual([]);
  });
  async function drillDb(sql: string): Promise<string> {
    const db = await createTestDb(prefix);
    await query(db, sql);
    return db;
  }
  return { drillDb, extraClusters };
}

export async function cli(args: string[], env: Record<string, string>, expectedCode = 0): Promise<CliResult> {
  const r = await runCli(args, env);
  expect(r.code, `basement-backup ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(expectedCode);
  return r;
}

/** Takes a backup and returns its listing. */
export async function backup(env: Record<string, string>): Promise<Listed> {
  const before = new Set((await listJson<Listed>(env)).map((b) => b.id));
  await cli(['backup'], env);
  const added = (await listJson<Listed>(env)).filter((b) => !before.has(b.id));
  expect(added).toHaveLength(1);
  return added[0]!;
}

export async function verifyJson(env: Record<string, string>, expectedCode: number, id = 'latest'): Promise<Verification & { id: string }> {
  const r = await cli(['verify', id, '--json'], env, expectedCode);
  return JSON.parse(r.stdout) as Verification & { id: string };
}

/** Rows of `sql` in `database` of the primary cluster. */
export const q = <T extends pg.QueryResultRow = Record<string, unknown>>(database: string, sql: string, params?: unknown[]) => query<T>(database, sql, params);

/** Two small tables, one with a name that needs quoting everywhere. */
export const SMALL_SCHEMA = `
  CREATE TABLE items (id int PRIMARY KEY, note text, price numeric(10, 2));
  INSERT INTO items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 400) g;
  CREATE SCHEMA "Other Schema";
  CREATE TABLE "Other Schema"."Weird Table" ("Key" int PRIMARY KEY, "Value" text);
  INSERT INTO "Other Schema"."Weird Table" SELECT g, 'w' || g FROM generate_series(1, 25) g;
`;

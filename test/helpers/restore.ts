/**
 * What the restore tests share: SQL on any server, content fingerprints, a second cluster, and a
 * throwaway pm2 with a dummy app that keeps a connection to the live database.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { expect, onTestFinished } from 'vitest';
import { startCluster, type Cluster } from '../../scripts/lib/cluster';
import { sleep, waitFor, type CliResult } from './cli';
import { takeBackup } from './app';
import { killPm2Daemon } from './pm2';

export const REPO = path.resolve(__dirname, '../..');
export const BIN = path.join(REPO, 'node_modules/.bin');
export const PM2 = path.join(REPO, 'node_modules/pm2/bin/pm2');

/** Where a server is: the global test cluster (pgInfo()) or a throwaway second one. */
export interface Server {
  host: string;
  port: number;
  user: string;
  password: string;
}

export async function sql<T extends pg.QueryResultRow = pg.QueryResultRow>(server: Server, database: string, text: string, params?: unknown[]): Promise<T[]> {
  const client = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database });
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

export async function databases(server: Server, prefix: string): Promise<string[]> {
  const rows = await sql<{ datname: string }>(server, 'postgres', 'SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1', [prefix]);
  return rows.map((r) => r.datname);
}

export async function userTables(server: Server, database: string): Promise<string[]> {
  const rows = await sql<{ t: string }>(
    server,
    database,
    `SELECT schemaname || '.' || tablename AS t FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
  );
  return rows.map((r) => r.t);
}

/** Every user table's row count and an md5 of its rows in a fixed order: equal exactly when the contents are. */
export async function contents(server: Server, database: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const t of await userTables(server, database)) {
    const [s, n] = t.split('.') as [string, string];
    const rows = await sql<{ n: string; h: string }>(
      server,
      database,
      `SELECT count(*)::text AS n, md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) AS h FROM "${s}"."${n}" x`,
    );
    out[t] = `${rows[0]!.n} rows, md5 ${rows[0]!.h}`;
  }
  return out;
}

export async function rowCount(server: Server, database: string, table: string): Promise<number> {
  return (await sql<{ n: number }>(server, database, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;
}

/**
 * Drops, when the test finishes, every database on `server` whose name starts with `db` (the live
 * one and all the restored, side and kept copies) and the given roles, then checks that none of
 * them and no restore-drill scratch database of `db` is left.
 */
export function cleanUp(server: Server, db: string, roles: string[] = []): void {
  onTestFinished(async () => {
    for (const name of await databases(server, db)) {
      // a prepared transaction would keep DROP DATABASE … WITH (FORCE) waiting
      for (const { gid } of await sql<{ gid: string }>(server, 'postgres', 'SELECT gid FROM pg_prepared_xacts WHERE database = $1', [name])) {
        await sql(server, name, `ROLLBACK PREPARED '${gid}'`);
      }
      await sql(server, 'postgres', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    }
    for (const role of roles) await sql(server, 'postgres', `DROP ROLE IF EXISTS "${role}"`);
    expect(await databases(server, db)).toEqual([]);
    expect(await databases(server, `bb_verify_${db.toLowerCase()}`)).toEqual([]);
  });
}

/** A second, throwaway PostgreSQL cluster: a "fresh server". */
export async function secondCluster(settings?: Record<string, string>): Promise<Cluster> {
  const cluster = await startCluster(settings ? { settings } : {});
  onTestFinished(() => cluster.stop());
  return cluster;
}

/** The environment that points basement-backup at `cluster` instead of the global test cluster. */
export function on(cluster: Cluster): Record<string, string> {
  return { DB_HOST: cluster.host, DB_PORT: String(cluster.port), DB_USER: cluster.user, DB_PASSWORD: cluster.password };
}

/** Takes a backup (in-process: the restore tests are about restoring it) and returns its id. */
export async function backup(env: Record<string, string>): Promise<string> {
  return (await takeBackup(env)).id;
}

/** The rows of the table `restore` prints: table -> [rows restored, rows at backup, verdict]. */
export function printedCounts(stdout: string): Record<string, [string, string, string]> {
  const out: Record<string, [string, string, string]> = {};
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('│')) continue;
    const cells = line
      .split('│')
      .slice(1, -1)
      .map((c) => c.trim());
    if (cells[0] === 'table') continue;
    out[cells[0]!] = [cells[1]!, cells[2]!, cells[3]!];
  }
  return out;
}

export function restoredInto(r: CliResult): string {
  const m = /into "([^"]+)" in \d+\.\ds(?: \(\d+ pg_restore jobs\))?\./.exec(r.stdout);
  expect(m, r.stdout + r.stderr).not.toBeNull();
  return m![1]!;
}

export const STAMP = '\\d{8}t\\d{6}z';

// ---------------------------------------------------------------------------------------------
// pm2: a throwaway PM2_HOME and a dummy app that keeps a connection to the live database

export interface Pm2App {
  name: string;
  pid: number;
  pm2_env: { status: string; restart_time: number; pm_uptime: number };
}

/**
 * A dummy application: notes each start and stop in APP_LOG and keeps a pg connection to APP_DB,
 * reconnecting every 200 ms. It exits APP_STOP_MS (default 300) after pm2's SIGINT.
 */
const APP_SCRIPT = `
const fs = require('node:fs');
const pg = require(process.env.APP_PG_MODULE);
const note = (s) => fs.appendFileSync(process.env.APP_LOG, s + ' ' + process.pid + '\\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let stopping = false;
note('start');
process.on('SIGINT', () => {
  stopping = true;
  note('stop');
  setTimeout(() => process.exit(0), Number(process.env.APP_STOP_MS ?? 300));
});
async function session() {
  const c = new pg.Client({ host: process.env.APP_HOST, port: Number(process.env.APP_PORT), user: process.env.APP_USER, password: process.env.APP_PASSWORD, database: process.env.APP_DB });
  c.on('error', () => undefined);
  try {
    await c.connect();
    const r = await c.query('SELECT count(*)::int AS n FROM users');
    note('connected users=' + r.rows[0].n);
    while (!stopping) {
      await c.query('SELECT 1');
      await sleep(200);
    }
  } catch {
    // the database is away for a moment: reconnect
  } finally {
    await c.end().catch(() => undefined);
  }
}
(async () => {
  while (!stopping) {
    await session();
    await sleep(200);
  }
})();
`;

export interface Pm2 {
  /** Settings for a basement-backup run that controls this pm2 (PATH with node_modules/.bin, PM2_HOME). */
  env: Record<string, string>;
  run(...args: string[]): Promise<string>;
  app(name: string): Promise<Pm2App | undefined>;
  /** The start/stop/connected lines the app wrote, as "verb pid". */
  log(): string[];
  /**
   * Starts the dummy app connected to `database` on `server`. With `stopMs`, it takes that long to
   * stop after pm2's SIGINT (pm2 waits for it: its kill_timeout is longer).
   */
  startApp(name: string, server: Server, database: string, opts?: { stopMs?: number }): Promise<Pm2App>;
  kill(): Promise<void>;
}

export function pm2In(dir: string): Pm2 {
  const home = path.join(dir, 'pm2');
  fs.mkdirSync(home);
  // An existing "touch" file skips pm2's first-run banner and online version check.
  fs.writeFileSync(path.join(home, 'touch'), String(Date.now()));
  const appLog = path.join(dir, 'app.log');
  const script = path.join(dir, 'app.js');
  fs.writeFileSync(script, APP_SCRIPT);
  const env = { PATH: `${BIN}:${process.env.PATH ?? ''}`, PM2_HOME: home, PM2_DISABLE_VERSION_CHECK: 'true' };
  let appEnv: Record<string, string> = {};
  const run = async (...args: string[]) =>
    (await promisify(execFile)(process.execPath, [PM2, ...args], { env: { HOME: process.env.HOME ?? '/root', ...env, ...appEnv }, cwd: dir, timeout: 60_000 }))
      .stdout;
  const app = async (name: string) => (JSON.parse(await run('jlist')) as Pm2App[]).find((a) => a.name === name);
  return {
    env,
    run,
    app,
    log: () => (fs.existsSync(appLog) ? fs.readFileSync(appLog, 'utf8').trim().split('\n') : []),
    async startApp(name, server, database, opts = {}) {
      appEnv = {
        APP_STOP_MS: String(opts.stopMs ?? 300),
        APP_PG_MODULE: path.join(REPO, 'node_modules/pg'),
        APP_LOG: appLog,
        APP_HOST: server.host,
        APP_PORT: String(server.port),
        APP_USER: server.user,
        APP_PASSWORD: server.password,
        APP_DB: database,
      };
      await run('start', script, '--name', name, ...(opts.stopMs ? ['--kill-timeout', String(opts.stopMs + 10_000)] : []));
      let started: Pm2App | undefined;
      await waitFor(
        async () => {
          started = await app(name);
          return started?.pm2_env.status === 'online' && fs.existsSync(appLog) && fs.readFileSync(appLog, 'utf8').includes(`connected users=`);
        },
        20_000,
        'the dummy app to connect',
      );
      return started!;
    },
    async kill() {
      await killPm2Daemon(home, () => run('kill'));
    },
  };
}

/** Checks that the app was stopped once and started again (a new process, online, connected). */
export async function expectStoppedAndStarted(pm2: Pm2, name: string, before: Pm2App, usersSeen: number): Promise<Pm2App> {
  const after = await pm2.app(name);
  expect(after?.pm2_env.status).toBe('online');
  expect(after!.pid).not.toBe(before.pid);
  expect(after!.pm2_env.pm_uptime).toBeGreaterThan(before.pm2_env.pm_uptime);
  await waitFor(() => pm2.log().includes(`connected users=${usersSeen} ${after!.pid}`), 10_000, 'the restarted app to connect');
  expect(pm2.log().filter((l) => !l.startsWith('connected'))).toEqual([`start ${before.pid}`, `stop ${before.pid}`, `start ${after!.pid}`]);
  return after!;
}

/**
 * An index on users whose function, in a copy of `db` being restored, waits (up to 30 s) until
 * a prepared transaction holds that copy: pg_restore cannot finish before the test holds it, so
 * the test does not race the restore. In `db` itself it returns at once.
 */
export const waitsForAHoldInACopy = (db: string) => `
  CREATE FUNCTION bb_held_copy(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
  BEGIN
    IF current_database() <> '${db}' THEN
      FOR i IN 1..600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE database = current_database());
        PERFORM pg_sleep(0.05);
      END LOOP;
    END IF;
    RETURN v;
  END $f$;
  CREATE INDEX users_held_copy ON users (bb_held_copy(id));`;

/**
 * Waits for the first database on `server` named `prefix…` and holds it with a prepared
 * transaction (which keeps it from being renamed or dropped); `stop()` ends the watch and
 * returns the held name (undefined when none appeared).
 */
export function holdFirstCopy(server: Server, prefix: string): { stop(): Promise<string | undefined> } {
  let done = false;
  const watcher = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database: 'postgres' });
  watcher.on('error', () => undefined); // the cluster may stop under it when a test fails
  const holding = (async () => {
    await watcher.connect();
    try {
      while (!done) {
        const [found] = (await watcher.query<{ datname: string }>('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [prefix])).rows;
        if (!found) {
          await sleep(50);
          continue;
        }
        const c = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database: found.datname });
        await c.connect();
        await c.query('BEGIN');
        await c.query(`PREPARE TRANSACTION 'bb_test_hold'`);
        await c.end();
        return found.datname;
      }
      return undefined;
    } finally {
      await watcher.end();
    }
  })();
  return {
    async stop() {
      done = true;
      return holding;
    },
  };
}

// ---------------------------------------------------------------------------------------------

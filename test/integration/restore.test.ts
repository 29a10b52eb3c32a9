import { execFile, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startCluster, type Cluster } from '../../scripts/lib/cluster';
import { WEBSERVER_SCHEMA, webserverRows } from '../../scripts/lib/seed-db';
import { compactTimestamp } from '../../src/storage/manifest';
import { backupEnv, listJson, runCli, sleep, tempDir, waitFor, type CliResult } from '../helpers/cli';
import { createTestDb, createWebserverDb, pgInfo, query } from '../helpers/pg';
import { killPm2Daemon } from '../helpers/pm2';
import { startS3 } from '../helpers/s3';

const REPO = path.resolve(__dirname, '../..');
const BIN = path.join(REPO, 'node_modules/.bin');
const PM2 = path.join(REPO, 'node_modules/pm2/bin/pm2');

/** Where a server is: the global test cluster (pgInfo()) or a throwaway second one. */
interface Server {
  host: string;
  port: number;
  user: string;
  password: string;
}

async function sql<T extends pg.QueryResultRow = pg.QueryResultRow>(server: Server, database: string, text: string, params?: unknown[]): Promise<T[]> {
  const client = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database });
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

async function databases(server: Server, prefix: string): Promise<string[]> {
  const rows = await sql<{ datname: string }>(server, 'postgres', 'SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1', [prefix]);
  return rows.map((r) => r.datname);
}

async function userTables(server: Server, database: string): Promise<string[]> {
  const rows = await sql<{ t: string }>(
    server,
    database,
    `SELECT schemaname || '.' || tablename AS t FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
  );
  return rows.map((r) => r.t);
}

/** Every user table's row count and an md5 of its rows in a fixed order: equal exactly when the contents are. */
async function contents(server: Server, database: string): Promise<Record<string, string>> {
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

async function rowCount(server: Server, database: string, table: string): Promise<number> {
  return (await sql<{ n: number }>(server, database, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;
}

/**
 * Drops, when the test finishes, every database on `server` whose name starts with `db` (the live
 * one and all the restored, side and kept copies) and the given roles, then checks that none of
 * them and no restore-drill scratch database of `db` is left.
 */
function cleanUp(server: Server, db: string, roles: string[] = []): void {
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
async function secondCluster(settings?: Record<string, string>): Promise<Cluster> {
  const cluster = await startCluster(settings ? { settings } : {});
  onTestFinished(() => cluster.stop());
  return cluster;
}

/** The environment that points basement-backup at `cluster` instead of the global test cluster. */
function on(cluster: Cluster): Record<string, string> {
  return { DB_HOST: cluster.host, DB_PORT: String(cluster.port), DB_USER: cluster.user, DB_PASSWORD: cluster.password };
}

async function backup(env: Record<string, string>): Promise<string> {
  const r = await runCli(['backup'], env);
  expect(r.code, r.stderr).toBe(0);
  return (await listJson<{ id: string }>(env))[0]!.id;
}

/** The rows of the table `restore` prints: table -> [rows restored, rows at backup, verdict]. */
function printedCounts(stdout: string): Record<string, [string, string, string]> {
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

function restoredInto(r: CliResult): string {
  const m = /into "([^"]+)" in \d+\.\ds\./.exec(r.stdout);
  expect(m, r.stdout + r.stderr).not.toBeNull();
  return m![1]!;
}

const STAMP = '\\d{8}t\\d{6}z';

// ---------------------------------------------------------------------------------------------
// pm2: a throwaway PM2_HOME and a dummy app that keeps a connection to the live database

interface Pm2App {
  name: string;
  pid: number;
  pm2_env: { status: string; restart_time: number; pm_uptime: number };
}

/** A dummy application: notes each start and stop in APP_LOG and keeps a pg connection to APP_DB, reconnecting every 200 ms. */
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
  setTimeout(() => process.exit(0), 300);
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

interface Pm2 {
  /** Settings for a basement-backup run that controls this pm2 (PATH with node_modules/.bin, PM2_HOME). */
  env: Record<string, string>;
  run(...args: string[]): Promise<string>;
  app(name: string): Promise<Pm2App | undefined>;
  /** The start/stop/connected lines the app wrote, as "verb pid". */
  log(): string[];
  /** Starts the dummy app connected to `database` on `server`. */
  startApp(name: string, server: Server, database: string): Promise<Pm2App>;
  kill(): Promise<void>;
}

function pm2In(dir: string): Pm2 {
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
    async startApp(name, server, database) {
      appEnv = {
        APP_PG_MODULE: path.join(REPO, 'node_modules/pg'),
        APP_LOG: appLog,
        APP_HOST: server.host,
        APP_PORT: String(server.port),
        APP_USER: server.user,
        APP_PASSWORD: server.password,
        APP_DB: database,
      };
      await run('start', script, '--name', name);
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
async function expectStoppedAndStarted(pm2: Pm2, name: string, before: Pm2App, usersSeen: number): Promise<Pm2App> {
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
const waitsForAHoldInACopy = (db: string) => `
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
function holdFirstCopy(server: Server, prefix: string): { stop(): Promise<string | undefined> } {
  let done = false;
  const watcher = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database: 'postgres' });
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

describe('restore into a new database', () => {
  it('restores the newest backup beside the live database, prints the counts, and refuses existing names and unknown ids', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(20);
    cleanUp(main, db);
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const atFirst = await contents(main, db);
    const first = await backup(env); // an older backup: "latest" must take the newer one
    await query(db, `INSERT INTO users (email, password_hash) VALUES ('second@example.test', 'x')`);
    const atBackup = await contents(main, db);
    const id = await backup(env);
    // The application keeps writing after the backup.
    await query(db, `INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x'); DELETE FROM session`);
    const live = await contents(main, db);
    const liveOid = (await query<{ oid: number }>('postgres', 'SELECT oid FROM pg_database WHERE datname = $1', [db]))[0]!.oid;

    const r = await runCli(['restore'], env);
    expect(r.code, r.stderr).toBe(0);
    const target = restoredInto(r);
    expect(target).toMatch(new RegExp(`^${db}_restored_${STAMP}$`));
    expect(r.stdout).toContain(`Restored ${id} (`);
    expect(r.stderr).toContain(`into the new database "${target}". "${db}" is not touched.`);
    const printed = printedCounts(r.stdout);
    expect(Object.keys(printed).sort()).toEqual(Object.keys(atBackup).sort());
    expect(printed['public.users']).toEqual(['21', '21', 'ok']);
    expect(printed['public.session']).toEqual(['20', '20', 'ok']);
    expect(printed['public.payments']).toEqual(['60', '60', 'ok']);
    expect(await contents(main, target)).toEqual(atBackup);
    expect(await contents(main, db)).toEqual(live);
    expect((await query<{ oid: number }>('postgres', 'SELECT oid FROM pg_database WHERE datname = $1', [db]))[0]!.oid).toBe(liveOid);

    // --target-db, and an older backup by its id
    const named = `${db}_copy`;
    const r2 = await runCli(['restore', first, '--target-db', named], env);
    expect(r2.code, r2.stderr).toBe(0);
    expect(restoredInto(r2)).toBe(named);
    expect(r2.stdout).toContain(`Restored ${first} (`);
    expect(printedCounts(r2.stdout)['public.users']).toEqual(['20', '20', 'ok']);
    expect(await contents(main, named)).toEqual(atFirst);

    // An existing database is never written into: neither the copy nor the live one.
    await query(named, `INSERT INTO users (email, password_hash) VALUES ('marker@example.test', 'x')`);
    const copyBefore = await contents(main, named);
    const dbsBefore = await databases(main, db);
    for (const existing of [named, db]) {
      const refused = await runCli(['restore', '--target-db', existing], env);
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toContain(`database "${existing}" already exists`);
      expect(refused.stderr).toContain('fix: Choose another --target-db; restore never writes into an existing database.');
      expect(refused.stdout).toBe('');
    }
    expect(await contents(main, named)).toEqual(copyBefore);
    expect(await contents(main, db)).toEqual(live);
    expect(await databases(main, db)).toEqual(dbsBefore);

    const unknown = await runCli(['restore', `${db}_20000101T000000Z`], env);
    expect(unknown.code, unknown.stderr).toBe(30);
    expect(unknown.stderr).toContain(`no good backup "${db}_20000101T000000Z" of ${db}`);
    expect(unknown.stderr).toContain(`fix: \`basement-backup list\` shows them; the newest: ${id}, `);
    expect(await databases(main, db)).toEqual(dbsBefore);
  });

  it('plain-format backups restore too', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(15);
    cleanUp(main, db);
    const env = backupEnv(db, tempDir(), { BACKUP_FORMAT: 'plain' });
    const atBackup = await contents(main, db);
    const id = await backup(env);
    const listed = await listJson<{ format: string; file: string }>(env);
    expect(listed[0]!.format).toBe('plain');
    expect(listed[0]!.file).toMatch(/\.sql\.gz$/);
    await query(db, `DELETE FROM support_tickets; INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
    const live = await contents(main, db);

    const r = await runCli(['restore', id], env);
    expect(r.code, r.stderr).toBe(0);
    const target = restoredInto(r);
    expect(target).toMatch(new RegExp(`^${db}_restored_${STAMP}$`));
    expect(printedCounts(r.stdout)['public.users']).toEqual(['15', '15', 'ok']);
    expect(await contents(main, target)).toEqual(atBackup);
    expect(await contents(main, db)).toEqual(live);

    // and can replace the live database (the copy goes first: a restore in the same second would want its name)
    await sql(main, 'postgres', `DROP DATABASE "${target}"`);
    const replaced = await runCli(['restore', '--replace', '--yes'], env);
    expect(replaced.code, replaced.stderr).toBe(0);
    const previous = /The previous database is kept as "([^"]+)"/.exec(replaced.stdout)?.[1];
    expect(previous).toMatch(new RegExp(`^${db}_before_restore_${STAMP}$`));
    expect(await contents(main, db)).toEqual(atBackup);
    expect(await contents(main, previous!)).toEqual(live);
  });
});

describe('restore --table', () => {
  it('brings back rows deleted by accident in a side database holding only that table', async () => {
    const main = pgInfo();
    const db = await createTestDb('tables');
    cleanUp(main, db);
    await query(
      db,
      `CREATE SCHEMA audit;
       CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, profile jsonb, created_at timestamptz NOT NULL DEFAULT now());
       CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL, total numeric(10,2));
       CREATE TABLE audit.users (id int, note text);
       CREATE TABLE audit.events (id int, what text);
       INSERT INTO users SELECT g, 'u' || g || '@example.test', jsonb_build_object('n', g, 'tags', ARRAY['a', 'b']), now() - g * interval '1 hour 1 microsecond' FROM generate_series(1, 30) g;
       INSERT INTO orders SELECT g, 1 + g % 30, g * 1.25 FROM generate_series(1, 50) g;
       INSERT INTO audit.users SELECT g, 'audit ' || g FROM generate_series(1, 5) g;
       INSERT INTO audit.events SELECT g, 'event ' || g FROM generate_series(1, 12) g;`,
    );
    const env = backupEnv(db, tempDir());
    const usersAtBackup = (await contents(main, db))['public.users'];
    await backup(env);

    // The accident, while the application goes on writing.
    await query(db, `DELETE FROM users WHERE id % 3 = 0; INSERT INTO users (id, email) VALUES (100, 'new@example.test')`);
    expect(await rowCount(main, db, 'users')).toBe(21);

    const r = await runCli(['restore', '--table', 'public.users'], env);
    expect(r.code, r.stderr).toBe(0);
    const side = restoredInto(r);
    expect(side).toMatch(new RegExp(`^${db}_tables_${STAMP}$`));
    expect(printedCounts(r.stdout)).toEqual({ 'public.users': ['30', '30', 'ok'] });
    expect(await userTables(main, side)).toEqual(['public.users']);
    expect((await contents(main, side))['public.users']).toBe(usersAtBackup);

    // Copy the deleted rows back with an ordinary client: read them from the side database, insert into the live one.
    const lost = await sql<{ id: number; email: string; profile: string; created_at: string }>(
      main,
      side,
      `SELECT id, email, profile::text AS profile, created_at::text AS created_at FROM users s WHERE id % 3 = 0 ORDER BY id`,
    );
    expect(lost).toHaveLength(10);
    const client = new pg.Client({ host: main.host, port: main.port, user: main.user, password: main.password, database: db });
    await client.connect();
    try {
      for (const row of lost)
        await client.query('INSERT INTO users (id, email, profile, created_at) VALUES ($1, $2, $3, $4)', [row.id, row.email, row.profile, row.created_at]);
    } finally {
      await client.end();
    }
    expect(await rowCount(main, db, 'users')).toBe(31);
    const [recovered] = await sql<{ h: string }>(main, db, `SELECT md5(string_agg(x::text, E'\\n' ORDER BY x::text)) AS h FROM users x WHERE id <> 100`);
    const [original] = await sql<{ h: string }>(main, side, `SELECT md5(string_agg(x::text, E'\\n' ORDER BY x::text)) AS h FROM users x`);
    expect(recovered!.h).toBe(original!.h);

    // A bare name means the table in public, not audit.users.
    const bare = await runCli(['restore', '--table', 'users', '--target-db', `${db}_bare`], env);
    expect(bare.code, bare.stderr).toBe(0);
    expect(await userTables(main, `${db}_bare`)).toEqual(['public.users']);
    expect((await contents(main, `${db}_bare`))['public.users']).toBe(usersAtBackup);

    // Tables from two schemas: exactly those two (not audit.users, not public.events).
    const two = await runCli(['restore', '--table', 'audit.events', '--table', 'public.users', '--target-db', `${db}_two`], env);
    expect(two.code, two.stderr).toBe(0);
    expect(printedCounts(two.stdout)).toEqual({ 'audit.events': ['12', '12', 'ok'], 'public.users': ['30', '30', 'ok'] });
    expect(await userTables(main, `${db}_two`)).toEqual(['audit.events', 'public.users']);

    // A table the backup does not have.
    const dbsBefore = await databases(main, db);
    const missing = await runCli(['restore', '--table', 'public.nope'], env);
    expect(missing.code, missing.stderr).toBe(30);
    expect(missing.stderr).toContain('table public.nope is not in backup');
    expect(missing.stderr).toMatch(/fix: Tables in it: .*public\.users/);
    expect(await databases(main, db)).toEqual(dbsBefore);
  });
});

describe('restore --replace', () => {
  it('stops the pm2 app, makes the backup live, keeps the old database, starts the app; --drop-old drops it', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(20);
    cleanUp(main, db);
    const dir = tempDir();
    const atBackup = await contents(main, db);
    await backup(backupEnv(db, dir));
    await query(
      db,
      `DELETE FROM support_tickets WHERE id > 3; DELETE FROM session; INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`,
    );
    const afterBackup = await contents(main, db);

    const pm2 = pm2In(dir);
    const appName = `shop-${crypto.randomBytes(3).toString('hex')}`;
    try {
      const before = await pm2.startApp(appName, main, db);
      const env = backupEnv(db, dir, pm2.env);
      const r = await runCli(['restore', '--replace', '--yes', '--app', appName], env);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`pm2 app "${appName}" will be stopped for the switch and started again.`);
      expect(restoredInto(r)).toBe(db);
      const previous = /The previous database is kept as "([^"]+)"/.exec(r.stdout)?.[1];
      expect(previous).toMatch(new RegExp(`^${db}_before_restore_${STAMP}$`));
      expect(printedCounts(r.stdout)['public.session']).toEqual(['20', '20', 'ok']);

      expect(await contents(main, db)).toEqual(atBackup); // the deleted rows are back, the late row is gone
      expect(await contents(main, previous!)).toEqual(afterBackup);
      expect(await databases(main, `${db}_restored_`)).toEqual([]);
      const after = await expectStoppedAndStarted(pm2, appName, before, 20);

      // Again with --drop-old: the database replaced this time is dropped.
      await sql(main, 'postgres', `DROP DATABASE "${previous}" WITH (FORCE)`);
      await query(db, `INSERT INTO users (email, password_hash) VALUES ('again@example.test', 'x')`);
      const r2 = await runCli(['restore', '--replace', '--yes', '--drop-old', '--app', appName], env);
      expect(r2.code, r2.stderr).toBe(0);
      expect(r2.stderr).toContain(`The current "${db}" will be DROPPED.`);
      expect(r2.stdout).toContain('The previous database was dropped.');
      expect(await contents(main, db)).toEqual(atBackup);
      expect(await databases(main, db)).toEqual([db]);
      const again = await pm2.app(appName);
      expect(again?.pm2_env.status).toBe('online');
      expect(again!.pid).not.toBe(after.pid);
      expect(pm2.log().filter((l) => !l.startsWith('connected'))).toEqual([
        `start ${before.pid}`,
        `stop ${before.pid}`,
        `start ${after.pid}`,
        `stop ${after.pid}`,
        `start ${again!.pid}`,
      ]);
    } finally {
      await pm2.kill();
    }
  });

  it('without --yes and not on a terminal it refuses and changes nothing', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(10);
    cleanUp(main, db);
    const env = backupEnv(db, tempDir());
    await backup(env);
    await query(db, `DELETE FROM session`);
    const live = await contents(main, db);
    const dbsBefore = await databases(main, db);

    for (const args of [['--replace'], ['--replace', '--drop-old']]) {
      const r = await runCli(['restore', ...args], env);
      expect(r.code, r.stderr).toBe(4);
      expect(r.stderr).toContain('refusing to replace the live database without confirmation');
      expect(r.stderr).toContain('fix: Not on a terminal: add --yes to confirm.');
      expect(r.stdout).toBe('');
    }
    expect(await contents(main, db)).toEqual(live);
    expect(await databases(main, db)).toEqual(dbsBefore);
    // The lock was released: a restore right after works.
    const ok = await runCli(['restore', '--target-db', `${db}_after`], env);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('rolls back when the old database cannot be moved aside: live unchanged, app started again, restored copy kept', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(12);
    cleanUp(main, db);
    const dir = tempDir();
    const atBackup = await contents(main, db);
    await backup(backupEnv(db, dir));
    await query(db, `DELETE FROM session WHERE expire > now(); INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
    const live = await contents(main, db);

    const pm2 = pm2In(dir);
    const appName = `shop-${crypto.randomBytes(3).toString('hex')}`;
    try {
      const before = await pm2.startApp(appName, main, db);
      // Every name the old database could be moved to from now until 15 seconds after the last one is created is taken.
      const admin = new pg.Client({ host: main.host, port: main.port, user: main.user, password: main.password, database: 'postgres' });
      await admin.connect();
      const taken: string[] = [];
      try {
        for (let t = Date.now() - 1000; t < Date.now() + 15_000; t += 1000) {
          const name = `${db}_before_restore_${compactTimestamp(new Date(t)).toLowerCase()}`;
          await admin.query(`CREATE DATABASE "${name}"`);
          taken.push(name);
        }
      } finally {
        await admin.end();
      }
      const env = backupEnv(db, dir, pm2.env);
      const r = await runCli(['restore', '--replace', '--yes', '--app', appName], env);
      expect(r.code, r.stderr).toBe(32);
      expect(r.stderr).toMatch(/restore failed: the switch to the restored database failed: database ".*_before_restore_.*" already exists/);
      const restored = new RegExp(`fix: "${db}" was not changed and the app was started again; the restored copy is in "(${db}_restored_${STAMP})"`).exec(
        r.stderr,
      )?.[1];
      expect(restored, r.stderr).toBeDefined();
      expect(await contents(main, db)).toEqual(live);
      expect(await contents(main, restored!)).toEqual(atBackup);
      for (const name of taken) expect(await userTables(main, name)).toEqual([]);
      await expectStoppedAndStarted(pm2, appName, before, 13);
    } finally {
      await pm2.kill();
    }
  });

  it('rolls back when the restored copy cannot be moved in: the old database is renamed back', async () => {
    // A prepared transaction in the restored copy makes its rename fail after the live database was moved aside.
    const c2 = await secondCluster({ max_prepared_transactions: '5' });
    const db = `shop_${crypto.randomBytes(4).toString('hex')}`;
    cleanUp(c2, db);
    await c2.createDatabase(db);
    await c2.query(db, WEBSERVER_SCHEMA + webserverRows(8) + waitsForAHoldInACopy(db));
    const dir = tempDir();
    const atBackup = await contents(c2, db);
    await backup(backupEnv(db, dir, on(c2)));
    await c2.query(db, `DELETE FROM session; INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
    const live = await contents(c2, db);

    const pm2 = pm2In(dir);
    const appName = `shop-${crypto.randomBytes(3).toString('hex')}`;
    let hold: { stop(): Promise<string | undefined> } | undefined;
    try {
      const before = await pm2.startApp(appName, c2, db);
      hold = holdFirstCopy(c2, `${db}_restored_`);
      const r = await runCli(['restore', '--replace', '--yes', '--app', appName], backupEnv(db, dir, { ...on(c2), ...pm2.env }));
      const held = await hold.stop();
      expect(held, 'the prepared transaction came too late').toBeDefined();
      expect(r.code, r.stderr).toBe(32);
      expect(r.stderr).toContain(`the switch to the restored database failed: database "${held}" is being accessed by other users`);
      expect(r.stderr).toContain(`fix: "${db}" is back as it was and the app was started again; the restored copy is in "${held}".`);
      expect(await contents(c2, db)).toEqual(live);
      expect(await contents(c2, held!)).toEqual(atBackup);
      expect(await databases(c2, `${db}_before_restore_`)).toEqual([]);
      await expectStoppedAndStarted(pm2, appName, before, 9);
    } finally {
      await hold?.stop();
      await pm2.kill();
    }
  });
});

describe('restore says what is true', () => {
  /**
   * An index whose expression fails in any database but `db`, so pg_restore fails after all data
   * is loaded. With a database `<db>_hold` present it first waits (up to 30 s) until a prepared
   * transaction holds the copy, which then cannot be dropped.
   */
  const failsInACopy = (db: string) => `
    CREATE FUNCTION bb_only_here(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
    BEGIN
      IF current_database() = '${db}' THEN RETURN v; END IF;
      IF EXISTS (SELECT 1 FROM pg_database WHERE datname = '${db}_hold') THEN
        FOR i IN 1..600 LOOP
          EXIT WHEN EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE database = current_database());
          PERFORM pg_sleep(0.05);
        END LOOP;
      END IF;
      RAISE EXCEPTION 'bb test: this index cannot be built in a copy';
    END $f$;
    CREATE INDEX users_only_here ON users (bb_only_here(id));`;

  it('a failed --replace says whether the partial copy was dropped, and that the live database was not changed', async () => {
    const c2 = await secondCluster({ max_prepared_transactions: '5' });
    const db = `shop_${crypto.randomBytes(4).toString('hex')}`;
    cleanUp(c2, db);
    await c2.createDatabase(db);
    await c2.query(db, WEBSERVER_SCHEMA + webserverRows(8) + failsInACopy(db));
    const env = backupEnv(db, tempDir(), on(c2));
    await backup(env);
    await c2.query(db, `DELETE FROM session`);
    const live = await contents(c2, db);

    // pg_restore fails; the copy is dropped, and the message says so.
    const r = await runCli(['restore', '--replace', '--yes'], env);
    expect(r.code, r.stderr).toBe(32);
    const partial = new RegExp(
      `restore failed: pg_restore failed restoring into "(${db}_restored_${STAMP})": .*bb test: this index cannot be built in a copy`,
    ).exec(r.stderr)?.[1];
    expect(partial, r.stderr).toBeDefined();
    expect(r.stderr).toContain(`fix: Read pg_restore's messages above. The partly restored database "${partial}" was dropped again; "${db}" was not changed.`);
    expect(await databases(c2, db)).toEqual([db]);
    expect(await contents(c2, db)).toEqual(live);

    // A prepared transaction in the copy keeps it from being dropped: the message says so, and how to drop it.
    await c2.createDatabase(`${db}_hold`);
    const hold = holdFirstCopy(c2, `${db}_restored_`);
    try {
      const r2 = await runCli(['restore', '--replace', '--yes'], env);
      const held = await hold.stop();
      expect(held).toBeDefined();
      expect(r2.code, r2.stderr).toBe(32);
      expect(r2.stderr).toContain(`pg_restore failed restoring into "${held}"`);
      expect(r2.stderr).toMatch(
        new RegExp(
          `fix: Read pg_restore's messages above\\. The partly restored database "${held}" could NOT be dropped \\(.*prepared transactions\\): ` +
            `drop it with DROP DATABASE "${held}" WITH \\(FORCE\\); "${db}" was not changed\\.`,
        ),
      );
      expect(r2.stderr).not.toContain('removed again');
      expect(await databases(c2, `${db}_restored_`)).toEqual([held]);
      expect(await contents(c2, db)).toEqual(live);
    } finally {
      await hold.stop();
    }
  });

  it('--replace where the live database is gone says it will be created, and creates it', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(10);
    cleanUp(main, db);
    const env = backupEnv(db, tempDir());
    const atBackup = await contents(main, db);
    await backup(env);
    await sql(main, 'postgres', `DROP DATABASE "${db}" WITH (FORCE)`);

    const r = await runCli(['restore', '--replace', '--yes'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`There is no database "${db}" now: it will be created from the backup, and nothing is kept.`);
    expect(r.stderr).not.toContain('_before_restore_');
    expect(r.stdout).not.toContain('previous database');
    expect(restoredInto(r)).toBe(db);
    expect(await contents(main, db)).toEqual(atBackup);
    expect(await databases(main, db)).toEqual([db]);
  });

  it('a long database name: every database restore creates fits in 63 bytes, and is the name it reports', async () => {
    const main = pgInfo();
    const prefix = `long_${crypto.randomBytes(4).toString('hex')}_`;
    const db = `${prefix}${'ä'.repeat(24)}`; // 62 bytes
    cleanUp(main, prefix);
    await query('postgres', `CREATE DATABASE "${db}"`);
    await query(db, WEBSERVER_SCHEMA + webserverRows(6));
    const env = backupEnv(db, tempDir());
    const atBackup = await contents(main, db);
    await backup(env);
    await query(db, 'DELETE FROM session');
    const live = await contents(main, db);

    const copy = await runCli(['restore'], env);
    expect(copy.code, copy.stderr).toBe(0);
    const side = await runCli(['restore', '--table', 'users'], env);
    expect(side.code, side.stderr).toBe(0);
    const replaced = await runCli(['restore', '--replace', '--yes'], env);
    expect(replaced.code, replaced.stderr).toBe(0);
    const previous = /The previous database is kept as "([^"]+)"/.exec(replaced.stdout)?.[1];

    const created = [restoredInto(copy), restoredInto(side), previous!];
    expect(created[0]).toMatch(new RegExp(`^${prefix}ä+_restored_${STAMP}$`));
    expect(created[1]).toMatch(new RegExp(`^${prefix}ä+_tables_${STAMP}$`));
    expect(created[2]).toMatch(new RegExp(`^${prefix}ä+_before_restore_${STAMP}$`));
    for (const name of created) expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
    expect((await databases(main, prefix)).sort()).toEqual([db, ...created].sort());
    expect(await contents(main, created[0]!)).toEqual(atBackup);
    expect(await userTables(main, created[1]!)).toEqual(['public.users']);
    expect(await contents(main, created[2]!)).toEqual(live);
    expect(await contents(main, db)).toEqual(atBackup);
  });
});

describe('restore --app', () => {
  it('an app pm2 does not have is refused before anything is restored: exit 34, named, with the fix and no colour codes', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(8);
    cleanUp(main, db);
    const dir = tempDir();
    await backup(backupEnv(db, dir));
    const pm2 = pm2In(dir);
    const other = `shop-${crypto.randomBytes(3).toString('hex')}`;
    try {
      const before = await pm2.startApp(other, main, db);
      const env = backupEnv(db, dir, pm2.env);
      const dbsBefore = await databases(main, db);
      for (const args of [
        ['restore', '--replace', '--yes', '--app', 'nosuch'],
        ['restore', '--replace', '--app', 'nosuch', '--dry-run'],
      ]) {
        const started = Date.now();
        const r = await runCli(args, env);
        expect(r.code, r.stderr).toBe(34);
        expect(r.stderr).toContain(`basement-backup: cannot stop or start the app: pm2 has no app "nosuch" (its apps: ${other}); nothing was restored`);
        expect(r.stderr).toContain('fix: Give the name `pm2 list` shows with --app. pm2 keeps a list per user: run this as the user that owns');
        expect(r.stderr).not.toContain('\x1b');
        expect(r.stderr).not.toContain('will be stopped'); // found before the plan is shown
        expect(r.stdout).toBe('');
        expect(Date.now() - started).toBeLessThan(20_000);
      }
      expect(await databases(main, db)).toEqual(dbsBefore);
      const after = await pm2.app(other);
      expect(after?.pid).toBe(before.pid);
      expect(after?.pm2_env.status).toBe('online');

      // pm2 is not where PM2_BIN points, or not on the PATH: how to install it
      const gone = await runCli(['restore', '--replace', '--yes', '--app', other], { ...env, PM2_BIN: path.join(dir, 'nowhere', 'pm2') });
      expect(gone.code, gone.stderr).toBe(34);
      expect(gone.stderr).toContain(`pm2 jlist failed: ${path.join(dir, 'nowhere', 'pm2')} was not found`);
      expect(gone.stderr).toContain('npm install -g pm2');
      const noPath = await runCli(['restore', '--replace', '--yes', '--app', other], { ...env, PATH: path.join(dir, 'nowhere') });
      expect(noPath.code, noPath.stderr).toBe(34);
      expect(noPath.stderr).toContain('pm2 jlist failed: pm2 was not found on the PATH');
      expect(noPath.stderr).toContain('fix: Install pm2 for the user that runs the app (`npm install -g pm2`)');
      expect(await databases(main, db)).toEqual(dbsBefore);
    } finally {
      await pm2.kill();
    }
  });
});

describe('restore --dry-run', () => {
  /** Runs a printed script the way the README says: `bash -euo pipefail FILE`, with nothing of this process's environment but PATH and HOME. */
  async function runScript(script: string, cwd: string): Promise<{ code: number | null; output: string }> {
    const file = path.join(cwd, 'restore.sh');
    fs.writeFileSync(file, script, { mode: 0o600 });
    return new Promise((resolve, reject) => {
      const child = spawn('bash', ['-euo', 'pipefail', file], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root' } });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, output });
      });
    });
  }

  /** The settings as the README has them: the database in the app's env file, the password only there. */
  function envWithFile(dir: string, server: Server, db: string, extra: Record<string, string> = {}): Record<string, string> {
    const file = path.join(dir, 'server-ui.env');
    const lines = { DB_HOST: server.host, DB_PORT: String(server.port), DB_USER: server.user, DB_PASSWORD: server.password, DB_NAME: db, ...extra };
    fs.writeFileSync(
      file,
      Object.entries(lines)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
      { mode: 0o600 },
    );
    return backupEnv(db, dir, {
      DB_HOST: undefined,
      DB_PORT: undefined,
      DB_USER: undefined,
      DB_PASSWORD: undefined,
      DB_NAME: undefined,
      BACKUP_ENV_FILE: file,
    });
  }

  it('prints the plan and the exact commands for this server; run by bash, they restore the backup', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(12);
    cleanUp(main, db);
    const dir = tempDir();
    const env = envWithFile(dir, main, db);
    const atBackup = await contents(main, db);
    const id = await backup(env);
    const [m] = await listJson<{ sha256: string; file: string }>(env);
    await query(db, `DELETE FROM session; INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
    const live = await contents(main, db);
    const dbsBefore = await databases(main, db);

    const r = await runCli(['restore', '--dry-run'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^# basement-backup restore --dry-run: nothing was changed\. The plan:\n# {3}Restore backup /);
    const target = new RegExp(`into the new database "(${db}_restored_${STAMP})"\\. "${db}" is not touched\\.`).exec(r.stdout)?.[1];
    expect(target, r.stdout).toBeDefined();
    expect(r.stdout).toContain(`Restore backup ${id} (`);
    expect(r.stdout).toContain(`-h ${main.host} -p ${main.port} -U ${main.user}`);
    expect(r.stdout).toContain(`echo '${m!.sha256}  ${m!.file}' | sha256sum -c -`);
    expect(r.stdout).toContain(`DB_PASSWORD from ${path.join(dir, 'server-ui.env')}`);
    expect(r.stdout).not.toContain(main.password);
    expect(r.stdout).not.toContain('localhost');
    // nothing was changed, and no lock is left behind
    expect(await databases(main, db)).toEqual(dbsBefore);
    expect(await contents(main, db)).toEqual(live);

    const ran = await runScript(r.stdout, dir);
    expect(ran.code, ran.output).toBe(0);
    expect(ran.output).toContain(`${m!.file}: OK`);
    expect(await contents(main, target!)).toEqual(atBackup);
    expect(await contents(main, db)).toEqual(live);

    // --table: the commands restore just that table, as restore --table does
    const t = await runCli(['restore', '--table', 'users', '--dry-run'], env);
    expect(t.code, t.stderr).toBe(0);
    const side = new RegExp(`into the new database "(${db}_tables_${STAMP})"`).exec(t.stdout)?.[1];
    const ranTables = await runScript(t.stdout, dir);
    expect(ranTables.code, ranTables.output).toBe(0);
    expect(await userTables(main, side!)).toEqual(['public.users']);
    expect((await contents(main, side!))['public.users']).toBe(atBackup['public.users']);

    // A damaged file fails the printed check, and nothing after it runs.
    const bytes = fs.readFileSync(m!.file);
    const middle = Math.floor(bytes.length / 2);
    bytes.writeUInt8(bytes.readUInt8(middle) ^ 0xff, middle);
    fs.writeFileSync(m!.file, bytes);
    const again = await runCli(['restore', '--dry-run', '--target-db', `${db}_third`], env);
    expect(again.code, again.stderr).toBe(0);
    const failed = await runScript(again.stdout, dir);
    expect(failed.code).not.toBe(0);
    expect(failed.output).toContain(`${m!.file}: FAILED`);
    expect(await databases(main, `${db}_third`)).toEqual([]);
  });

  it('plain format with --replace: the printed switch makes the backup live and keeps the old database', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(9);
    cleanUp(main, db);
    const dir = tempDir();
    const env = envWithFile(dir, main, db, { BACKUP_FORMAT: 'plain' });
    const atBackup = await contents(main, db);
    await backup(env);
    await query(db, `DELETE FROM support_tickets`);
    const live = await contents(main, db);

    const r = await runCli(['restore', '--replace', '--dry-run'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`make it the live database "${db}"`);
    const previous = new RegExp(`The current "${db}" will be kept as "(${db}_before_restore_${STAMP})"\\.`).exec(r.stdout)?.[1];
    expect(previous, r.stdout).toBeDefined();
    expect(r.stdout).toMatch(/gunzip -c \S+\.sql\.gz \| \S*psql -X -q -v ON_ERROR_STOP=1 /);
    expect(await databases(main, db)).toEqual([db]);

    const ran = await runScript(r.stdout, dir);
    expect(ran.code, ran.output).toBe(0);
    expect(await contents(main, db)).toEqual(atBackup);
    expect(await contents(main, previous!)).toEqual(live);
  });

  it.skipIf(spawnSync('aws', ['--version']).status !== 0)('from a bucket: the commands fetch the file with aws-cli, check and restore it', async () => {
    const s3 = await startS3();
    onTestFinished(() => s3.close());
    const main = pgInfo();
    const db = await createWebserverDb(7);
    cleanUp(main, db);
    const dir = tempDir();
    const env = envWithFile(dir, main, db, { ...s3.env('basement/'), BACKUP_LOCAL: 'false' });
    const atBackup = await contents(main, db);
    await backup(env);

    const r = await runCli(['restore', '--dry-run'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`aws s3 cp --only-show-errors --endpoint-url ${s3.endpoint} --region us-east-1 s3://${s3.bucket}/basement/${db}_`);
    expect(r.stdout).toContain('S3_SECRET_ACCESS_KEY from');
    expect(r.stdout).not.toContain('S3RVER');
    const target = new RegExp(`into the new database "(${db}_restored_${STAMP})"`).exec(r.stdout)?.[1];
    const work = tempDir();
    const ran = await runScript(r.stdout, work);
    expect(ran.code, ran.output).toBe(0);
    expect(ran.output).toMatch(/\.dump: OK/);
    expect(await contents(main, target!)).toEqual(atBackup);
  });
});

describe('restore and roles', () => {
  it('fails cleanly when a role is missing, and --with-roles on a fresh server recreates it', async () => {
    const main = pgInfo();
    const role = `bb_owner_${crypto.randomBytes(4).toString('hex')}`;
    const db = await createTestDb('roles');
    cleanUp(main, db, [role]);
    await query(
      db,
      `CREATE ROLE ${role} NOLOGIN;
       CREATE TABLE things (id int PRIMARY KEY, name text);
       INSERT INTO things SELECT g, 'thing ' || g FROM generate_series(1, 25) g;
       ALTER TABLE things OWNER TO ${role};
       CREATE TABLE plain (id int);
       INSERT INTO plain VALUES (1), (2);`,
    );
    const atBackup = await contents(main, db);
    const dir = tempDir();
    await backup(backupEnv(db, dir));

    // A fresh server without the role: pg_restore fails on the owner, nothing is left behind.
    const c2 = await secondCluster();
    const fresh = backupEnv(db, dir, on(c2));
    const systemDbs = await databases(c2, '');
    const r = await runCli(['restore'], fresh);
    expect(r.code, r.stderr).toBe(32);
    expect(r.stderr).toMatch(new RegExp(`restore failed: pg_restore failed restoring into "${db}_restored_${STAMP}": .*role "${role}" does not exist`));
    expect(r.stderr).toContain('fix: The dump refers to roles this server lacks: add --with-roles to recreate them first.');
    expect(await databases(c2, '')).toEqual(systemDbs);

    // The same on this server once the role is gone.
    await query(db, `REASSIGN OWNED BY ${role} TO ${main.user}; DROP OWNED BY ${role}`);
    await query('postgres', `DROP ROLE ${role}`);
    const dbsBefore = await databases(main, db);
    const r2 = await runCli(['restore'], backupEnv(db, dir));
    expect(r2.code, r2.stderr).toBe(32);
    expect(r2.stderr).toContain(`role "${role}" does not exist`);
    expect(r2.stderr).toContain('add --with-roles');
    expect(await databases(main, db)).toEqual(dbsBefore);

    // --with-roles onto the fresh server.
    const r3 = await runCli(['restore', '--with-roles'], fresh);
    expect(r3.code, r3.stderr).toBe(0);
    expect(r3.stdout).toMatch(new RegExp(`Recreated roles: (.*, )?${role}(,|\\.)`));
    expect(r3.stdout).not.toMatch(/Recreated roles: (.*, )?postgres(,|\.)/);
    const target = restoredInto(r3);
    expect(await c2.query('postgres', 'SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [role])).toEqual([{ rolcanlogin: false }]);
    expect(await c2.query(target, `SELECT tableowner FROM pg_tables WHERE tablename = 'things'`)).toEqual([{ tableowner: role }]);
    expect(await contents(c2, target)).toEqual(atBackup);
    // The existing superuser kept its password: this connection still logs in with the old one.
    expect(await c2.query('postgres', 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
  });
});

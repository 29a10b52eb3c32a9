import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { startCluster, type Cluster } from '../../scripts/lib/cluster';
import { backupEnv, listJson, runCli, smtpEnv, spawnCli, tempDir, waitFor, type CliResult } from '../helpers/cli';
import { createTestDb, dropDb, pgInfo, query, tableCounts } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';
import { isScratchOf, scratchName } from '../../src/restore/scratch';
import type { Verification } from '../../src/storage/manifest';

/**
 * Every database of this file is named vdrill_<hex>, so every scratch database a drill of this
 * file can create starts with this prefix (other test files may run drills on the shared cluster
 * at the same time, so the check after each test does not claim theirs).
 */
const DB_PREFIX = 'vdrill';
const SCRATCH_PREFIX = `bb_verify_${DB_PREFIX}_`;
const YEARLY = '0 0 1 1 *';

interface Listed {
  id: string;
  file: string;
  database: string;
  digest_mode: 'full' | 'counts' | 'off';
  table_digests: Record<string, { rows: number; digest?: string }>;
  tables: string[];
  created_at: string;
  finished_at: string;
  state?: string;
  verification?: Verification;
}

/** Second clusters started by the running test; checked for scratch databases after it. */
const extraClusters = new Set<Cluster>();

async function scratchDatabases(run: (sql: string, params: unknown[]) => Promise<{ datname: string }[]>, prefix: string): Promise<string[]> {
  return (await run('SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1', [prefix])).map((r) => r.datname);
}

afterEach(async () => {
  // No drill of this file leaves a scratch database behind, on the primary or on any other cluster.
  expect(await scratchDatabases((sql, p) => query<{ datname: string }>('postgres', sql, p), SCRATCH_PREFIX)).toEqual([]);
  for (const c of extraClusters) expect(await scratchDatabases((sql, p) => c.query<{ datname: string }>('postgres', sql, p), 'bb_verify_')).toEqual([]);
});

async function drillDb(sql: string): Promise<string> {
  const db = await createTestDb(DB_PREFIX);
  await query(db, sql);
  return db;
}

async function cli(args: string[], env: Record<string, string>, expectedCode = 0): Promise<CliResult> {
  const r = await runCli(args, env);
  expect(r.code, `basement-backup ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(expectedCode);
  return r;
}

/** Takes a backup and returns its listing. */
async function backup(env: Record<string, string>): Promise<Listed> {
  const before = new Set((await listJson<Listed>(env)).map((b) => b.id));
  await cli(['backup'], env);
  const added = (await listJson<Listed>(env)).filter((b) => !before.has(b.id));
  expect(added).toHaveLength(1);
  return added[0]!;
}

async function verifyJson(env: Record<string, string>, expectedCode: number, id = 'latest'): Promise<Verification & { id: string }> {
  const r = await cli(['verify', id, '--json'], env, expectedCode);
  return JSON.parse(r.stdout) as Verification & { id: string };
}

function manifestPath(dir: string, id: string): string {
  return path.join(dir, 'backups', `${id}.manifest.json`);
}

/** Edits a stored manifest by hand, as an attacker or a bad disk would. */
function editManifest(dir: string, id: string, edit: (m: Listed) => void): void {
  const file = manifestPath(dir, id);
  const m = JSON.parse(fs.readFileSync(file, 'utf8')) as Listed;
  edit(m);
  fs.writeFileSync(file, JSON.stringify(m, null, 2) + '\n');
}

/** Rows of `sql` in `database` of the primary cluster. */
const q = <T extends pg.QueryResultRow = Record<string, unknown>>(database: string, sql: string, params?: unknown[]) => query<T>(database, sql, params);

/** Row count and a content hash per user table, to compare two databases. */
async function contents(database: string): Promise<Record<string, { n: string; md5: string | null }>> {
  const tables = await q<{ s: string; t: string }>(
    database,
    `SELECT schemaname AS s, tablename AS t FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`,
  );
  const out: Record<string, { n: string; md5: string | null }> = {};
  for (const { s, t } of tables) {
    const rel = `"${s.replace(/"/g, '""')}"."${t.replace(/"/g, '""')}"`;
    const [row] = await q<{ n: string; md5: string | null }>(
      database,
      `SELECT count(*)::text AS n, md5(string_agg(x::text, E'\\n' ORDER BY x::text)) AS md5 FROM ${rel} x`,
    );
    out[`${s}.${t}`] = row!;
  }
  return out;
}

/** Polls `pg_database` of a server while a drill runs and collects every scratch database seen. */
function watchScratch(conn: pg.ClientConfig, prefix: string): { seen: Set<string>; stop(): Promise<void> } {
  const seen = new Set<string>();
  let stopped = false;
  const client = new pg.Client(conn);
  const loop = (async () => {
    await client.connect();
    while (!stopped) {
      for (const r of (await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [prefix])).rows) {
        seen.add(r.datname);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await client.end();
  })();
  return {
    seen,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

function primaryConn(database = 'postgres'): pg.ClientConfig {
  const info = pgInfo();
  return { host: info.host, port: info.port, user: info.user, password: info.password, database };
}

/** Two small tables, one with a name that needs quoting everywhere. */
const SMALL_SCHEMA = `
  CREATE TABLE items (id int PRIMARY KEY, note text, price numeric(10, 2));
  INSERT INTO items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 400) g;
  CREATE SCHEMA "Other Schema";
  CREATE TABLE "Other Schema"."Weird Table" ("Key" int PRIMARY KEY, "Value" text);
  INSERT INTO "Other Schema"."Weird Table" SELECT g, 'w' || g FROM generate_series(1, 25) g;
`;

const RICH_SCHEMA = String.raw`
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ecstatic');
  CREATE SEQUENCE invoice_no START 1000 INCREMENT 7;
  CREATE SEQUENCE never_used;
  CREATE SEQUENCE called_once;
  SELECT nextval('called_once');
  CREATE TABLE customers (
    id serial PRIMARY KEY,
    name text NOT NULL,
    email text UNIQUE,
    mood mood NOT NULL DEFAULT 'ok',
    tags text[] NOT NULL DEFAULT '{}',
    scores int[][],
    profile jsonb,
    avatar bytea,
    balance numeric(20, 6),
    ratio numeric,
    weight double precision,
    created_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE INDEX customers_profile ON customers USING gin (profile jsonb_path_ops);
  CREATE INDEX customers_lower_name ON customers (lower(name));
  CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    invoice bigint NOT NULL DEFAULT nextval('invoice_no') UNIQUE,
    amount numeric(12, 2) NOT NULL CHECK (amount >= 0),
    placed_at timestamptz NOT NULL,
    note text
  );
  CREATE INDEX orders_customer_placed ON orders (customer_id, placed_at DESC);
  CREATE SCHEMA "Other Schema";
  CREATE TABLE "Other Schema"."Weird Table" (
    "Key" int PRIMARY KEY,
    "Value ""quoted""" text,
    doc oid,
    customer_id int REFERENCES customers (id)
  );
  CREATE TABLE empty_table (id int PRIMARY KEY, v text);
  CREATE VIEW customer_totals AS
    SELECT c.id, c.name, c.mood, count(o.id) AS orders, coalesce(sum(o.amount), 0) AS total
      FROM customers c LEFT JOIN orders o ON o.customer_id = c.id
     GROUP BY c.id, c.name, c.mood;
  CREATE FUNCTION order_total(p_customer int) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT coalesce(sum(amount), 0) FROM orders WHERE customer_id = p_customer $$;

  INSERT INTO customers (name, email, mood, tags, scores, profile, avatar, balance, ratio, weight, created_at)
  SELECT 'customer ' || g || CASE WHEN g % 10 = 0 THEN E'\nwith a newline,\ta tab and a \\ backslash ü' ELSE '' END,
         CASE WHEN g % 7 = 0 THEN NULL ELSE 'c' || g || '@example.test' END,
         (enum_range(NULL::mood))[1 + g % 4],
         ARRAY['tag' || (g % 3), 'tag "' || (g % 5) || '"'],
         ARRAY[[g, g + 1], [g * 2, NULL]],
         jsonb_build_object('n', g, 'nested', jsonb_build_object('list', jsonb_build_array(g, 'x' || g, g % 2 = 0)), 'text', E'line\nbreak ü'),
         CASE WHEN g % 9 = 0 THEN NULL ELSE decode(lpad(to_hex(g * 2654435761 % 4294967296), 8, '0') || '000a0d5c', 'hex') END,
         round(g * 1234.567891, 6),
         CASE WHEN g % 11 = 0 THEN 'NaN'::numeric ELSE g::numeric / 7 END,
         CASE WHEN g % 13 = 0 THEN '-Infinity'::float8 ELSE g * 0.1::float8 END,
         CASE WHEN g = 300 THEN 'infinity'::timestamptz ELSE timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour 7 minutes 3.5 seconds' END
    FROM generate_series(1, 300) g;
  INSERT INTO orders (customer_id, amount, placed_at, note)
  SELECT 1 + g % 300, (g % 500) + 0.99, timestamptz '2024-06-01 12:00:00+02' + g * interval '13 minutes', CASE WHEN g % 4 = 0 THEN NULL ELSE 'order ' || g END
    FROM generate_series(1, 1000) g;
  DELETE FROM orders WHERE id % 10 = 3;
  INSERT INTO "Other Schema"."Weird Table" VALUES
    (1, 'small', lo_from_bytea(0, '\x00010a0d5c7f80ff'::bytea), 1),
    (2, 'big', (SELECT lo_from_bytea(0, decode(string_agg(md5(g::text), '' ORDER BY g), 'hex')) FROM generate_series(1, 5000) g), 2),
    (3, NULL, NULL, NULL);
  SELECT setval('invoice_no', (SELECT max(invoice) FROM orders) + 70);
`;

describe('verify: restore drills', () => {
  it('a rich schema round-trips: backup, verify passes with the right counts, restore reproduces everything', async () => {
    const db = await drillDb(RICH_SCHEMA);
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const b = await backup(env);
    expect(b.digest_mode).toBe('full');
    expect(Object.keys(b.table_digests).sort()).toEqual([
      '(large objects)',
      'Other Schema.Weird Table',
      'public.customers',
      'public.empty_table',
      'public.orders',
    ]);
    // the two large objects are recorded beside the tables: count and content digest
    expect(b.table_digests['(large objects)']).toEqual({ rows: 2, digest: expect.stringMatching(/^[0-9a-f]{16}$/) as unknown });
    expect(b.table_digests['Other Schema.Weird Table']).toEqual({ rows: 3, digest: expect.stringMatching(/^[0-9a-f]{16}$/) as unknown });
    expect(b.table_digests['public.empty_table']).toEqual({ rows: 0, digest: '0000000000000000' });

    const v = await verifyJson(env, 0);
    expect(v).toMatchObject({ id: b.id, ok: true, checksum_ok: true, tables_checked: 5, rows_checked: 300 + 900 + 3 + 0 + 2, mismatches: [], error: null });
    // the rows of every table, plus the two large objects
    expect(v.rows_checked).toBe(Object.values(await tableCounts(db)).reduce((s, n) => s + n, 0) + 2);
    expect(v.restore_ms).toBeGreaterThan(0);
    expect(v.server).toBe(`${pgInfo().host}:${pgInfo().port}`);
    const listed = (await listJson<Listed>(env))[0]!;
    expect(listed.verification).toEqual({ ...v, id: undefined });

    // A plain `restore` into a new database reproduces the data and every other object.
    const target = `${DB_PREFIX}_restored_${db.slice(DB_PREFIX.length + 1)}`;
    onTestFinished(() => dropDb(target));
    const r = await cli(['restore', 'latest', '--target-db', target], env);
    expect(r.stdout).not.toContain('DIFFERENT');
    expect(r.stdout).toContain(`into "${target}"`);

    expect(await contents(target)).toEqual(await contents(db));
    const same = async (sql: string) => expect(await q(target, sql), sql).toEqual(await q(db, sql));
    // sequences, with their current values (and whether they were ever called)
    await same(`SELECT schemaname, sequencename, start_value::text, increment_by::text, last_value::text FROM pg_sequences ORDER BY 1, 2`);
    expect((await q<{ n: number }>(db, `SELECT count(*)::int AS n FROM pg_sequences`))[0]!.n).toBe(5);
    const seq = `SELECT (SELECT last_value::text FROM invoice_no) AS invoice, (SELECT is_called FROM never_used) AS never_called,
                        (SELECT last_value::text FROM called_once) AS once, (SELECT last_value::text FROM orders_id_seq) AS identity`;
    await same(seq);
    expect((await q(target, seq))[0]).toEqual({ invoice: String(1000 + 7 * 999 + 70), never_called: false, once: '1', identity: '1000' });
    // the next values handed out continue where the source left off
    await same(`SELECT nextval('invoice_no')::text AS a, nextval('customers_id_seq')::text AS b`);
    // large objects, byte for byte
    await same(`SELECT oid::text, md5(lo_get(oid)) AS md5, length(lo_get(oid)) AS len FROM pg_largeobject_metadata ORDER BY oid`);
    expect(await q(target, `SELECT "Key", encode(lo_get(doc), 'hex') AS hex FROM "Other Schema"."Weird Table" WHERE "Key" = 1`)).toEqual([
      { Key: 1, hex: '00010a0d5c7f80ff' },
    ]);
    expect(await q(target, `SELECT length(lo_get(doc)) AS len FROM "Other Schema"."Weird Table" WHERE "Key" = 2`)).toEqual([{ len: 80_000 }]);
    // indexes, constraints (foreign keys included), the enum, the view and the function
    await same(`SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog') ORDER BY 1, 2, 3`);
    await same(`SELECT conrelid::regclass::text AS rel, conname, contype, pg_get_constraintdef(oid) AS def FROM pg_constraint
                 WHERE connamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('public', 'Other Schema')) ORDER BY 1, 2`);
    expect((await q<{ n: number }>(target, `SELECT count(*)::int AS n FROM pg_constraint WHERE contype = 'f'`))[0]!.n).toBe(2);
    expect((await q<{ n: number }>(target, `SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = 'public'`))[0]!.n).toBe(8);
    await same(`SELECT enum_range(NULL::mood)::text AS r`);
    await same(`SELECT * FROM customer_totals ORDER BY id`);
    await same(`SELECT pg_get_viewdef('customer_totals'::regclass) AS v, pg_get_functiondef('order_total(int)'::regprocedure) AS f`);
    await same(`SELECT order_total(5)::text AS t, order_total(299)::text AS u`);
    expect(Number((await q<{ t: string }>(target, `SELECT order_total(5)::text AS t`))[0]!.t)).toBeGreaterThan(0);
    // and the foreign key is enforced in the copy
    await expect(q(target, `INSERT INTO orders (customer_id, amount, placed_at) VALUES (999999, 1, now())`)).rejects.toMatchObject({ code: '23503' });
  });

  it('a bit flipped in the stored file fails `verify --checksums-only` and `verify` (exit 31), is recorded and mailed', async () => {
    const sink = await smtpSink();
    const db = await drillDb(SMALL_SCHEMA);
    const dir = tempDir();
    const env = backupEnv(db, dir, smtpEnv(sink.port));
    const older = await backup(env);
    const newer = await backup(env);
    expect(newer.id).not.toBe(older.id);

    const bytes = fs.readFileSync(newer.file);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0x10;
    fs.writeFileSync(newer.file, bytes);

    const sums = await cli(['verify', '--checksums-only'], env, 31);
    expect(sums.stdout).toMatch(new RegExp(`${newer.id}\\s*│\\s*BAD\\s*│.*does not match its manifest`));
    expect(sums.stdout).toMatch(new RegExp(`${older.id}\\s*│\\s*ok`));
    const sumsJson = JSON.parse((await cli(['verify', '--checksums-only', '--json'], env, 31)).stdout) as { id: string; ok: boolean }[];
    expect(sumsJson.map((s) => [s.id, s.ok]).sort()).toEqual(
      [
        [older.id, true],
        [newer.id, false],
      ].sort(),
    );
    let mails = await sink.waitFor(2);
    for (const m of mails) {
      expect(m.subject).toContain('fail their checksum');
      expect(m.text).toContain(newer.id);
      expect(m.text).not.toContain(`${older.id}:`);
    }

    // checksums-only recorded it as damaged: `latest` is now the older one, so drill the newer by id
    const v = await verifyJson(env, 31, newer.id);
    expect(v).toMatchObject({ id: newer.id, ok: false, checksum_ok: false, restore_ms: null, tables_checked: 0 });
    expect(v.error).toContain(path.basename(newer.file));
    mails = await sink.waitFor(3);
    expect(mails[2]!.subject).toContain(`Restore drill of backup ${newer.id} (${db}) failed`);
    expect(mails[2]!.text).toMatch(/does not match its manifest/);

    const text = await cli(['verify', newer.id], env, 31);
    expect(text.stdout).toMatch(/checksum\s*│\s*BAD/);
    expect(text.stdout).toContain(newer.id);

    const listed = await listJson<Listed>(env);
    expect(listed.find((b) => b.id === newer.id)!.verification).toMatchObject({ ok: false, checksum_ok: false });
    expect(listed.find((b) => b.id === older.id)!.verification).toBeUndefined();
    // the older, intact backup still passes
    expect(await verifyJson(env, 0, older.id)).toMatchObject({ ok: true, checksum_ok: true, tables_checked: 2, rows_checked: 425 });
  });

  it('a digest or a row count edited in the manifest fails `verify` (exit 33) naming the table, in the output and the mail', async () => {
    const sink = await smtpSink();
    const db = await drillDb(SMALL_SCHEMA);
    const dir = tempDir();
    const env = backupEnv(db, dir, smtpEnv(sink.port));
    const b = await backup(env);
    const original = fs.readFileSync(manifestPath(dir, b.id), 'utf8');

    editManifest(dir, b.id, (m) => {
      const d = m.table_digests['public.items']!;
      d.digest = d.digest!.slice(0, -1) + (d.digest!.endsWith('0') ? '1' : '0');
    });
    const r = await cli(['verify'], env, 33);
    expect(r.stdout).toMatch(/result\s*│\s*FAILED: 1 table\(s\) differ after restore, first public\.items: content differs/);
    expect(r.stdout).toMatch(/public\.items\s*│\s*content differs/);
    expect(r.stdout).not.toContain('Weird Table');
    const [mail] = await sink.waitFor(1);
    expect(mail!.subject).toContain(`Restore drill of backup ${b.id} (${db}) failed`);
    expect(mail!.text).toContain('public.items: content differs');
    expect((await listJson<Listed>(env))[0]!.verification).toMatchObject({
      ok: false,
      checksum_ok: true,
      mismatches: [{ table: 'public.items', problem: expect.stringMatching(/^content differs/) as unknown }],
    });

    fs.writeFileSync(manifestPath(dir, b.id), original);
    editManifest(dir, b.id, (m) => (m.table_digests['Other Schema.Weird Table']!.rows += 1));
    // the failed drill marked it damaged, so it is no longer `latest`: name it
    await cli(['verify'], env, 30);
    const v = await verifyJson(env, 33, b.id);
    expect(v.ok).toBe(false);
    expect(v.checksum_ok).toBe(true);
    expect(v.mismatches).toEqual([{ table: 'Other Schema.Weird Table', problem: '25 rows restored, 26 at backup time' }]);
    const mails = await sink.waitFor(2);
    expect(mails[1]!.text).toContain('Other Schema.Weird Table: 25 rows restored, 26 at backup time');

    // with the manifest as written, the same backup passes, and that clears the mark
    fs.writeFileSync(manifestPath(dir, b.id), original);
    expect(await verifyJson(env, 0, b.id)).toMatchObject({ ok: true, mismatches: [] });
    expect((await listJson<Listed>(env))[0]).toMatchObject({ id: b.id, state: 'ok' });
    expect(sink.mails).toHaveLength(2);
  });

  it('rows inserted, updated and deleted throughout a backup cause no false mismatch', async () => {
    const db = await drillDb(`
      CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL, payload text NOT NULL, at timestamptz NOT NULL DEFAULT now());
      INSERT INTO events (kind, payload) SELECT 'k' || (g % 17), md5(g::text) || md5((g * 3)::text) FROM generate_series(1, 300000) g;
      CREATE TABLE audit (id bigserial PRIMARY KEY, note text NOT NULL);
    `);
    const dir = tempDir();
    const env = backupEnv(db, dir);

    const writer = new pg.Client(primaryConn(db));
    await writer.connect();
    const commits: number[] = [];
    let stop = false;
    const writing = (async () => {
      let i = 0;
      while (!stop) {
        i++;
        const victim = 1 + ((i * 7919) % 300000);
        const changed = 1 + ((i * 104729) % 300000);
        // insert 3, delete at most 1: the table grows with every transaction
        await writer.query(`BEGIN;
          INSERT INTO events (kind, payload) SELECT 'live', md5(random()::text) FROM generate_series(1, 3);
          DELETE FROM events WHERE id = ${victim};
          UPDATE events SET payload = 'changed ' || ${i} WHERE id = ${changed};
          INSERT INTO audit (note) VALUES ('tx ${i}');
          COMMIT`);
        commits.push(Date.now());
      }
    })();
    const stopWriting = async () => {
      stop = true;
      await writing;
      await writer.end();
    };
    onTestFinished(() => (stop ? undefined : stopWriting()));

    await waitFor(() => commits.length >= 20, 10_000, 'the writer to get going');
    const before = Number((await q<{ n: string }>(db, 'SELECT count(*)::text AS n FROM events'))[0]!.n);
    const b = await backup(env);
    await stopWriting();
    const after = Number((await q<{ n: string }>(db, 'SELECT count(*)::text AS n FROM events'))[0]!.n);

    // The dump's snapshot fell in the middle of the writes: some before it, some during the backup.
    const during = commits.filter((t) => t > Date.parse(b.created_at) && t < Date.parse(b.finished_at)).length;
    expect(during, `commits while the backup ran (${b.created_at} .. ${b.finished_at})`).toBeGreaterThan(20);
    const recorded = b.table_digests['public.events']!.rows;
    expect(recorded).toBeGreaterThan(before);
    expect(recorded).toBeLessThan(after);
    expect(b.table_digests['public.audit']!.rows).toBeGreaterThan(0);

    const v = await verifyJson(env, 0);
    expect(v).toMatchObject({ ok: true, checksum_ok: true, mismatches: [], tables_checked: 2 });
    expect(v.rows_checked).toBe(recorded + b.table_digests['public.audit']!.rows);
  });

  it('VERIFY_DB_* send the drill to another server: the scratch database never appears on the primary', async () => {
    const other = await startCluster();
    extraClusters.add(other);
    onTestFinished(() => {
      extraClusters.delete(other);
      other.stop();
    });
    const db = await drillDb(
      SMALL_SCHEMA + `CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g; ALTER TABLE bulk ADD PRIMARY KEY (id);`,
    );
    const dir = tempDir();
    const env = backupEnv(db, dir, {
      VERIFY_DB_HOST: other.host,
      VERIFY_DB_PORT: String(other.port),
      VERIFY_DB_USER: other.user,
      VERIFY_DB_PASSWORD: other.password,
    });
    const b = await backup(env);

    const onPrimary = watchScratch(primaryConn(), `bb_verify_${db}_`);
    const onOther = watchScratch({ host: other.host, port: other.port, user: other.user, password: other.password, database: 'postgres' }, 'bb_verify_');
    let v: Verification & { id: string };
    try {
      v = await verifyJson(env, 0);
    } finally {
      await onPrimary.stop();
      await onOther.stop();
    }
    expect(v).toMatchObject({ id: b.id, ok: true, tables_checked: 3, rows_checked: 400 + 25 + 50000, server: `${other.host}:${other.port}` });
    expect([...onOther.seen]).toEqual([expect.stringMatching(new RegExp(`^bb_verify_${db}_\\d{8}t\\d{6}z$`)) as unknown]);
    expect([...onPrimary.seen]).toEqual([]);
    expect((await listJson<Listed>(env))[0]!.verification!.server).toBe(`${other.host}:${other.port}`);
    // the source database was not copied to the other server, only restored into the scratch one, now gone
    expect(await scratchDatabases((sql, p) => other.query<{ datname: string }>('postgres', sql, p), 'bb_verify_')).toEqual([]);
    expect(await other.query('postgres', `SELECT datname FROM pg_database WHERE datname = $1`, [db])).toEqual([]);
  });

  it('stale scratch databases of interrupted drills are dropped by the next verify and at daemon start, others are left alone', async () => {
    const db = await drillDb(SMALL_SCHEMA);
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY, BACKUP_CATCH_UP: 'false', VERIFY_SCHEDULE: YEARLY });
    await backup(env);
    const stale = `bb_verify_${db}_20200101t000000z`;
    // a scratch database of another database whose name starts with this one's
    const neighbour = `bb_verify_${db}_staging_20200101t000000z`;
    const mine = () => scratchDatabases((sql, p) => query<{ datname: string }>('postgres', sql, p), `bb_verify_${db}_`);
    try {
      await q('postgres', `CREATE DATABASE "${stale}"`);
      await q('postgres', `CREATE DATABASE "${neighbour}"`);
      await q(stale, `CREATE TABLE leftover (id int); INSERT INTO leftover VALUES (1)`);

      expect(await verifyJson(env, 0)).toMatchObject({ ok: true });
      expect(await mine()).toEqual([neighbour]);

      await q('postgres', `CREATE DATABASE "${stale}"`);
      const d = spawnCli(['daemon'], env);
      await d.waitForOutput(/next scheduled backup at/);
      // the start-up clean-up runs in the background, after the daemon is ready
      await d.waitForOutput(/dropped a scratch database left by an interrupted restore drill/);
      expect(d.output()).toContain(stale);
      expect(await mine()).toEqual([neighbour]);
      d.child.kill('SIGTERM');
      expect(await d.exited, d.output()).toBe(0);
    } finally {
      await dropDb(stale);
      await dropDb(neighbour);
    }
  });

  it('recognises the scratch databases of long database names, which PostgreSQL cuts at 63 bytes', async () => {
    const long = `${DB_PREFIX}_${'x'.repeat(40)}`; // 47 characters: the scratch name's time is cut short
    const name = scratchName(long, new Date('2020-01-01T00:00:00Z'));
    expect(name.length).toBeGreaterThan(63);
    onTestFinished(() => dropDb(name));
    await q('postgres', `CREATE DATABASE "${name}"`);
    const [{ datname } = { datname: '' }] = await q<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, [
      `bb_verify_${long}_`,
    ]);
    expect(datname).toHaveLength(63);
    expect(isScratchOf(long, datname)).toBe(true);
    await dropDb(name); // DROP cuts the name the same way
    expect(await q('postgres', `SELECT 1 FROM pg_database WHERE datname = $1`, [datname])).toEqual([]);
    expect(isScratchOf(long, `bb_verify_${long}_staging_20200101t000000z`.slice(0, 63))).toBe(false);
    expect(isScratchOf('app', 'bb_verify_app_staging_20200101t000000z')).toBe(false);
    expect(isScratchOf('app', 'bb_verify_app_20200101t000000z')).toBe(true);
  });

  it('SIGTERM during a scheduled drill stops it at once, drops its scratch database and sends no alert', async () => {
    const sink = await smtpSink();
    const db = await drillDb(`
      CREATE TABLE events (id bigint PRIMARY KEY, a text NOT NULL, b text NOT NULL);
      INSERT INTO events SELECT g, md5(g::text), md5((g * 7)::text) FROM generate_series(1, 250000) g;
      CREATE INDEX events_a ON events (a);
      CREATE INDEX events_b ON events (b);
      CREATE INDEX events_ab ON events (b, a);
    `);
    const dir = tempDir();
    const env = backupEnv(db, dir, { ...smtpEnv(sink.port), BACKUP_SCHEDULE: YEARLY, BACKUP_CATCH_UP: 'false', VERIFY_SCHEDULE: '*/2 * * * * *' });
    const b = await backup(env);
    const mine = () => scratchDatabases((sql, p) => query<{ datname: string }>('postgres', sql, p), `bb_verify_${db}_`);

    const d = spawnCli(['daemon'], env);
    await waitFor(async () => (await mine()).length > 0, 20_000, 'a drill to start restoring');
    const t0 = Date.now();
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(d.output()).not.toContain('restore drill passed');
    expect(d.output()).toContain('daemon stopped');
    expect(await mine()).toEqual([]);
    expect(d.output()).toContain('restore drill stopped before it finished; nothing recorded');
    // an interrupted drill is no verdict: it is neither recorded nor alerted
    expect((await listJson<Listed>(env)).find((x) => x.id === b.id)!.verification).toBeUndefined();
    expect((JSON.parse((await cli(['status', '--json'], env)).stdout) as { last_drill: unknown }).last_drill).toBeNull();
    expect(sink.mails).toEqual([]);
  });

  it('the daemon runs drills on VERIFY_SCHEDULE; list and status show the result', async () => {
    const db = await drillDb(SMALL_SCHEMA);
    const dir = tempDir();
    // catch-up takes the backup at start; the next backup is a year away
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY, VERIFY_SCHEDULE: '*/3 * * * * *' });
    const d = spawnCli(['daemon'], env);
    await d.waitForOutput(/next restore drill at/);
    // Stop right after a drill passed: the next one is due up to 3 s later, so none is cut short.
    await d.waitForOutput(/restore drill passed/, 25_000);
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
    expect(d.output()).not.toMatch(/restore drill FAILED/);

    const [b, ...more] = await listJson<Listed>(env);
    expect(more).toEqual([]);
    expect(b!.verification).toMatchObject({ ok: true, checksum_ok: true, tables_checked: 2, rows_checked: 425, mismatches: [], error: null });
    expect(b!.verification!.restore_ms).toBeGreaterThan(0);

    const status = JSON.parse((await cli(['status', '--json'], env)).stdout) as {
      last_drill: { id: string; ok: boolean; restore_ms: number | null; verified_at: string } | null;
      next_drill: string | null;
    };
    expect(status.last_drill).toMatchObject({ id: b!.id, ok: true, verified_at: b!.verification!.verified_at });
    expect(status.last_drill!.restore_ms).toBe(b!.verification!.restore_ms);
    expect(status.next_drill).not.toBeNull();
    const statusText = (await cli(['status'], env)).stdout;
    expect(statusText).toMatch(new RegExp(`last restore drill\\s*│\\s*PASSED \\S+ on ${b!.id}, restore took \\d+\\.\\ds`));

    const list = (await cli(['list'], env)).stdout;
    expect(list).toMatch(/│\s*verified\s*│/);
    const when = b!.verification!.verified_at.slice(0, 16).replace('T', ' ');
    expect(list).toMatch(new RegExp(`${b!.id}.*│\\s*ok ${when}\\s*│`));
  });

  it('BACKUP_DIGEST=counts and off are recorded; verify passes, and with counts an edited row count is caught', async () => {
    const db = await drillDb(SMALL_SCHEMA);

    const countsDir = tempDir();
    const counts = backupEnv(db, countsDir, { BACKUP_DIGEST: 'counts' });
    const c = await backup(counts);
    expect(c.digest_mode).toBe('counts');
    expect(c.table_digests).toEqual({ 'public.items': { rows: 400 }, 'Other Schema.Weird Table': { rows: 25 } });
    expect(await verifyJson(counts, 0)).toMatchObject({ ok: true, tables_checked: 2, rows_checked: 425, mismatches: [] });
    editManifest(countsDir, c.id, (m) => (m.table_digests['public.items']!.rows = 399));
    const bad = await verifyJson(counts, 33);
    expect(bad.mismatches).toEqual([{ table: 'public.items', problem: '400 rows restored, 399 at backup time' }]);
    expect(bad.error).toContain('public.items');

    const offDir = tempDir();
    const off = backupEnv(db, offDir, { BACKUP_DIGEST: 'off' });
    const o = await backup(off);
    expect(o.digest_mode).toBe('off');
    expect(o.table_digests).toEqual({});
    expect(o.tables.sort()).toEqual(['Other Schema.Weird Table', 'public.items']);
    const v = await verifyJson(off, 0);
    // nothing to compare, but the restore itself was proven and timed
    expect(v).toMatchObject({ ok: true, checksum_ok: true, tables_checked: 0, rows_checked: 0, mismatches: [] });
    expect(v.restore_ms).toBeGreaterThan(0);
  });
});

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { backupEnv, listJson, smtpEnv, tempDir } from '../helpers/cli';
import { backup, cli, drillDatabases, q, SMALL_SCHEMA, verifyJson, type Listed } from '../helpers/drill';
import { dropDb, pgInfo, tableCounts } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';

// Restore drills checking what is stored: a rich schema round-trips, a flipped bit, an edited digest or row count, BACKUP_DIGEST modes; the drills' running (daemon, SIGTERM, VERIFY_DB_*) is in drills.test.ts.

/** Every database of this file is named vdrill_<hex> (drillDatabases). */
const DB_PREFIX = 'vdrill';
const { drillDb } = drillDatabases(DB_PREFIX);

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
    // tables digested by the server (the exact sum of 64-bit row hashes), large objects here
    expect(b.digest_method).toBe('server');
    expect(b.table_digests['Other Schema.Weird Table']).toEqual({ rows: 3, digest: expect.stringMatching(/^-?\d+$/) as unknown });
    expect(b.table_digests['public.empty_table']).toEqual({ rows: 0, digest: '0' });

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

import crypto from 'node:crypto';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { digestTables, digestTablesAcross, type DigestMethod, type TableDigests } from '../../src/digest/table-digests';
import { listUserTables } from '../../src/pg/catalog';
import { digestRestored } from '../../src/restore/digest-restored';
import { createTestDb, pgInfo, query } from '../helpers/pg';

const SCHEMA = `
  CREATE TABLE t (id int, f float8, n numeric, at timestamptz, b bytea, j jsonb, s text, d interval);
  INSERT INTO t SELECT g, g / 7.0, g * 1.10, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 hour',
    decode(md5(g::text), 'hex'), jsonb_build_object('g', g), 'row ' || g, g * interval '1 minute' FROM generate_series(1, 500) g;
  CREATE TABLE empty (x int);`;

/** Digests of every user table of `database`, read with session settings an application might have. */
async function digestsOf(database: string, method: DigestMethod, session = ''): Promise<TableDigests> {
  const info = pgInfo();
  const client = new pg.Client({ host: info.host, port: info.port, user: info.user, password: info.password, database });
  await client.connect();
  try {
    if (session) await client.query(session);
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const d = await digestTables(client, await listUserTables(client), 'full', { method });
    await client.query('COMMIT');
    return d;
  } finally {
    await client.end();
  }
}

describe.each(['server', 'copy'] as const)('content digests computed by %s', (method) => {
  it('agree for the same rows in another order and other session settings, and change with any value, a lost or a duplicated row', async () => {
    const a = await createTestDb('dig_a');
    const b = await createTestDb('dig_b');
    await query(a, SCHEMA);
    await query(b, SCHEMA.replace('FROM generate_series(1, 500) g', 'FROM generate_series(500, 1, -1) g'));
    const base = await digestsOf(a, method);
    expect(base['public.t']).toMatchObject({ rows: 500, digest: expect.any(String) as unknown });
    expect(base['public.empty']!.rows).toBe(0);
    // the same content, written in the opposite order and read with other output settings
    expect(
      await digestsOf(b, method, `SET TimeZone = 'America/New_York'; SET DateStyle = 'SQL, DMY'; SET extra_float_digits = 0; SET bytea_output = 'escape'`),
    ).toEqual(base);

    for (const change of [
      `UPDATE t SET f = f + 1e-12 WHERE id = 250`,
      `UPDATE t SET at = at + interval '1 microsecond' WHERE id = 3`,
      `UPDATE t SET n = 2.2 WHERE id = 2`, // it was 2.20: the same number, but the scale is content too
      `DELETE FROM t WHERE id = 499`,
      `INSERT INTO t SELECT * FROM t WHERE id = 7`,
    ]) {
      const c = await createTestDb('dig_c');
      await query(c, SCHEMA);
      await query(c, change);
      const changed = await digestsOf(c, method);
      expect(changed['public.t'], change).not.toEqual(base['public.t']);
      expect(changed['public.empty']).toEqual(base['public.empty']);
    }
  });
});

describe('digests of a restored copy read by several connections at once', () => {
  it('are those one connection reads, in the same order, large objects included once, with the tables shared out by size', async () => {
    const db = await createTestDb('dig_across');
    await query(db, SCHEMA);
    await query(
      db,
      `CREATE SCHEMA other; CREATE TABLE other.big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 5000) g;
      CREATE TABLE other.small (k text); INSERT INTO other.small VALUES ('a'), ('b');
      SELECT lo_from_bytea(0, 'large object one'), lo_from_bytea(0, 'two')`,
    );
    const info = pgInfo();
    const open = async () => {
      const c = new pg.Client({ host: info.host, port: info.port, user: info.user, password: info.password, database: db });
      await c.connect();
      return c;
    };
    const clients = [await open(), await open(), await open()];
    const reads: string[][] = clients.map(() => []);
    clients.forEach((c, i) => {
      const query = c.query.bind(c) as (...args: unknown[]) => unknown;
      (c as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        if (typeof args[0] === 'string' && args[0].includes(' FROM ONLY ')) reads[i]!.push(/FROM ONLY (\S+)/.exec(args[0])![1]!);
        return query(...args);
      };
    });
    try {
      const tables = await listUserTables(clients[0]!);
      const one = await digestTables(clients[0]!, tables, 'full', { method: 'server', autocommit: true });
      reads.forEach((r) => r.splice(0));
      const across = await digestTablesAcross(clients, tables, 'full', { method: 'server' });
      expect(across).toEqual(one);
      expect(Object.keys(across)).toEqual(Object.keys(one));
      expect(one['(large objects)']!.rows).toBe(2);
      // the largest table alone on one connection, every table read exactly once
      expect(reads.flat().sort()).toEqual(tables.map((t) => `"${t.schema}"."${t.name}"`).sort());
      expect(reads.find((r) => r.includes('"other"."big"'))).toEqual(['"other"."big"']);
      expect(reads.filter((r) => r.length > 0)).toHaveLength(3);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  it('with a connection limit that refuses the extra connections, the one that opened reads every table', async () => {
    const db = await createTestDb('dig_limit');
    await query(db, SCHEMA);
    await query(db, `CREATE TABLE third AS SELECT g FROM generate_series(1, 70) g`);
    const role = `bb_limited_${crypto.randomBytes(4).toString('hex')}`;
    const password = crypto.randomBytes(12).toString('hex');
    await query('postgres', `CREATE ROLE ${role} LOGIN PASSWORD '${password}' CONNECTION LIMIT 1`);
    onTestFinished(async () => {
      await query(db, `DROP OWNED BY ${role}`).catch(() => undefined);
      await query('postgres', `DROP ROLE IF EXISTS ${role}`);
    });
    await query(db, `GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`);
    const info = pgInfo();
    const as = { host: info.host, port: info.port, user: role, password, database: db, sslmode: 'disable', connectTimeoutSeconds: 10 };
    const counts = await digestRestored(as, db, 'counts', { connections: 3 });
    expect(counts).toEqual({ 'public.empty': { rows: 0 }, 'public.t': { rows: 500 }, 'public.third': { rows: 70 } });
  });
});

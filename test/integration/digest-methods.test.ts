import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { digestTables, type DigestMethod, type TableDigests } from '../../src/digest/table-digests';
import { listUserTables } from '../../src/pg/catalog';
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

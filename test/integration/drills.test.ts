import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startCluster } from '../../scripts/lib/cluster';
import { isScratchOf, scratchName } from '../../src/restore/scratch';
import type { Verification } from '../../src/repository/manifest';
import { backupEnv, listJson, smtpEnv, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { backup, cli, drillDatabases, q, scratchDatabases, SMALL_SCHEMA, verifyJson, type Listed } from '../helpers/drill';
import { dropDb, pgInfo, query } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';

// Restore drills as they run: under live writes, on another server (VERIFY_DB_*), on the daemon's schedule, stopped by SIGTERM, and their stale scratch databases; split from verify.test.ts so the two halves run in parallel.

/** Every database of this file is named ddrill_<hex> (drillDatabases), apart from verify.test.ts's vdrill_. */
const DB_PREFIX = 'ddrill';
const { drillDb, extraClusters } = drillDatabases(DB_PREFIX);
const YEARLY = '0 0 1 1 *';

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

describe('verify: restore drills', () => {
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
});

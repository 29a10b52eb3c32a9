import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../../scripts/lib/cluster';
import { freePort } from '../../scripts/lib/cluster';
import { runCli, waitFor } from '../helpers/cli';
import { localWalObjects, ownCluster, processesNaming, startReceiver, type FileReceiver } from '../helpers/wal';

// Point-in-time recovery end to end, as on the server: PostgreSQL runs as `postgres`; the WAL
// receiver and base backups run as another user (root here); a recovery started with --start runs
// as the user who will own the recovered cluster (postgres here, as root is refused).

const POSTGRES = { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) };
const NAME = 'pitrdb';

let cluster: Cluster;
let dir: string;
let envFile: string;
let receiver: FileReceiver | undefined;
/** The moments the tests recover to. */
const marks: { beforeDelete?: string } = {};

function vars(extra: Record<string, string> = {}): Record<string, string> {
  return {
    DB_HOST: cluster.host,
    DB_PORT: String(cluster.port),
    DB_USER: 'postgres',
    DB_PASSWORD: cluster.password,
    DB_NAME: NAME,
    PG_BIN_DIR: cluster.binDir,
    BACKUP_DIR: path.join(dir, 'backups'),
    BACKUP_STATE_DIR: path.join(dir, 'state'),
    LOG_DIR: path.join(dir, 'logs'),
    BACKUP_MIN_FREE_MB: '0',
    ...extra,
  };
}

/** The CLI with the env file (which restore_command's wal-fetch reads too), nothing else from the environment. */
function cli(args: string[], opts: { uid?: number; gid?: number; timeoutMs?: number } = {}) {
  return runCli(['--env-file', envFile, ...args], { PATH: process.env.PATH!, HOME: dir }, { cwd: dir, timeoutMs: opts.timeoutMs ?? 180_000, ...opts });
}

async function sql(text: string, port = cluster.port): Promise<pg.QueryResultRow[]> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: cluster.password, database: NAME });
  await c.connect();
  try {
    return (await c.query<pg.QueryResultRow>(text)).rows;
  } finally {
    await c.end();
  }
}

/** Switches WAL and waits until the segment that held everything so far is archived on the local target. */
async function archiveAll(): Promise<void> {
  const [{ name }] = (await sql('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ name: string }];
  await sql('SELECT pg_switch_wal()');
  await waitFor(() => localWalObjects(path.join(dir, 'backups'), NAME).some((o) => o.startsWith(`${name}-`)), 60_000, `${name} archived`);
}

/** Makes the test directory the postgres user's, for a recovery run as postgres. */
function giveToPostgres(): void {
  execFileSync('chown', ['-R', `${POSTGRES.uid}:${POSTGRES.gid}`, dir]);
}

function stopRecovered(pgdata: string): void {
  execFileSync('runuser', ['-u', 'postgres', '--', path.join(cluster.binDir, 'pg_ctl'), '-D', pgdata, '-m', 'immediate', '-w', 'stop'], { stdio: 'ignore' });
}

beforeAll(async () => {
  cluster = await ownCluster({ archive_timeout: '0' });
  await cluster.createDatabase(NAME);
  dir = fs.mkdtempSync('/tmp/bb-pitr-');
  fs.chmodSync(dir, 0o755);
  envFile = path.join(dir, '.env');
  fs.writeFileSync(
    envFile,
    Object.entries(
      vars({
        BACKUP_RETENTION_DAYS: '1',
        BACKUP_RETENTION_MIN_COUNT: '1',
        BACKUP_KEEP_DAILY: '0',
        BACKUP_KEEP_WEEKLY: '0',
        BACKUP_KEEP_MONTHLY: '0',
        BACKUP_KEEP_YEARLY: '0',
      }),
    )
      .map(([k, v]) => `${k}=${v}`)
      .join('\n') + '\n',
    { mode: 0o600 },
  );
  receiver = await startReceiver(envFile, dir);
  const base = await cli(['basebackup']);
  expect(base.code, `${base.stdout}${base.stderr}\nreceiver: ${receiver.output()}`).toBe(0);

  await sql('CREATE TABLE orders (id int PRIMARY KEY, note text)');
  await sql(`INSERT INTO orders SELECT g, 'kept' FROM generate_series(1, 100) g`);
  await sql(`SELECT pg_create_restore_point('before_delete')`);
  await new Promise((r) => setTimeout(r, 1100)); // two transactions a second apart, the mark between them
  marks.beforeDelete = ((await sql('SELECT now()::text AS t')) as [{ t: string }])[0].t;
  await new Promise((r) => setTimeout(r, 1100));
  await sql('DELETE FROM orders');
  await sql(`INSERT INTO orders VALUES (1000, 'after')`);
  await archiveAll();
}, 300_000);

afterAll(async () => {
  await receiver?.stop();
  cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('pitr-restore', () => {
  it('--to a time between two transactions, started: the rows before it are there, the later changes are not', async () => {
    giveToPostgres();
    const pgdata = path.join(dir, 'to-time');
    const port = await freePort();
    const r = await cli(['pitr-restore', '--pgdata', pgdata, '--to', marks.beforeDelete!, '--start', '--port', String(port)], POSTGRES);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    try {
      expect(r.stdout).toMatch(/Recovered from base backup base_\w+ .* into .*to-time, to the time/);
      expect(r.stdout).toContain('Its files match the backup_manifest (pg_verifybackup).');
      expect(r.stdout).toMatch(/the server is up on port \d+, timeline 2/);
      expect(await sql(`SELECT count(*)::int AS n, min(note) AS note FROM orders`, port)).toEqual([{ n: 100, note: 'kept' }]);
      // recovered clusters never archive into the production archive
      expect(await sql(`SELECT current_setting('archive_mode') AS m`, port)).toEqual([{ m: 'off' }]);
      // the prefetcher it started is stopped, and waited for, before the command exits
      expect(fs.existsSync(`${pgdata}.wal-prefetch`)).toBe(false);
      expect(processesNaming(`${pgdata}.wal-prefetch`)).toEqual([]);
    } finally {
      stopRecovered(pgdata);
    }
  });

  it('--to-latest has every change; --to-name stops at the restore point', async () => {
    giveToPostgres();
    const latest = path.join(dir, 'latest');
    const named = path.join(dir, 'named');
    const [p1, p2] = [await freePort(), await freePort()];
    const a = await cli(['pitr-restore', '--pgdata', latest, '--to-latest', '--start', '--port', String(p1)], POSTGRES);
    expect(a.code, a.stdout + a.stderr).toBe(0);
    try {
      expect(await sql(`SELECT id, note FROM orders`, p1)).toEqual([{ id: 1000, note: 'after' }]);
    } finally {
      stopRecovered(latest);
    }
    // laid out only, then started by hand: recovery_end_command removes the prefetched WAL all the same
    const b = await cli(['pitr-restore', '--pgdata', named, '--to-name', 'before_delete', '--port', String(p2)], POSTGRES);
    expect(b.code, b.stdout + b.stderr).toBe(0);
    execFileSync(
      'runuser',
      ['-u', 'postgres', '--', path.join(cluster.binDir, 'pg_ctl'), '-D', named, '-l', path.join(named, 'by-hand.log'), '-w', '-t', '120', 'start'],
      {
        stdio: 'ignore',
      },
    );
    try {
      await waitFor(async () => (await sql('SELECT pg_is_in_recovery() AS r', p2))[0]!.r === false, 120_000, 'promotion');
      expect(await sql(`SELECT count(*)::int AS n FROM orders`, p2)).toEqual([{ n: 100 }]);
      expect(fs.existsSync(`${named}.wal-prefetch`)).toBe(false);
      // the prefetcher the first wal-fetch started ends by itself once its spool is gone
      await waitFor(() => processesNaming(`${named}.wal-prefetch`).length === 0, 30_000, 'the prefetcher ended');
    } finally {
      stopRecovered(named);
    }
  });

  it('refuses a data directory that is not empty, --start as root, and a time before any base backup ended; --dry-run changes nothing', async () => {
    const used = path.join(dir, 'used');
    fs.mkdirSync(used);
    fs.writeFileSync(path.join(used, 'PG_VERSION'), '15\n');
    const notEmpty = await cli(['pitr-restore', '--pgdata', used, '--to-latest']);
    expect(notEmpty.code).toBe(2);
    expect(notEmpty.stderr).toContain('is not empty');
    // a recovery's prefetch directory beside it: named, with the way out
    fs.mkdirSync(path.join(dir, 'stale.wal-prefetch'));
    const stale = await cli(['pitr-restore', '--pgdata', path.join(dir, 'stale'), '--to-latest']);
    expect(stale.code).toBe(2);
    expect(stale.stderr).toMatch(/stale\.wal-prefetch exists: a recovery into .* is running, or one was stopped[\s\S]*rm -rf /);
    const asRoot = await cli(['pitr-restore', '--pgdata', path.join(dir, 'root'), '--to-latest', '--start', '--port', '1']);
    expect(asRoot.code).toBe(4);
    expect(asRoot.stderr).toMatch(/PostgreSQL does not start as root[\s\S]*sudo -u postgres/);
    const early = await cli(['pitr-restore', '--pgdata', path.join(dir, 'early'), '--to', '2001-01-01 00:00:00+00']);
    expect(early.code).toBe(30);
    expect(early.stderr).toMatch(/no base backup ended before the time 2001-01-01T00:00:00.000Z[\s\S]*The oldest ended at/);
    const dry = await cli(['pitr-restore', '--pgdata', path.join(dir, 'dry'), '--to', marks.beforeDelete!, '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/recovery_target_time = '.*'\n/);
    expect(dry.stdout).toContain("archive_mode = 'off'");
    expect(dry.stdout).toMatch(/zstd -dc .*\.tar\.zst \| tar -x -f - -C /);
    for (const d of ['root', 'early', 'dry', 'stale']) expect(fs.existsSync(path.join(dir, d))).toBe(false);
  });

  it('a damaged base backup: exit 31 naming it, and the directory left empty', async () => {
    const root = path.join(dir, 'backups/pitr', NAME);
    const data = fs.readdirSync(root).find((f) => /^base_.*\.tar/.test(f))!;
    const file = path.join(root, data);
    const good = fs.readFileSync(file);
    const bad = Buffer.from(good);
    bad[Math.floor(bad.length / 2)] = bad[Math.floor(bad.length / 2)]! ^ 0x5a;
    fs.writeFileSync(file, bad);
    try {
      const pgdata = path.join(dir, 'damaged');
      const r = await cli(['pitr-restore', '--pgdata', pgdata, '--to-latest']);
      expect(r.code, r.stdout + r.stderr).toBe(31);
      expect(r.stderr).toMatch(new RegExp(`damaged: ${data.replace(/\./g, '\\.')}`));
      expect(fs.readdirSync(pgdata)).toEqual([]);
    } finally {
      fs.writeFileSync(file, good);
    }
  });

  it('a segment missing from the middle of the archive stops recovery with the gap named (no silent early end); a target that cannot be read stops it too', async () => {
    giveToPostgres();
    const walDir = path.join(dir, 'backups/pitr', NAME, 'wal');
    const objects = localWalObjects(path.join(dir, 'backups'), NAME).filter((o) => /^[0-9A-F]{24}-/.test(o));
    // one the base backup does not need, with later ones archived: replaying past it needs it
    const [{ first }] = (await sql(`SELECT 1 AS first`)) as [{ first: number }];
    expect(first).toBe(1);
    const victim = objects[objects.length - 2]!;
    fs.renameSync(path.join(walDir, victim), path.join(dir, 'aside'));
    try {
      const pgdata = path.join(dir, 'gap');
      const r = await cli(['pitr-restore', '--pgdata', pgdata, '--to-latest', '--start', '--port', String(await freePort())], POSTGRES);
      expect(r.code, r.stdout + r.stderr).toBe(32);
      expect(r.stderr).toMatch(new RegExp(`recovery stopped: .*${victim.slice(0, 24)} is missing from the archive, but later WAL of its timeline is there`));
    } finally {
      fs.renameSync(path.join(dir, 'aside'), path.join(walDir, victim));
    }
    // the archive unreadable by the user recovery runs as: an error, not the end of the archive
    fs.chmodSync(walDir, 0o000);
    try {
      const pgdata = path.join(dir, 'unreadable');
      const r = await cli(['pitr-restore', '--pgdata', pgdata, '--to-latest', '--start', '--port', String(await freePort())], POSTGRES);
      expect(r.code, r.stdout + r.stderr).toBe(32);
      expect(r.stderr).toMatch(/recovery stopped: .*could not be fetched/);
    } finally {
      fs.chmodSync(walDir, 0o700);
    }
  });

  it('status shows the recovery window; prune keeps the WAL the kept base backup needs and removes what comes before it', async () => {
    const status = await cli(['status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    const [w] = (
      JSON.parse(status.stdout) as { recovery_window: { target: string; base_backups: number; earliest: string; latest: string; gaps: unknown[] }[] }
    ).recovery_window;
    expect(w).toMatchObject({ target: 'local', base_backups: 1, gaps: [] });
    expect(Date.parse(w!.latest)).toBeGreaterThan(Date.parse(w!.earliest));

    // a second base backup, the first made ten days old: retention (min count 1, 1 day) lets it go, and its WAL
    const second = await cli(['basebackup', '--json']);
    expect(second.code, second.stderr).toBe(0);
    const root = path.join(dir, 'backups/pitr', NAME);
    const records = fs
      .readdirSync(root)
      .filter((f) => f.endsWith('.base.json'))
      .sort();
    expect(records).toHaveLength(2);
    const old = JSON.parse(fs.readFileSync(path.join(root, records[0]!), 'utf8')) as { start_time: string; wal_first: string };
    fs.writeFileSync(path.join(root, records[0]!), JSON.stringify({ ...old, start_time: new Date(Date.now() - 10 * 86400_000).toISOString() }));
    const newer = JSON.parse(fs.readFileSync(path.join(root, records[1]!), 'utf8')) as { wal_first: string };
    const before = localWalObjects(path.join(dir, 'backups'), NAME);
    const dry = await cli(['prune', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`${records[0]!.replace('.base.json', '')} .*would delete`));
    expect(localWalObjects(path.join(dir, 'backups'), NAME)).toEqual(before);
    const pruned = await cli(['prune']);
    expect(pruned.code, pruned.stderr).toBe(0);
    const after = localWalObjects(path.join(dir, 'backups'), NAME);
    expect(after.filter((o) => /^[0-9A-F]{24}[-.]/.test(o) && o.slice(0, 24).slice(8) < newer.wal_first.slice(8))).toEqual([]);
    expect(after.some((o) => o.startsWith(newer.wal_first))).toBe(true);
    expect(fs.readdirSync(root).filter((f) => f.endsWith('.base.json'))).toEqual([records[1]]);
  });
});

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../../scripts/lib/cluster';
import { runCli, spawnCli, waitFor } from '../helpers/cli';
import { localWalObjects, ownCluster, processesNaming, startReceiver, type FileReceiver } from '../helpers/wal';

// The PITR drill (verify --pitr), as on the server: PostgreSQL runs as `postgres`; the WAL
// receiver, base backups and the drill run as another user (`nobody` here: the drill starts the
// recovered server as the user running it, and PostgreSQL refuses root).

const APP_USER = { uid: Number(execFileSync('id', ['-u', 'nobody']).toString()), gid: Number(execFileSync('id', ['-g', 'nobody']).toString()) };
const NAME = 'drilldb';

let cluster: Cluster;
let dir: string;
let envFile: string;
let receiver: FileReceiver | undefined;
/** A segment written after the base backup: recovery to any later point needs it. */
let needed: string;

function cli(args: string[], env = envFile) {
  return runCli(['--env-file', env, ...args], { PATH: process.env.PATH!, HOME: dir }, { cwd: dir, timeoutMs: 240_000, ...APP_USER });
}

async function sql(text: string): Promise<pg.QueryResultRow[]> {
  const c = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: cluster.password, database: NAME });
  await c.connect();
  try {
    return (await c.query<pg.QueryResultRow>(text)).rows;
  } finally {
    await c.end();
  }
}

function writeEnv(file: string, extra: Record<string, string> = {}): void {
  const vars = {
    DB_HOST: cluster.host,
    DB_PORT: String(cluster.port),
    DB_USER: 'postgres',
    DB_PASSWORD: cluster.password,
    DB_NAME: NAME,
    PG_BIN_DIR: cluster.binDir,
    BACKUP_DIR: path.join(dir, 'backups'),
    BACKUP_STATE_DIR: path.join(dir, 'state'),
    BACKUP_TEMP_DIR: path.join(dir, 'scratch'),
    LOG_DIR: path.join(dir, 'logs'),
    BACKUP_MIN_FREE_MB: '0',
    ...extra,
  };
  fs.writeFileSync(
    file,
    Object.entries(vars)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
    { mode: 0o600 },
  );
  fs.chownSync(file, APP_USER.uid, APP_USER.gid);
}

beforeAll(async () => {
  cluster = await ownCluster({ archive_timeout: '0' });
  await cluster.createDatabase(NAME);
  dir = fs.mkdtempSync('/tmp/bb-pdrill-');
  fs.mkdirSync(path.join(dir, 'scratch'), { mode: 0o700 });
  execFileSync('chown', ['-R', `${APP_USER.uid}:${APP_USER.gid}`, dir]);
  envFile = path.join(dir, '.env');
  writeEnv(envFile);
  receiver = await startReceiver(envFile, dir, APP_USER);
  const base = await cli(['basebackup']);
  expect(base.code, `${base.stdout}${base.stderr}\nreceiver: ${receiver.output()}`).toBe(0);
  await sql('CREATE TABLE accounts (id int PRIMARY KEY, balance numeric, note text)');
  await sql(`INSERT INTO accounts SELECT g, g * 1.5, md5(g::text) FROM generate_series(1, 5000) g`);
  await sql('CREATE TABLE events (at timestamptz DEFAULT now(), what text)');
  await sql(`INSERT INTO events (what) SELECT 'e' || g FROM generate_series(1, 200) g`);
  // never in WAL: recovered empty by design, so not a difference
  await sql(`CREATE UNLOGGED TABLE cache AS SELECT g AS k FROM generate_series(1, 50) g`);
  const [{ name }] = (await sql('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ name: string }];
  needed = name;
  await sql('SELECT pg_switch_wal()');
  await waitFor(() => localWalObjects(path.join(dir, 'backups'), NAME).some((o) => o.startsWith(`${needed}-`)), 60_000, `${needed} archived`);
}, 300_000);

afterAll(async () => {
  await receiver?.stop();
  cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('verify --pitr', () => {
  it('passes: recovered to its restore point, every table equal to production there; the record and status show the recovery time', async () => {
    await sql(`UPDATE accounts SET balance = balance + 1 WHERE id <= 100`);
    // a transaction open across the drill, with an xid that no WAL record carries: in the snapshot's
    // in-progress list, and past the recovered cluster's next xid (it must not make the check fail)
    const open = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: cluster.password, database: NAME });
    await open.connect();
    await open.query('BEGIN');
    await open.query('SELECT pg_current_xact_id()');
    const r = await cli(['verify', '--pitr', '--json']).finally(() => open.end());
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const record = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(record).toMatchObject({ ok: true, target: 'local', tables_checked: 2, rows_checked: 5200, mismatches: [], exact: true, error: null });
    expect(record.skipped_unlogged).toEqual(['public.cache']);
    expect(record.base_backup).toMatch(/^base_/);
    expect(record.restore_point).toMatch(/^bb-drill-\d{8}T\d{6}Z$/);
    expect(record.reached).toContain(`recovery stopping at restore point "${record.restore_point as string}"`);
    expect(record.recovery_ms).toBeGreaterThan(0);
    expect(fs.readdirSync(path.join(dir, 'scratch'))).toEqual([]);

    const status = await cli(['status']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(
      /last PITR drill\s+│\s+\S+, base backup base_\w+ on local: passed, recovered to bb-drill-\w+ in \d+\.\ds, 2 tables \/ 5200 rows compared \(exact\)/,
    );
  }, 120_000);

  it('fails on a damaged archived segment: a clear message, a non-zero exit, the failure recorded; no scratch directory or server left', async () => {
    const walDir = path.join(dir, 'backups/pitr', NAME, 'wal');
    const object = localWalObjects(path.join(dir, 'backups'), NAME).find((o) => o.startsWith(`${needed}-`))!;
    const file = path.join(walDir, object);
    const good = fs.readFileSync(file);
    const bad = Buffer.from(good);
    bad[Math.floor(bad.length / 2)] = bad[Math.floor(bad.length / 2)]! ^ 0x5a;
    fs.writeFileSync(file, bad);
    try {
      const r = await cli(['verify', '--pitr']);
      expect(r.code, r.stdout + r.stderr).toBe(32);
      expect(r.stdout).toMatch(new RegExp(`FAILED: recovery stopped: .*${needed}`));
      expect(r.stdout).toMatch(/fix\s+│\s+A missing or unreadable WAL file stops recovery/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    } finally {
      fs.writeFileSync(file, good);
    }
    expect(fs.readdirSync(path.join(dir, 'scratch'))).toEqual([]);
    expect(processesNaming(path.join(dir, 'scratch'))).toEqual([]);
    const status = await cli(['status', '--json']);
    expect((JSON.parse(status.stdout) as { last_pitr_drill: unknown }).last_pitr_drill).toMatchObject({ ok: false, error_code: 'RESTORE_FAILED' });
  }, 120_000);

  it('SIGTERM while the recovered server runs: exit 24, the server stopped, the directory removed, the last record kept', async () => {
    const recordFile = path.join(dir, 'state', `pitr-drill-${NAME}.json`);
    const recorded = () => (fs.existsSync(recordFile) ? fs.readFileSync(recordFile, 'utf8') : null);
    const before = recorded();
    const scratch = path.join(dir, 'scratch');
    const drill = spawnCli(['--env-file', envFile, 'verify', '--pitr'], { PATH: process.env.PATH!, HOME: dir }, { cwd: dir, ...APP_USER });
    const started = () => fs.readdirSync(scratch).some((d) => fs.existsSync(path.join(scratch, d, 'data', 'postmaster.pid')));
    await waitFor(started, 120_000, 'the recovered server started');
    drill.child.kill('SIGTERM');
    expect(await drill.exited, drill.output()).toBe(24);
    expect(drill.output()).toMatch(/the PITR drill was stopped; its scratch server was stopped and its directory removed/);
    expect(fs.readdirSync(scratch)).toEqual([]);
    expect(processesNaming(scratch)).toEqual([]);
    expect(recorded()).toBe(before);
  });

  it('killed with SIGKILL while the recovered server runs: the next drill shuts that server down before it removes the directory', async () => {
    const scratch = path.join(dir, 'scratch');
    const drill = spawnCli(['--env-file', envFile, 'verify', '--pitr'], { PATH: process.env.PATH!, HOME: dir }, { cwd: dir, ...APP_USER });
    const started = () => fs.readdirSync(scratch).some((d) => fs.existsSync(path.join(scratch, d, 'data', 'postmaster.pid')));
    await waitFor(started, 120_000, 'the recovered server started');
    drill.child.kill('SIGKILL');
    await drill.exited;
    // what SIGKILL leaves: the scratch server, running in its directory
    expect(processesNaming(scratch).length).toBeGreaterThan(0);
    const next = await cli(['verify', '--pitr']);
    expect(next.code, next.stdout + next.stderr).toBe(0);
    expect(processesNaming(scratch)).toEqual([]);
    expect(fs.readdirSync(scratch)).toEqual([]);
  }, 240_000);

  it('the daemon runs it on PITR_VERIFY_SCHEDULE; stopped meanwhile, it waits for the drill to stop its server and remove its directory', async () => {
    const daemonEnv = path.join(dir, 'daemon.env');
    writeEnv(daemonEnv, { WAL_RECEIVE: 'on', PITR_VERIFY_SCHEDULE: '*/10 * * * * *', BASEBACKUP_SCHEDULE: 'off', VERIFY_SCHEDULE: 'off' });
    const scratch = path.join(dir, 'scratch');
    const daemon = spawnCli(['--env-file', daemonEnv, 'daemon'], { PATH: process.env.PATH!, HOME: dir }, { cwd: dir, ...APP_USER });
    await daemon.waitForOutput(/next PITR drill of drilldb at/);
    const started = () => fs.readdirSync(scratch).some((d) => fs.existsSync(path.join(scratch, d, 'data', 'postmaster.pid')));
    await waitFor(started, 150_000, "the scheduled drill's server started");
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited, daemon.output()).toBe(0);
    expect(daemon.output()).toMatch(/PITR drill stopped before it finished; nothing recorded/);
    expect(fs.readdirSync(scratch)).toEqual([]);
    expect(processesNaming(scratch)).toEqual([]);
  }, 240_000);

  it('without WAL archiving it says so at its deadline instead of hanging', async () => {
    const other = path.join(dir, 'other.env');
    writeEnv(other, { BACKUP_DIR: path.join(dir, 'unarchived'), BASEBACKUP_WAL_WAIT_SECONDS: '3' });
    const r = await cli(['verify', '--pitr'], other);
    expect(r.code, r.stdout + r.stderr).toBe(33);
    expect(r.stdout).toMatch(/FAILED: [0-9A-F]{24}, which holds the drill's restore point, was not archived on local within 3 s/);
    expect(r.stdout).toMatch(/fix\s+│\s+Is WAL being archived\? Run the daemon with WAL_RECEIVE=on/);
  });
});

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../../scripts/lib/cluster';
import { ERROR_CODES } from '../../src/errors';
import { runCli, spawnCli, tempDir, waitFor, type CliResult } from '../helpers/cli';
import { bucket, cli } from '../helpers/offsite';

// pitr-setup: the set-up printed for this configuration, then the running set-up checked row by
// row, ending with a test switch that must reach every target; and the PITR rows of config check.
// A cluster of this file's own (archive_timeout, a slot limit), a non-superuser role, the CLI as
// root: another user than PostgreSQL, as on the server.

let cluster: Cluster;
const DB = 'shop';
const PREFIX = 'basement/';
const ROLE = 'shop_backup';
const PW = 'backup-pw-4471';

beforeAll(async () => {
  cluster = await startCluster({ settings: { archive_timeout: '60', max_slot_wal_keep_size: '1GB' } });
  await cluster.query('postgres', `CREATE ROLE ${ROLE} LOGIN REPLICATION PASSWORD '${PW}'`);
  await cluster.createDatabase(DB);
  await cluster.query(DB, `GRANT EXECUTE ON FUNCTION pg_switch_wal() TO ${ROLE}`);
}, 120_000);

afterAll(() => cluster?.stop());

afterEach(async () => {
  // a slot nobody streams from would make the server keep WAL for ever
  await cluster.query('postgres', 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active');
});

function envFor(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH!,
    HOME: process.env.HOME ?? '/root',
    DB_HOST: cluster.host,
    DB_PORT: String(cluster.port),
    DB_USER: ROLE,
    DB_PASSWORD: PW,
    DB_NAME: DB,
    PG_BIN_DIR: cluster.binDir,
    BACKUP_DIR: path.join(dir, 'backups'),
    LOG_DIR: path.join(dir, 'logs'),
    BACKUP_MIN_FREE_MB: '0',
    WAL_RECEIVE: 'on',
    WAL_SLOT_NAME: `bb_${crypto.randomBytes(4).toString('hex')}`,
    ...extra,
  };
}

interface Row {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix: string | null;
  code: string | null;
}

/** The rows of `pitr-setup --json`, read through jq as a script would. */
function rowsOf(r: CliResult): Row[] {
  const out = execFileSync('jq', ['-c', '.checks[]'], { input: r.stdout }).toString();
  return out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Row);
}

const row = (rows: Row[], check: string) => rows.find((r) => r.check === check);

/** A role of its own for a test: `attrs` (e.g. REPLICATION), its password, may switch WAL in the database. */
async function role(name: string, attrs: string): Promise<Record<string, string>> {
  await cluster.query('postgres', `DROP ROLE IF EXISTS ${name}; CREATE ROLE ${name} LOGIN ${attrs} PASSWORD '${name}-pw-1'`);
  return { DB_USER: name, DB_PASSWORD: `${name}-pw-1` };
}

function noSecrets(r: CliResult, ...secrets: string[]): void {
  for (const s of [cluster.password, ...secrets]) expect(r.stdout + r.stderr).not.toContain(s);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('pitr-setup', () => {
  it('with the receiver running: every check passes, and the test switch reaches the local and the S3 target', async () => {
    const s3 = await bucket();
    const dir = tempDir();
    const env = envFor(dir, s3.env(PREFIX));
    const receiver = spawnCli(['wal-receive'], env);
    await receiver.waitForOutput(/starting log streaming at/);

    const r = await cli(['pitr-setup', '--json'], env);
    noSecrets(r, PW);
    const rows = rowsOf(r);
    expect(rows.filter((x) => x.status !== 'ok')).toEqual([]);
    expect(rows.map((x) => x.check)).toEqual([
      'connect',
      'server version',
      'wal_level',
      'max_wal_senders',
      'max_replication_slots',
      'max_slot_wal_keep_size',
      'archive_timeout',
      'REPLICATION',
      'pg_hba replication',
      'replication slot',
      'target local',
      'target s3',
      'WAL receiver',
      'test switch',
    ]);
    expect(row(rows, 'max_slot_wal_keep_size')!.detail).toMatch(/^1GB/);
    expect(row(rows, 'replication slot')!.detail).toContain(`${env.WAL_SLOT_NAME}: a receiver streams from it`);
    expect(row(rows, 'WAL receiver')!.detail).toContain(`(pid ${receiver.child.pid},`);
    const seg = /^([0-9A-F]{24}) reached local, s3 /.exec(row(rows, 'test switch')!.detail)![1]!;
    // the switched segment is on both targets, as the row says
    expect(fs.readdirSync(path.join(dir, 'backups', 'pitr', DB, 'wal')).some((n) => n.startsWith(`${seg}-`))).toBe(true);
    expect((await s3.keys(`${PREFIX}pitr/${DB}/wal/${seg}-`)).length).toBe(1);
    // the set-up printed for this configuration: no restart needed, the role, the slot, the line
    const setup = (JSON.parse(r.stdout) as { setup: string[] }).setup.join('\n');
    expect(setup).toContain(`sudo -u postgres psql -c 'ALTER ROLE ${ROLE} REPLICATION;'`);
    const major = Math.floor(
      Number((await cluster.query<{ server_version_num: string }>('postgres', 'SHOW server_version_num'))[0]!.server_version_num) / 10000,
    );
    expect(setup).toContain(`echo 'host replication ${ROLE} 127.0.0.1/32 scram-sha-256' | sudo tee -a /etc/postgresql/${major}/main/pg_hba.conf`);
    expect(setup).toContain('max_slot_wal_keep_size = 10GB');
    expect(setup).toContain('archive_timeout = 60');
    expect(setup).toContain('sudo systemctl reload postgresql');
    expect(setup).toContain('WAL_RECEIVE is on already');
    receiver.child.kill('SIGTERM');
    expect(await receiver.exited, receiver.output()).toBe(0);
  }, 180_000);

  it('a role without REPLICATION: the row with the exact ALTER ROLE, exit 14; config check shows the same row', async () => {
    const dir = tempDir();
    const env = envFor(dir, await role('shop_norep', ''));
    const r = await runCli(['pitr-setup'], env);
    expect(r.code, r.stdout + r.stderr).toBe(ERROR_CODES.PRIVILEGE.exit);
    expect(r.stdout).toMatch(/│ REPLICATION\s+│ PROBLEM │ shop_norep has neither REPLICATION nor superuser/);
    expect(r.stdout).toContain('fix: As a superuser: ALTER ROLE shop_norep REPLICATION;');
    expect(r.stdout).toContain('First problem: REPLICATION (exit 14).');
    noSecrets(r, 'shop_norep-pw-1');

    const json = rowsOf(await runCli(['pitr-setup', '--json'], env));
    expect(row(json, 'REPLICATION')).toMatchObject({ status: 'fail', code: 'PRIVILEGE', fix: 'As a superuser: ALTER ROLE shop_norep REPLICATION;' });
    // the test switch is not tried while a problem stands
    expect(row(json, 'test switch')).toMatchObject({ status: 'warn', detail: 'not tried: fix "REPLICATION" first' });

    const check = await runCli(['config', 'check'], env);
    expect(check.code).toBe(ERROR_CODES.CONFIG.exit);
    expect(check.stdout).toMatch(/│ PITR REPLICATION\s+│ FAIL\s+│ shop_norep has neither REPLICATION nor superuser/);
    expect(check.stdout).toContain('fix: As a superuser: ALTER ROLE shop_norep REPLICATION;');
  }, 120_000);

  it('no replication line in pg_hba.conf for the role: the row names the exact line, exit 11; config check too', async () => {
    const env = envFor(tempDir(), await role('shop_streamer', 'REPLICATION'));
    const hba = path.join(cluster.dataDir, 'pg_hba.conf');
    const before = fs.readFileSync(hba, 'utf8');
    // replication connections for the superuser only, as many servers have it
    fs.writeFileSync(hba, before.replace(/^(host\s+replication\s+)all(\s)/gm, '$1postgres$2'));
    await cluster.query('postgres', 'SELECT pg_reload_conf()');
    try {
      const r = await runCli(['pitr-setup', '--json'], env);
      expect(r.code, r.stdout + r.stderr).toBe(ERROR_CODES.DB_AUTH.exit);
      noSecrets(r, 'shop_streamer-pw-1');
      const rows = rowsOf(r);
      expect(row(rows, 'REPLICATION')!.status).toBe('ok');
      expect(row(rows, 'pg_hba replication')).toMatchObject({
        status: 'fail',
        code: 'DB_AUTH',
        fix: 'Add to pg_hba.conf (above any broader line): host replication shop_streamer 127.0.0.1/32 scram-sha-256 — then SELECT pg_reload_conf();',
      });
      const check = await runCli(['config', 'check'], env);
      expect(check.code).toBe(ERROR_CODES.CONFIG.exit);
      expect(check.stdout).toContain('host replication shop_streamer 127.0.0.1/32 scram-sha-256');
    } finally {
      fs.writeFileSync(hba, before);
      await cluster.query('postgres', 'SELECT pg_reload_conf()');
    }
  }, 120_000);

  it('no receiver runs: exit 41 (WAL_ARCHIVING) naming how to start it; the test switch is not tried', async () => {
    const env = envFor(tempDir());
    const r = await runCli(['pitr-setup', '--json'], env);
    expect(r.code, r.stdout + r.stderr).toBe(ERROR_CODES.WAL_ARCHIVING.exit);
    const rows = rowsOf(r);
    expect(row(rows, 'WAL receiver')!.detail).toMatch(/^no WAL receiver runs for shop on this machine/);
    expect(row(rows, 'WAL receiver')!.fix).toContain('pm2 restart basement-backup');
    expect(row(rows, 'test switch')).toMatchObject({ status: 'warn', detail: 'not tried: fix "WAL receiver" first' });
  }, 120_000);

  it('a target the receiver does not write to: the switched segment misses it, exit 41 once WAL_PUSH_TIMEOUT_SECONDS passed', async () => {
    const s3 = await bucket();
    const dir = tempDir();
    const env = envFor(dir, { ...s3.env(PREFIX), WAL_PUSH_TIMEOUT_SECONDS: '5' });
    // the daemon's .env is not the one checked: it lacks the S3 target
    const receiver = spawnCli(['wal-receive'], Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('S3_'))));
    await receiver.waitForOutput(/starting log streaming at/);
    const started = Date.now();
    const r = await cli(['pitr-setup', '--json'], env, ERROR_CODES.WAL_ARCHIVING.exit);
    const took = Date.now() - started;
    const rows = rowsOf(r);
    expect(rows.filter((x) => x.status === 'fail').map((x) => x.check)).toEqual(['test switch']);
    expect(row(rows, 'test switch')!.detail).toMatch(/^[0-9A-F]{24} did not reach s3 within WAL_PUSH_TIMEOUT_SECONDS \(5 s\)$/);
    expect(row(rows, 'test switch')!.fix).toContain("Read the receiver's log");
    expect(took).toBeGreaterThanOrEqual(5000);
    receiver.child.kill('SIGTERM');
    expect(await receiver.exited, receiver.output()).toBe(0);
  }, 180_000);

  it('an S3 target that accepts and never answers: its row fails within S3_TIMEOUT_SECONDS (exit 23), and no switch is tried', async () => {
    const s3 = await bucket();
    const env = envFor(tempDir(), { ...s3.env(PREFIX), S3_TIMEOUT_SECONDS: '3' });
    s3.proxy.silence();
    const r = await cli(['pitr-setup', '--json'], env, ERROR_CODES.STORAGE.exit);
    const rows = rowsOf(r);
    expect(row(rows, 'target s3')).toMatchObject({ status: 'fail', code: 'STORAGE' });
    expect(row(rows, 'test switch')!.status).toBe('warn');
  }, 120_000);

  it('a slot the server gave up on (wal_status lost): the row says the archive has a gap and what to do, exit 41', async () => {
    const env = envFor(tempDir());
    const slot = env.WAL_SLOT_NAME!;
    await cluster.query('postgres', 'SELECT pg_create_physical_replication_slot($1, true)', [slot]);
    await cluster.query('postgres', "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    await cluster.query('postgres', 'SELECT pg_reload_conf()');
    try {
      // WAL past the limit, then a checkpoint removes what the slot held
      await waitFor(
        async () => {
          await cluster.query('postgres', 'SELECT txid_current(), pg_switch_wal()');
          await cluster.query('postgres', 'CHECKPOINT');
          const [s] = await cluster.query<{ wal_status: string }>('postgres', 'SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1', [slot]);
          return s?.wal_status === 'lost';
        },
        60_000,
        'the slot to be lost',
      );
      const r = await runCli(['pitr-setup', '--json'], env);
      expect(r.code, r.stdout + r.stderr).toBe(ERROR_CODES.WAL_ARCHIVING.exit);
      const rows = rowsOf(r);
      expect(row(rows, 'replication slot')).toMatchObject({ status: 'fail', code: 'WAL_ARCHIVING' });
      expect(row(rows, 'replication slot')!.detail).toContain(`${slot} is lost`);
      expect(row(rows, 'replication slot')!.fix).toContain('basement-backup basebackup');
      expect(rows.find((x) => x.status === 'fail')!.check).toBe('replication slot');
    } finally {
      await cluster.query('postgres', 'ALTER SYSTEM RESET max_slot_wal_keep_size');
      await cluster.query('postgres', 'SELECT pg_reload_conf()');
    }
  }, 120_000);

  it('--print-only prints the set-up without reaching the server (none listens) and exits 0', async () => {
    const r = await runCli(['pitr-setup', '--print-only'], envFor(tempDir(), { DB_PORT: '1', DB_HOST: 'localhost' }));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`sudo -u postgres psql -d shop -c 'GRANT EXECUTE ON FUNCTION pg_switch_wal() TO ${ROLE};'`);
    expect(r.stdout).toContain(`host replication ${ROLE} 127.0.0.1/32 scram-sha-256`);
    expect(r.stdout).toContain('restart instead if wal_level, max_wal_senders or max_replication_slots changed');
    expect(r.stdout).not.toContain('checked');
  }, 60_000);
});

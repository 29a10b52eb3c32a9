import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, onTestFinished } from 'vitest';
import { classifyLibpqStderr } from '../../src/pg/libpq';
import { grantFromStderr } from '../../src/pg/privileges';
import { backupEnv, backupFiles, listJson, runCli, smtpEnv, tempDir } from '../helpers/cli';
import { createWebserverDb, pgInfo, query } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';

const run = promisify(execFile);

/**
 * A login role with SELECT on every table and sequence of `db` except `except` (names in public),
 * without CREATEDB; dropped when the test finishes.
 */
async function readerRole(db: string, except: string[] = []): Promise<{ role: string; password: string }> {
  const role = `bb_reader_${crypto.randomBytes(4).toString('hex')}`;
  const password = crypto.randomBytes(12).toString('hex');
  await query('postgres', `CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  onTestFinished(async () => {
    await query(db, `DROP OWNED BY ${role}`).catch(() => undefined); // the database may be gone already
    await query('postgres', `DROP ROLE IF EXISTS ${role}`);
  });
  await query(db, `GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}; GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
  for (const name of except) await query(db, `REVOKE SELECT ON public.${name} FROM ${role}`);
  return { role, password };
}

function asRole(env: Record<string, string>, r: { role: string; password: string }): Record<string, string> {
  return { ...env, DB_USER: r.role, DB_PASSWORD: r.password };
}

/** The rows of `config check`'s result table, as "check | result | detail" text per check. */
function checkRow(stdout: string, check: string): string {
  const start = stdout.indexOf(`│ ${check} `);
  expect(start, `no "${check}" row in:\n${stdout}`).toBeGreaterThan(-1);
  const end = stdout.indexOf('├', start);
  return stdout.slice(start, end === -1 ? undefined : end).replace(/[│\s]+/g, ' ');
}

describe('a DB_USER that may not read everything (point 14)', () => {
  it('`backup` fails at once with exit 14 naming each table and sequence and its exact GRANT; after those GRANTs it works', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const sink = await smtpSink();
    const reader = await readerRole(db, ['payments', 'users_id_seq']);
    const env = asRole(backupEnv(db, dir, smtpEnv(sink.port)), reader);

    const r = await runCli(['backup'], env);
    expect(r.code, r.stderr).toBe(14);
    expect(r.stderr).toContain(`the database user lacks a privilege: DB_USER ${reader.role} may not read everything a backup of ${db} needs`);
    expect(r.stderr).toContain('SELECT on table public.payments; SELECT on sequence public.users_id_seq');
    expect(r.stderr).toContain(`GRANT SELECT ON public.payments TO ${reader.role};`);
    expect(r.stderr).toContain(`GRANT SELECT ON SEQUENCE public.users_id_seq TO ${reader.role};`);
    expect(r.stderr).not.toMatch(/pg_dump (failed|exited)/);
    expect(r.stderr).not.toContain(reader.password);
    expect(backupFiles(dir)).toEqual([]);

    const [mail] = await sink.waitFor(1);
    expect(mail!.text).toMatch(/the database user lacks a privilege \(PRIVILEGE\)/);
    expect(mail!.text).toContain(`GRANT SELECT ON public.payments TO ${reader.role};`);

    // the statements printed are exactly what is missing
    const grants = new Set(r.stderr.match(/GRANT SELECT ON [^;]+;/g));
    expect(grants.size).toBe(2);
    for (const g of grants) await query(db, g);
    const again = await runCli(['backup'], env);
    expect(again.code, again.stderr).toBe(0);
  });

  it("pg_dump's own refusal maps to PRIVILEGE with the GRANT for the table it names (the fallback)", async () => {
    const db = await createWebserverDb(5);
    const reader = await readerRole(db, ['servers']);
    const info = pgInfo();
    const dumped = await run(path.join(info.binDir, 'pg_dump'), ['--no-password', '--format=custom', '--file=/dev/null'], {
      env: { PATH: process.env.PATH, PGHOST: info.host, PGPORT: String(info.port), PGUSER: reader.role, PGPASSWORD: reader.password, PGDATABASE: db },
    }).then(
      () => '',
      (err: { stderr: string }) => err.stderr,
    );
    expect(dumped).toMatch(/permission denied for table servers/);
    expect(classifyLibpqStderr(dumped)).toBe('PRIVILEGE');
    expect(grantFromStderr(dumped, reader.role)).toBe(`GRANT SELECT ON public.servers TO ${reader.role};`);
  });
});

describe('a DB_USER without CREATEDB (point 13)', () => {
  it('`verify` exits 14 naming CREATEDB, shows the checksum as not checked, records the drill as PRIVILEGE without marking the backup damaged', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const sink = await smtpSink();
    const reader = await readerRole(db);
    const env = asRole(backupEnv(db, dir, smtpEnv(sink.port)), reader);
    const b = await runCli(['backup'], env);
    expect(b.code, b.stderr).toBe(0);

    const v = await runCli(['verify'], env);
    expect(v.code, v.stdout + v.stderr).toBe(14);
    expect(v.stdout).toMatch(/checksum\s+│\s+not checked/);
    expect(v.stdout).not.toContain('BAD');
    expect(v.stdout).toContain(`FAILED: ${reader.role} may not create databases on`);
    expect(v.stdout.replace(/[│\s]+/g, ' ')).toContain(`ALTER ROLE ${reader.role} CREATEDB; or set VERIFY_DB_HOST, VERIFY_DB_USER and VERIFY_DB_PASSWORD`);

    const listed = await listJson<{ state: string; verification: Record<string, unknown> }>(env);
    expect(listed).toHaveLength(1);
    expect(listed[0]!.state).toBe('ok');
    expect(listed[0]!.verification).toMatchObject({ ok: false, checksum_ok: null, error_code: 'PRIVILEGE' });
    const status = await runCli(['status'], env);
    expect(status.stdout).toMatch(/last restore drill\s+│\s+FAILED \(PRIVILEGE\)/);

    const [mail] = await sink.waitFor(1);
    expect(mail!.subject).toMatch(/PROBLEM: Restore drill of backup .* failed/);
    expect(mail!.text).toContain(`the database user lacks a privilege (PRIVILEGE): ${reader.role} may not create databases`);
    expect(mail!.text).toContain(`ALTER ROLE ${reader.role} CREATEDB;`);

    // `restore` says the same
    const r = await runCli(['restore'], env);
    expect(r.code, r.stderr).toBe(14);
    expect(r.stderr).toContain(`ALTER ROLE ${reader.role} CREATEDB;`);

    // with the privilege, the same backup passes its drill
    await query('postgres', `ALTER ROLE ${reader.role} CREATEDB`);
    const ok = await runCli(['verify'], env);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/checksum\s+│\s+ok/);
  });
});

describe('a drill server where the drill user may not create what the backup holds (point 13)', () => {
  it('an extension only a superuser may create: exit 14 PRIVILEGE, recorded, the backup not damaged', async () => {
    const db = await createWebserverDb(5);
    await query(db, 'CREATE EXTENSION file_fdw'); // untrusted: only a superuser may create it
    const dir = tempDir();
    const reader = await readerRole(db);
    await query('postgres', `ALTER ROLE ${reader.role} CREATEDB`);
    const env = backupEnv(db, dir); // backups as the superuser, drills as a user that may only create databases
    const b = await runCli(['backup'], env);
    expect(b.code, b.stderr).toBe(0);

    const v = await runCli(['verify', '--json'], { ...env, VERIFY_DB_USER: reader.role, VERIFY_DB_PASSWORD: reader.password });
    expect(v.code, v.stdout + v.stderr).toBe(14);
    const result = JSON.parse(v.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({ ok: false, error_code: 'PRIVILEGE' });
    expect(result.error).toMatch(/pg_restore could not restore into "bb_verify_[^"]+" on [\d.]+:\d+: .*permission denied to create extension "file_fdw"/);
    const listed = await listJson<{ state: string }>(env);
    expect(listed[0]!.state).toBe('ok');
  });
});

describe('`config check` checks privileges (point 13)', () => {
  it('FAIL for a table pg_dump may not read, WARN for CREATEDB, each with the exact statement; ok for a superuser', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const reader = await readerRole(db, ['domains']);
    const env = backupEnv(db, dir);

    const bad = await runCli(['config', 'check'], asRole(env, reader));
    expect(bad.code, bad.stdout + bad.stderr).toBe(2);
    const dump = checkRow(bad.stdout, 'privileges for backups');
    expect(dump).toContain('FAIL');
    expect(dump).toContain('SELECT on table public.domains');
    expect(dump).toContain(`GRANT SELECT ON public.domains TO ${reader.role};`);
    const create = checkRow(bad.stdout, 'create databases (drills, restore)');
    expect(create).toContain('WARN');
    expect(create).toContain(`ALTER ROLE ${reader.role} CREATEDB;`);

    // drills on another server (here: as the superuser) are checked there; restore stays a WARN
    const split = await runCli(['config', 'check'], { ...asRole(env, reader), VERIFY_DB_USER: pgInfo().user, VERIFY_DB_PASSWORD: pgInfo().password });
    expect(checkRow(split.stdout, 'create databases (drills)')).toMatch(/ ok .* may create databases on/);
    expect(checkRow(split.stdout, 'create databases (restore)')).toContain(`WARN ${reader.role} may not create databases`);

    const good = await runCli(['config', 'check'], env);
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(checkRow(good.stdout, 'privileges for backups')).toMatch(/ ok .* may read every table, sequence and large object/);
    expect(checkRow(good.stdout, 'create databases (drills, restore)')).toMatch(/ ok /);
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { describe, expect, it, onTestFinished } from 'vitest';
import { parseConfig } from '../../src/config';
import { ConfigError, type BackupError } from '../../src/errors';
import type { SessionDiagnosis } from '../../src/pg/activity';
import { grantStatements, sqlRole, type MissingPrivilege } from '../../src/pg/privileges';
import { formatWait, watchForStall } from '../../src/pg/watchdog';

const BASE = { DB_NAME: 'webserver_db' };

function child(script: string): ChildProcess {
  const c = spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  c.stdout.resume();
  c.stderr.resume();
  onTestFinished(() => {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  return c;
}

function exited(c: ChildProcess): Promise<NodeJS.Signals | null> {
  return new Promise((resolve) => c.once('exit', (_code, signal) => resolve(signal)));
}

describe('BACKUP_STALL_MINUTES', () => {
  it('defaults to 30 minutes and takes decimals', () => {
    expect(parseConfig(BASE, '/').stallMs).toBe(30 * 60_000);
    expect(parseConfig({ ...BASE, BACKUP_STALL_MINUTES: '0.05' }, '/').stallMs).toBe(3000);
    expect(parseConfig({ ...BASE, BACKUP_STALL_MINUTES: '90' }, '/').stallMs).toBe(90 * 60_000);
  });

  it.each(['0', '-5', 'abc', '30m', '1e3', '99999'])('rejects "%s" naming the variable and the fix', (value) => {
    let err: unknown;
    try {
      parseConfig({ ...BASE, BACKUP_STALL_MINUTES: value }, '/');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.variable).toBe('BACKUP_STALL_MINUTES');
    expect(e.message).toContain(`"${value}" is not a number above 0`);
    expect(e.hint).toMatch(/Set BACKUP_STALL_MINUTES to .*e\.g\. 30 .*0\.5 is 30 seconds/);
  });
});

describe('watchForStall (real child processes)', () => {
  it('stops a silent child after the stall time with STALLED, saying what it waited for', async () => {
    const c = child('sleep 30');
    let stalled: BackupError | undefined;
    const started = Date.now();
    watchForStall(c, {
      program: 'pg_dump',
      stallMs: 400,
      diagnose: () => Promise.resolve({ busy: false, waitingFor: 'a lock on public.users held by pid 42 (…)', blockerPid: 42 }),
      onStall: (e) => (stalled = e),
    });
    expect(await exited(c)).toBe('SIGTERM');
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    expect(stalled?.code).toBe('STALLED');
    expect(stalled?.message).toMatch(/^pg_dump waited \d s for a lock on public\.users held by pid 42/);
    expect(stalled?.hint).toContain('pg_terminate_backend(42)');
    expect(stalled?.hint).toContain('BACKUP_STALL_MINUTES');
  });

  it('leaves a child alone while it writes, however long it runs', async () => {
    const c = child('i=0; while [ $i -lt 20 ]; do echo x; sleep 0.1; i=$((i+1)); done');
    let stalled: BackupError | undefined;
    watchForStall(c, { program: 'pg_restore', stallMs: 500, onStall: (e) => (stalled = e) });
    expect(await exited(c)).toBeNull();
    expect(stalled).toBeUndefined();
  });

  it('a silent child whose server is still executing its statement is not a stall; once the server waits, it is', async () => {
    const c = child('sleep 30');
    let stalled: BackupError | undefined;
    let asked = 0;
    const diagnose = (): Promise<SessionDiagnosis> =>
      Promise.resolve(++asked < 3 ? { busy: true } : { busy: false, seen: 'its session on the server is idle, waiting for pg_restore' });
    watchForStall(c, { program: 'pg_restore', stallMs: 300, diagnose, onStall: (e) => (stalled = e) });
    expect(await exited(c)).toBe('SIGTERM');
    expect(asked).toBe(3);
    expect(stalled?.message).toMatch(/^pg_restore made no progress for \d s: its session on the server is idle/);
  });

  it('a server that does not answer the question is a stall too', async () => {
    const c = child('sleep 30');
    let stalled: BackupError | undefined;
    watchForStall(c, { program: 'psql', stallMs: 300, diagnose: () => Promise.reject(new Error('no answer within 15 s')), onStall: (e) => (stalled = e) });
    expect(await exited(c)).toBe('SIGTERM');
    expect(stalled?.message).toMatch(/psql made no progress for \d s: the server did not say what it waits for \(no answer within 15 s\)/);
  });

  it('formats waits in seconds, then minutes', () => {
    expect(formatWait(3000)).toBe('3 s');
    expect(formatWait(30 * 60_000)).toBe('30 min');
    expect(formatWait(90 * 60_000 + 30_000)).toBe('90.5 min');
  });
});

describe('grantStatements', () => {
  const m = (kind: MissingPrivilege['kind'], name: string, schema = 'public'): MissingPrivilege => ({ kind, name, schema });

  it('one GRANT per object, schema-wide for many, quoting the role where needed', () => {
    expect(sqlRole('backup')).toBe('backup');
    expect(sqlRole('Backup-User')).toBe('"Backup-User"');
    const many = ['a', 'b', 'c', 'd'].map((t) => m('table', `app.${t}`, 'app'));
    expect(grantStatements([m('schema', 'app', 'app'), ...many, m('table', 'public.users'), m('sequence', 'public.users_id_seq')], 'Backup-User')).toEqual([
      'GRANT USAGE ON SCHEMA app TO "Backup-User";',
      'GRANT SELECT ON ALL TABLES IN SCHEMA app TO "Backup-User";',
      'GRANT SELECT ON public.users TO "Backup-User";',
      'GRANT SELECT ON SEQUENCE public.users_id_seq TO "Backup-User";',
    ]);
    expect(grantStatements([m('row security', 'public.docs'), m('large object', '16401', '')], 'backup')).toEqual([
      'ALTER ROLE backup BYPASSRLS;',
      'GRANT SELECT ON LARGE OBJECT 16401 TO backup;',
    ]);
  });
});

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config';
import { ConfigError } from '../../src/errors';
import type { SessionDiagnosis } from '../../src/pg/activity';
import { libpqEnv } from '../../src/pg/libpq';
import { grantStatements, sqlRole, type MissingPrivilege } from '../../src/pg/privileges';
import { outputOf, programPipeStage, runProgram, type ProgramOptions, type Program } from '../../src/pg/program';
import { clearSecrets, registerSecret } from '../../src/redact';
import { formatWait } from '../../src/util/format';

const BASE = { DB_NAME: 'webserver_db' };

/** A shell script run as if it were the PostgreSQL program `name`, with only PATH in its environment. */
function child(script: string, o: Partial<ProgramOptions> = {}): Program {
  const p = runProgram({ name: 'pg_dump', file: 'sh', args: ['-c', script], env: { PATH: process.env.PATH ?? '' }, ...o });
  p.stdout.resume();
  onTestFinished(async () => {
    p.stop();
    await p.exited;
  });
  return p;
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

describe('runProgram: the stall watch (real child processes)', () => {
  it('stops a silent child after the stall time with STALLED, saying what it waited for', async () => {
    const started = Date.now();
    const c = child('exec sleep 30', {
      name: 'pg_dump',
      stall: { ms: 400, diagnose: () => Promise.resolve({ busy: false, waitingFor: 'a lock on public.users held by pid 42 (…)', blockerPid: 42 }) },
    });
    const exit = await c.exited;
    expect(exit.signal).toBe('SIGTERM');
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    const stalled = exit.stalled;
    expect(stalled?.code).toBe('STALLED');
    expect(stalled?.message).toMatch(/^pg_dump waited \d s for a lock on public\.users held by pid 42/);
    expect(stalled?.hint).toContain('pg_terminate_backend(42)');
    expect(stalled?.hint).toContain('BACKUP_STALL_MINUTES');
    expect(c.stalled.aborted).toBe(true);
    expect(c.stalled.reason).toBe(stalled);
  });

  it('leaves a child alone while it writes, however long it runs', async () => {
    const c = child('i=0; while [ $i -lt 20 ]; do echo x; sleep 0.1; i=$((i+1)); done', { name: 'pg_restore', stall: { ms: 500 } });
    const exit = await c.exited;
    expect(exit.signal).toBeNull();
    expect(exit.stalled).toBeUndefined();
  });

  it('a silent child whose server is still executing its statement is not a stall; once the server waits, it is', async () => {
    let asked = 0;
    const diagnose = (): Promise<SessionDiagnosis> =>
      Promise.resolve(++asked < 3 ? { busy: true } : { busy: false, seen: 'its session on the server is idle, waiting for pg_restore' });
    const c = child('exec sleep 30', { name: 'pg_restore', stall: { ms: 300, diagnose } });
    const exit = await c.exited;
    expect(exit.signal).toBe('SIGTERM');
    expect(asked).toBe(3);
    expect(exit.stalled?.message).toMatch(/^pg_restore made no progress for \d s: its session on the server is idle/);
  });

  it('a server that does not answer the question is a stall too', async () => {
    const c = child('exec sleep 30', { name: 'psql', stall: { ms: 300, diagnose: () => Promise.reject(new Error('no answer within 15 s')) } });
    const exit = await c.exited;
    expect(exit.signal).toBe('SIGTERM');
    expect(exit.stalled?.message).toMatch(/psql made no progress for \d s: the server did not say what it waits for \(no answer within 15 s\)/);
  });

  it('bytes the caller reports count as progress', async () => {
    const c = child('sleep 1.5', { name: 'pg_restore', stall: { ms: 400 } });
    const feeding = setInterval(() => c.progress(1), 50);
    const exit = await c.exited;
    clearInterval(feeding);
    expect(exit).toMatchObject({ code: 0, signal: null, stalled: undefined });
  });

  it('formats waits in seconds, then minutes', () => {
    expect(formatWait(3000)).toBe('3 s');
    expect(formatWait(30 * 60_000)).toBe('30 min');
    expect(formatWait(90 * 60_000 + 30_000)).toBe('90.5 min');
  });
});

describe('runProgram (real child processes)', () => {
  it('gives the child exactly the environment it is given, nothing of ours', async () => {
    const c = child('env', { env: { PATH: process.env.PATH ?? '', PGHOST: 'db.example' } });
    const { code, stdout } = await outputOf(c);
    expect(code).toBe(0);
    const names = stdout
      .trim()
      .split('\n')
      .map((l) => l.slice(0, l.indexOf('=')))
      .filter((n) => !['PWD', 'SHLVL', '_', 'OLDPWD'].includes(n)); // the shell's own
    expect(names.sort()).toEqual(['PATH', 'PGHOST']);
  });

  it('keeps the last 20 stderr lines, redacted, and picks the first error line', async () => {
    registerSecret('hunter2-secret');
    onTestFinished(() => clearSecrets());
    const script =
      'i=0; while [ $i -lt 30 ]; do echo "pg_dump: line $i" >&2; i=$((i+1)); done; echo "pg_dump: error: password hunter2-secret refused" >&2; echo "pg_dump: detail" >&2; exit 3';
    const seen: string[] = [];
    const c = child(script, { onStderr: (l) => seen.push(l) });
    const exit = await c.exited;
    expect(exit).toMatchObject({ code: 3, signal: null, timedOut: false });
    expect(seen).toHaveLength(32);
    expect(c.tail).toHaveLength(20);
    expect(c.tail[0]).toBe('pg_dump: line 12');
    expect(c.firstError()).toBe('pg_dump: error: password *** refused');
    expect(c.withoutName(c.firstError()!)).toBe('password *** refused');
    expect(c.tail.join('\n')).not.toContain('hunter2');
  });

  it('without an error line names the last line; `keep` leaves chatter out of the tail', async () => {
    const c = child('echo "pg_restore: creating TABLE x" >&2; echo "pg_restore: something odd" >&2; echo "pg_restore: finished" >&2; exit 1', {
      name: 'pg_restore',
      keep: (l) => !/^pg_restore: (creating|finished)/.test(l),
    });
    await c.exited;
    expect(c.tail).toEqual(['pg_restore: something odd']);
    expect(c.firstError()).toBe('pg_restore: something odd');
  });

  it('a program that cannot be started ends with its error, not a throw', async () => {
    const c = runProgram({ name: 'psql', file: '/nonexistent/psql', args: [], env: {} });
    const exit = await c.exited;
    expect(exit.error?.message).toMatch(/ENOENT/);
    expect(exit.code).toBeNull();
  });

  it('feeds stdin, and swallows what the program no longer reads', async () => {
    const c = child('head -c 5', { input: true });
    const output = outputOf(c);
    for (let i = 0; i < 100; i++) c.stdin.write(Buffer.alloc(64 * 1024, 'a'));
    await new Promise<void>((resolve, reject) => c.stdin.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const { code, stdout } = await output;
    expect(code).toBe(0);
    expect(stdout).toBe('aaaaa');
  });

  it('stops the program with SIGTERM when the signal fires', async () => {
    const abort = new AbortController();
    const c = child('exec sleep 30', { signal: abort.signal });
    setTimeout(() => abort.abort(), 100);
    expect(await c.exited).toMatchObject({ code: null, signal: 'SIGTERM', timedOut: false, stalled: undefined });
  });

  it('stops the program when its time is up', async () => {
    const c = child('exec sleep 30', { timeoutMs: 200 });
    expect(await c.exited).toMatchObject({ signal: 'SIGTERM', timedOut: true });
  });

  it('outputOf stops a program that writes more than it may', async () => {
    const c = child('exec yes');
    const { error, signal, stdout } = await outputOf(c, 100_000);
    expect(error?.message).toBe('more than 100000 characters of output');
    expect(signal).toBe('SIGTERM');
    expect(stdout.length).toBeGreaterThan(100_000);
  });
});

describe('programPipeStage: one program reads another’s output directly (real child processes)', () => {
  const env = { PATH: process.env.PATH ?? '' };
  const failure = (tail: string) => new Error(`cat failed: ${tail}`);

  it('the bytes pass from one to the other without this process: the reader’s stdin is the writer’s stdout', async () => {
    const { stage, output } = programPipeStage({ name: 'cat', file: 'cat', env }, [], failure);
    // the reader says which pipe its stdin is, then counts what arrives
    const reader = child('readlink /proc/self/fd/0; wc -c', { inputFrom: output });
    const said = outputOf(reader);
    const chunk = Buffer.alloc(64 * 1024, 'x');
    for (let i = 0; i < 64; i++) stage.write(chunk);
    stage.end();
    let passedHere = 0;
    stage.on('data', (b: Buffer) => (passedHere += b.length));
    await new Promise<void>((resolve, reject) => stage.once('end', resolve).once('error', reject));
    const { code, stdout } = await said;
    expect(code).toBe(0);
    const [pipe, count] = stdout.trim().split('\n');
    expect(pipe).toMatch(/^(pipe|socket):\[\d+\]$/); // libuv's pipes are socket pairs
    expect(Number(count)).toBe(64 * 64 * 1024);
    expect(passedHere).toBe(0);
  });

  it('a reader that stops early ends the stage quietly (SIGPIPE, or a reset of the socket pair): the reader’s exit says whether it had enough', async () => {
    const { stage, output } = programPipeStage({ name: 'cat', file: 'cat', env }, [], failure);
    const reader = child('head -c 5 >/dev/null', { inputFrom: output });
    const chunk = Buffer.alloc(64 * 1024, 'x');
    stage.resume();
    const ended = new Promise<void>((resolve, reject) => stage.once('end', resolve).once('error', reject));
    for (let i = 0; i < 200; i++) stage.write(chunk);
    stage.end();
    await ended;
    expect((await reader.exited).code).toBe(0);
  });

  it('a writer that fails fails the stage with its own words', async () => {
    const { stage, output } = programPipeStage(
      { name: 'sh', file: 'sh', env },
      ['-c', 'echo "sh: broken input" >&2; exit 3'],
      (tail) => new Error(`failed: ${tail}`),
    );
    const reader = child('cat >/dev/null', { inputFrom: output });
    stage.resume();
    stage.end();
    await expect(new Promise((resolve, reject) => stage.once('end', resolve).once('error', reject))).rejects.toThrow('failed: broken input');
    expect((await reader.exited).code).toBe(0);
  });
});

describe('the environment a program starts from (Settings.childEnv)', () => {
  it('is the allow-listed part of the process environment: no secret, no PG*, nothing from env files', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-childenv-'));
    onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'app.env'), 'DB_NAME=app\nTZ=Europe/Berlin\nLANG=de_DE.UTF-8\n');
    const processEnv = {
      PATH: '/opt/pg/bin:/usr/bin',
      HOME: '/home/backup',
      LC_ALL: 'C',
      SMTP_USER: 'mail',
      SMTP_PASSWORD: 'x',
      PGHOST: 'elsewhere',
      LD_PRELOAD: '/tmp/evil.so',
      PM2_HOME: '/home/backup/.pm2',
    };
    const { config } = loadConfig(['app.env'], processEnv, dir);
    expect(config.childEnv).toEqual({ PATH: '/opt/pg/bin:/usr/bin', HOME: '/home/backup', LC_ALL: 'C' });
    // pm2 (restore --app) also needs to know which pm2 daemon to talk to
    expect(config.pm2Env).toEqual({ ...config.childEnv, PM2_HOME: '/home/backup/.pm2' });
    // a library that reads our environment itself is set up here, not where it is used
    expect(processEnv).toHaveProperty('AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED', 'true');
  });

  it('libpqEnv adds the connection settings to it, password included, and keeps nothing else of ours', () => {
    const config = parseConfig({ DB_NAME: 'app', DB_HOST: 'db.internal', DB_PASSWORD: 'pw' }).databases[0]!;
    const env = libpqEnv(config.db, { PATH: '/usr/bin', SMTP_PASSWORD: 'x', PGHOST: 'elsewhere' }, 'app_copy', 'basement-backup drill');
    expect(env).toEqual({
      PATH: '/usr/bin',
      PGHOST: 'db.internal',
      PGPORT: '5432',
      PGUSER: config.db.user,
      PGDATABASE: 'app_copy',
      PGPASSWORD: 'pw',
      PGCONNECT_TIMEOUT: String(config.db.connectTimeoutSeconds),
      PGAPPNAME: 'basement-backup drill',
    });
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

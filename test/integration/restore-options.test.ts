import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { backupEnv, listJson, runCli, tempDir } from '../helpers/cli';
import { createTestDb, createWebserverDb, pgInfo, query } from '../helpers/pg';
import { generateIdentity } from '../../src/crypto/age';
import { startS3 } from '../helpers/s3';
import { backup, cleanUp, contents, databases, printedCounts, restoredInto, rowCount, type Server, sql, STAMP, userTables } from '../helpers/restore';

// restore --table and --dry-run, split from restore.test.ts so the two halves run in parallel.

describe('restore --table', () => {
  it('brings back rows deleted by accident in a side database holding only that table', async () => {
    const main = pgInfo();
    const db = await createTestDb('tables');
    cleanUp(main, db);
    await query(
      db,
      `CREATE SCHEMA audit;
       CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, profile jsonb, created_at timestamptz NOT NULL DEFAULT now());
       CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL, total numeric(10,2));
       CREATE TABLE audit.users (id int, note text);
       CREATE TABLE audit.events (id int, what text);
       INSERT INTO users SELECT g, 'u' || g || '@example.test', jsonb_build_object('n', g, 'tags', ARRAY['a', 'b']), now() - g * interval '1 hour 1 microsecond' FROM generate_series(1, 30) g;
       INSERT INTO orders SELECT g, 1 + g % 30, g * 1.25 FROM generate_series(1, 50) g;
       INSERT INTO audit.users SELECT g, 'audit ' || g FROM generate_series(1, 5) g;
       INSERT INTO audit.events SELECT g, 'event ' || g FROM generate_series(1, 12) g;`,
    );
    const env = backupEnv(db, tempDir());
    const usersAtBackup = (await contents(main, db))['public.users'];
    await backup(env);

    // The accident, while the application goes on writing.
    await query(db, `DELETE FROM users WHERE id % 3 = 0; INSERT INTO users (id, email) VALUES (100, 'new@example.test')`);
    expect(await rowCount(main, db, 'users')).toBe(21);

    const r = await runCli(['restore', '--table', 'public.users'], env);
    expect(r.code, r.stderr).toBe(0);
    const side = restoredInto(r);
    expect(side).toMatch(new RegExp(`^${db}_tables_${STAMP}$`));
    expect(printedCounts(r.stdout)).toEqual({ 'public.users': ['30', '30', 'ok'] });
    expect(await userTables(main, side)).toEqual(['public.users']);
    expect((await contents(main, side))['public.users']).toBe(usersAtBackup);

    // Copy the deleted rows back with an ordinary client: read them from the side database, insert into the live one.
    const lost = await sql<{ id: number; email: string; profile: string; created_at: string }>(
      main,
      side,
      `SELECT id, email, profile::text AS profile, created_at::text AS created_at FROM users s WHERE id % 3 = 0 ORDER BY id`,
    );
    expect(lost).toHaveLength(10);
    const client = new pg.Client({ host: main.host, port: main.port, user: main.user, password: main.password, database: db });
    await client.connect();
    try {
      for (const row of lost)
        await client.query('INSERT INTO users (id, email, profile, created_at) VALUES ($1, $2, $3, $4)', [row.id, row.email, row.profile, row.created_at]);
    } finally {
      await client.end();
    }
    expect(await rowCount(main, db, 'users')).toBe(31);
    const [recovered] = await sql<{ h: string }>(main, db, `SELECT md5(string_agg(x::text, E'\\n' ORDER BY x::text)) AS h FROM users x WHERE id <> 100`);
    const [original] = await sql<{ h: string }>(main, side, `SELECT md5(string_agg(x::text, E'\\n' ORDER BY x::text)) AS h FROM users x`);
    expect(recovered!.h).toBe(original!.h);

    // A bare name means the table in public, not audit.users.
    const bare = await runCli(['restore', '--table', 'users', '--target-db', `${db}_bare`], env);
    expect(bare.code, bare.stderr).toBe(0);
    expect(await userTables(main, `${db}_bare`)).toEqual(['public.users']);
    expect((await contents(main, `${db}_bare`))['public.users']).toBe(usersAtBackup);

    // Tables from two schemas: exactly those two (not audit.users, not public.events).
    const two = await runCli(['restore', '--table', 'audit.events', '--table', 'public.users', '--target-db', `${db}_two`], env);
    expect(two.code, two.stderr).toBe(0);
    expect(printedCounts(two.stdout)).toEqual({ 'audit.events': ['12', '12', 'ok'], 'public.users': ['30', '30', 'ok'] });
    expect(await userTables(main, `${db}_two`)).toEqual(['audit.events', 'public.users']);

    // A table the backup does not have.
    const dbsBefore = await databases(main, db);
    const missing = await runCli(['restore', '--table', 'public.nope'], env);
    expect(missing.code, missing.stderr).toBe(30);
    expect(missing.stderr).toContain('table public.nope is not in backup');
    expect(missing.stderr).toMatch(/fix: Tables in it: .*public\.users/);
    expect(await databases(main, db)).toEqual(dbsBefore);
  });
});

describe('restore --dry-run', () => {
  /** Runs a printed script the way the README says: `bash -euo pipefail FILE`, with nothing of this process's environment but PATH and HOME. */
  async function runScript(script: string, cwd: string): Promise<{ code: number | null; output: string }> {
    const file = path.join(cwd, 'restore.sh');
    fs.writeFileSync(file, script, { mode: 0o600 });
    return new Promise((resolve, reject) => {
      const child = spawn('bash', ['-euo', 'pipefail', file], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root' } });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, output });
      });
    });
  }

  /** The settings as the README has them: the database in the app's env file, the password only there. */
  function envWithFile(dir: string, server: Server, db: string, extra: Record<string, string> = {}): Record<string, string> {
    const file = path.join(dir, 'server-ui.env');
    const lines = { DB_HOST: server.host, DB_PORT: String(server.port), DB_USER: server.user, DB_PASSWORD: server.password, DB_NAME: db, ...extra };
    fs.writeFileSync(
      file,
      Object.entries(lines)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
      { mode: 0o600 },
    );
    return backupEnv(db, dir, {
      DB_HOST: undefined,
      DB_PORT: undefined,
      DB_USER: undefined,
      DB_PASSWORD: undefined,
      DB_NAME: undefined,
      BACKUP_ENV_FILE: file,
    });
  }

  it('prints the plan and the exact commands for this server; run by bash, they restore the backup', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(12);
    cleanUp(main, db);
    const dir = tempDir();
    const env = envWithFile(dir, main, db);
    const atBackup = await contents(main, db);
    const id = await backup(env);
    const [m] = await listJson<{ sha256: string; file: string }>(env);
    await query(db, `DELETE FROM session; INSERT INTO users (email, password_hash) VALUES ('late@example.test', 'x')`);
    const live = await contents(main, db);
    const dbsBefore = await databases(main, db);

    const r = await runCli(['restore', '--dry-run'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^# basement-backup restore --dry-run: nothing was changed\. The plan:\n# {3}Restore backup /);
    const target = new RegExp(`into the new database "(${db}_restored_${STAMP})"\\. "${db}" is not touched\\.`).exec(r.stdout)?.[1];
    expect(target, r.stdout).toBeDefined();
    expect(r.stdout).toContain(`Restore backup ${id} (`);
    expect(r.stdout).toContain(`-h ${main.host} -p ${main.port} -U ${main.user}`);
    expect(r.stdout).toContain(`echo '${m!.sha256}  ${m!.file}' | sha256sum -c -`);
    expect(r.stdout).toContain(`DB_PASSWORD from ${path.join(dir, 'server-ui.env')}`);
    expect(r.stdout).not.toContain(main.password);
    expect(r.stdout).not.toContain('localhost');
    // nothing was changed, and no lock is left behind
    expect(await databases(main, db)).toEqual(dbsBefore);
    expect(await contents(main, db)).toEqual(live);

    const ran = await runScript(r.stdout, dir);
    expect(ran.code, ran.output).toBe(0);
    expect(ran.output).toContain(`${m!.file}: OK`);
    expect(await contents(main, target!)).toEqual(atBackup);
    expect(await contents(main, db)).toEqual(live);

    // --table: the commands restore just that table, as restore --table does
    const t = await runCli(['restore', '--table', 'users', '--dry-run'], env);
    expect(t.code, t.stderr).toBe(0);
    const side = new RegExp(`into the new database "(${db}_tables_${STAMP})"`).exec(t.stdout)?.[1];
    const ranTables = await runScript(t.stdout, dir);
    expect(ranTables.code, ranTables.output).toBe(0);
    expect(await userTables(main, side!)).toEqual(['public.users']);
    expect((await contents(main, side!))['public.users']).toBe(atBackup['public.users']);

    // A damaged file fails the printed check, and nothing after it runs.
    const bytes = fs.readFileSync(m!.file);
    const middle = Math.floor(bytes.length / 2);
    bytes.writeUInt8(bytes.readUInt8(middle) ^ 0xff, middle);
    fs.writeFileSync(m!.file, bytes);
    const again = await runCli(['restore', '--dry-run', '--target-db', `${db}_third`], env);
    expect(again.code, again.stderr).toBe(0);
    const failed = await runScript(again.stdout, dir);
    expect(failed.code).not.toBe(0);
    expect(failed.output).toContain(`${m!.file}: FAILED`);
    expect(await databases(main, `${db}_third`)).toEqual([]);
  });

  it('plain format with --replace: the printed switch makes the backup live and keeps the old database', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(9);
    cleanUp(main, db);
    const dir = tempDir();
    const env = envWithFile(dir, main, db, { BACKUP_FORMAT: 'plain' });
    const atBackup = await contents(main, db);
    await backup(env);
    await query(db, `DELETE FROM support_tickets`);
    const live = await contents(main, db);

    const r = await runCli(['restore', '--replace', '--dry-run'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`make it the live database "${db}"`);
    const previous = new RegExp(`The current "${db}" will be kept as "(${db}_before_restore_${STAMP})"\\.`).exec(r.stdout)?.[1];
    expect(previous, r.stdout).toBeDefined();
    expect(r.stdout).toMatch(/zstd -dc \S+\.sql\.zst \| \S*psql -X -q -v ON_ERROR_STOP=1 /);
    expect(await databases(main, db)).toEqual([db]);

    const ran = await runScript(r.stdout, dir);
    expect(ran.code, ran.output).toBe(0);
    expect(await contents(main, db)).toEqual(atBackup);
    expect(await contents(main, previous!)).toEqual(live);
  });

  it.skipIf(spawnSync('aws', ['--version']).status !== 0)('from a bucket: the commands fetch the file with aws-cli, check and restore it', async () => {
    const s3 = await startS3();
    onTestFinished(() => s3.close());
    const main = pgInfo();
    const db = await createWebserverDb(7);
    cleanUp(main, db);
    const dir = tempDir();
    const env = envWithFile(dir, main, db, { ...s3.env('basement/'), BACKUP_LOCAL: 'false' });
    const atBackup = await contents(main, db);
    await backup(env);

    const r = await runCli(['restore', '--dry-run'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`aws s3 cp --only-show-errors --endpoint-url ${s3.endpoint} --region us-east-1 s3://${s3.bucket}/basement/${db}_`);
    expect(r.stdout).toContain('S3_SECRET_ACCESS_KEY from');
    expect(r.stdout).not.toContain('S3RVER');
    const target = new RegExp(`into the new database "(${db}_restored_${STAMP})"`).exec(r.stdout)?.[1];
    const work = tempDir();
    const ran = await runScript(r.stdout, work);
    expect(ran.code, ran.output).toBe(0);
    expect(ran.output).toMatch(/\.dump\.zst: OK/);
    expect(await contents(main, target!)).toEqual(atBackup);
  });

  it('an encrypted backup: the commands decrypt it with age and the identity (into the working directory), then restore it', async () => {
    const main = pgInfo();
    const db = await createWebserverDb(8);
    cleanUp(main, db);
    const dir = tempDir();
    const key = await generateIdentity();
    const keyFile = path.join(dir, 'key.txt');
    fs.writeFileSync(keyFile, `${key.secret}\n`, { mode: 0o600 });
    const env = { ...envWithFile(dir, main, db), BACKUP_AGE_RECIPIENTS: key.publicKey, BACKUP_AGE_IDENTITY_FILE: keyFile };
    const atBackup = await contents(main, db);
    await backup(env);
    const [m] = await listJson<{ file: string }>(env);
    const r = await runCli(['restore', '--dry-run'], env);
    expect(r.code, r.stderr).toBe(0);
    const plainCopy = `./${path.basename(m!.file, '.age')}`;
    const archive = `./${path.basename(m!.file, '.zst.age')}`;
    expect(r.stdout).toContain(`(umask 077 && age -d -i ${keyFile} -o ${plainCopy} ${m!.file})`);
    expect(r.stdout).toContain(`(umask 077 && zstd -q -d -o ${archive} ${plainCopy})`);
    const target = new RegExp(`into the new database "(${db}_restored_${STAMP})"`).exec(r.stdout)?.[1];
    const ran = await runScript(r.stdout, dir);
    expect(ran.code, ran.output).toBe(0);
    expect(await contents(main, target!)).toEqual(atBackup);
    // the decrypted copy is removed again, and none was ever written beside the backups
    expect(fs.existsSync(path.join(dir, plainCopy))).toBe(false);
    expect(fs.existsSync(path.join(dir, archive))).toBe(false);
    expect(fs.readdirSync(path.dirname(m!.file)).filter((f) => /\.dump(\.zst)?$/.test(f))).toEqual([]);
  });

  /** `command` run by sh on a terminal of its own (util-linux `script`); `answer` is typed once `prompt` shows. */
  function onTerminal(command: string, cwd: string, prompt: string, answer: string): Promise<{ code: number | null; output: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn('script', ['-qec', command, '/dev/null'], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root' } });
      let output = '';
      let answered = false;
      child.stdout.on('data', (d: Buffer) => {
        output += d.toString();
        if (!answered && output.includes(prompt)) {
          answered = true;
          child.stdin.write(`${answer}\n`);
        }
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, output });
      });
    });
  }

  /** A backup of a small database whose password, in the env file, has a comment after it: no sed line reads it back, so the script asks for it. */
  async function backupAskingForPassword(): Promise<{ main: Server; db: string; env: Record<string, string>; atBackup: Record<string, string>; dir: string }> {
    const main = pgInfo();
    const db = await createWebserverDb(6);
    cleanUp(main, db);
    const dir = tempDir();
    const file = path.join(dir, 'server-ui.env');
    fs.writeFileSync(file, `DB_HOST=${main.host}\nDB_PORT=${main.port}\nDB_USER=${main.user}\nDB_PASSWORD=${main.password} # the app's\nDB_NAME=${db}\n`, {
      mode: 0o600,
    });
    const unset = { DB_HOST: undefined, DB_PORT: undefined, DB_USER: undefined, DB_PASSWORD: undefined, DB_NAME: undefined };
    const env = backupEnv(db, dir, { ...unset, BACKUP_ENV_FILE: file });
    const atBackup = await contents(main, db);
    await backup(env);
    return { main, db, env, atBackup, dir };
  }

  const noScript = spawnSync('script', ['--version']).status !== 0;

  it.skipIf(noScript)('restore --dry-run piped into bash: the script asks for the password on the terminal, not from its own next line', async () => {
    const { main, db, env, atBackup, dir } = await backupAskingForPassword();
    const target = `${db}_tty`;
    const printed = await runCli(['restore', '--dry-run', '--target-db', target], env);
    expect(printed.code, printed.stderr).toBe(0);
    const script = path.join(dir, 'restore.sh');
    fs.writeFileSync(script, printed.stdout, { mode: 0o600 });
    // bash reads the commands from the pipe, the password from the terminal
    const piped = await onTerminal(`cat ${script} | bash`, tempDir(), 'database password: ', main.password);
    expect(piped.code, piped.output).toBe(0);
    expect(await databases(main, target)).toEqual([target]);
    expect(await contents(main, target)).toEqual(atBackup);
  });

  it.skipIf(noScript)('a printed script that fails under bash -e removes the decompressed copy it made', async () => {
    const { main, db, env, dir } = await backupAskingForPassword();
    const taken = `${db}_taken`;
    const printed = await runCli(['restore', '--dry-run', '--target-db', taken], env);
    expect(printed.code, printed.stderr).toBe(0);
    // the database is created meanwhile: createdb fails after the dump was decompressed
    await query('postgres', `CREATE DATABASE "${taken}"`);
    const script = path.join(dir, 'restore.sh');
    fs.writeFileSync(script, printed.stdout, { mode: 0o600 });
    const work = tempDir();
    const failed = await onTerminal(`bash -e ${script}`, work, 'database password: ', main.password);
    expect(failed.code, failed.output).not.toBe(0);
    expect(failed.output).toContain(`database "${taken}" already exists`);
    expect(fs.readdirSync(work)).toEqual([]);
  });
});

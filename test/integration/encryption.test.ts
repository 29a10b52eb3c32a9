import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateIdentity } from '../../src/crypto/age';
import { backupEnv, CLI, listJson, runCli, tempDir } from '../helpers/cli';
import { bucket } from '../helpers/offsite';
import { createTestDb, createWebserverDb, pgInfo, query, tableCounts } from '../helpers/pg';
import { backup, cleanUp, contents, restoredInto } from '../helpers/restore';

// Encrypted backups (age): nothing readable is stored, restore and verify decrypt, the age CLI opens them, bad keys and damaged ciphertext are refused.

interface Listed {
  id: string;
  file: string;
  roles_file: string | null;
  restore_command?: string;
  sha256: string;
  plain_sha256?: string;
  encryption?: { format: string; recipients: string[] } | null;
}

/** `keygen --out` in `dir`: the identity file and its public key. */
async function keygen(dir: string, name = 'key.txt'): Promise<{ file: string; publicKey: string }> {
  const file = path.join(dir, name);
  const r = await runCli(['keygen', '--out', file], { PATH: process.env.PATH!, HOME: dir });
  expect(r.code, r.stderr).toBe(0);
  const publicKey = /BACKUP_AGE_RECIPIENTS=(age1\S+)/.exec(r.stdout)?.[1];
  expect(publicKey, r.stdout).toBeDefined();
  return { file, publicKey: publicKey! };
}

const pgEnv = () => {
  const i = pgInfo();
  return { ...process.env, PGHOST: i.host, PGPORT: String(i.port), PGUSER: i.user, PGPASSWORD: i.password };
};

/** Every file under `dir` (recursively) with its bytes. */
function filesUnder(dir: string): [string, Buffer][] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => [path.join(e.parentPath, e.name), fs.readFileSync(path.join(e.parentPath, e.name))]);
}

/** Names of the databases that start with `prefix`. */
async function databasesLike(prefix: string): Promise<string[]> {
  return (await query<{ d: string }>('postgres', `SELECT datname AS d FROM pg_database WHERE datname LIKE $1 ORDER BY 1`, [`${prefix}%`])).map((r) => r.d);
}

describe('encrypted backups', () => {
  beforeAll(() => {
    // the standard age tool must open what is stored: without it these tests cannot say so
    if (spawnSync('age', ['--version']).status !== 0) throw new Error('the age CLI is not installed: apt-get install age (CONTRIBUTING: What the tests need)');
  });

  it('store no readable byte on any target; restore, --with-roles, verify and the age CLI open them with the identity', async () => {
    const dir = tempDir();
    const { file: keyFile, publicKey } = await keygen(dir);
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    const again = await runCli(['keygen', '--out', keyFile], { PATH: process.env.PATH!, HOME: dir });
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('exists already');
    expect(fs.readFileSync(keyFile, 'utf8')).toContain(`# public key: ${publicKey}`);

    const marker = `MARKER-${crypto.randomBytes(6).toString('hex')}`;
    const role = `enc_role_${crypto.randomBytes(4).toString('hex')}`;
    const db = await createWebserverDb(20);
    cleanUp(pgInfo(), db, [role]);
    await query(db, `CREATE TABLE notes (note text); INSERT INTO notes VALUES ('${marker}')`);
    await query('postgres', `CREATE ROLE ${role} LOGIN`);
    const s3 = await bucket();
    // uncompressed, so that an unencrypted dump would show the marker
    const env = backupEnv(db, dir, { ...s3.env('enc/'), BACKUP_COMPRESSION: '0', BACKUP_AGE_RECIPIENTS: publicKey });
    // encrypted by the library here; restore and verify below decrypt with the age program (the default)
    const r = await runCli(['backup'], { ...env, BACKUP_AGE_PROGRAM: 'builtin' });
    expect(r.code, r.stderr).toBe(0);
    const [m] = await listJson<Listed>(env);
    expect(path.basename(m!.file)).toBe(`${m!.id}.dump.age`);
    expect(m!.roles_file).toBe(`${m!.id}.roles.sql.age`);
    expect(m!.encryption).toEqual({ format: 'age', recipients: [publicKey] });
    expect(m!.plain_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m!.plain_sha256).not.toBe(m!.sha256);

    const stored: [string, Buffer][] = [...filesUnder(path.join(dir, 'backups'))];
    for (const key of await s3.keys('enc/')) stored.push([`s3:${key}`, await s3.get(key)]);
    expect(stored.map(([n]) => path.basename(n)).filter((n) => n.startsWith(m!.id)).length).toBeGreaterThanOrEqual(6);
    for (const [name, bytes] of stored) {
      expect(bytes.includes(marker), name).toBe(false);
      expect(bytes.includes(role), name).toBe(false);
    }

    // the standard age tool opens the data (and it holds the marker: the check above could fail)
    const plain = execFileSync('age', ['-d', '-i', keyFile, m!.file]);
    expect(plain.includes(marker)).toBe(true);
    expect(crypto.createHash('sha256').update(plain).digest('hex')).toBe(m!.plain_sha256);
    const byHand = await createTestDb('byhand');
    execFileSync('bash', ['-c', 'age -d -i "$1" "$2" | pg_restore --exit-on-error --no-owner -d "$3"', 'x', keyFile, m!.file, byHand], {
      env: { ...pgEnv(), PATH: `${pgInfo().binDir}:${process.env.PATH}` },
    });
    expect(await tableCounts(byHand)).toEqual(await tableCounts(db));
    const roles = execFileSync('age', ['-d', '-i', keyFile, path.join(dir, 'backups', m!.roles_file!)]).toString();
    expect(roles).toContain(`CREATE ROLE ${role}`);

    const withKey = { ...env, BACKUP_AGE_IDENTITY_FILE: keyFile };
    await query('postgres', `DROP ROLE ${role}`);
    const restored = await runCli(['restore', '--with-roles', '--target', 's3'], withKey);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await contents(pgInfo(), restoredInto(restored))).toEqual(await contents(pgInfo(), db));
    expect(await query('postgres', `SELECT 1 FROM pg_roles WHERE rolname = $1`, [role])).toHaveLength(1);

    for (const target of ['local', 's3']) {
      const v = await runCli(['verify', '--target', target], withKey);
      expect(v.code, v.stderr).toBe(0);
    }
    // checksums need no key
    const sums = await runCli(['verify', '--checksums-only', '--target', 's3'], env);
    expect(sums.code, sums.stderr).toBe(0);
  });

  it('plain format: stored as .sql.zst.age (compressed, then encrypted); restore decrypts it, and so does `age -d FILE | zstd -dc | psql`', async () => {
    const dir = tempDir();
    const key = await keygen(dir);
    const db = await createWebserverDb(15);
    cleanUp(pgInfo(), db);
    const env = { ...backupEnv(db, dir, { BACKUP_FORMAT: 'plain', BACKUP_AGE_RECIPIENTS: key.publicKey }), BACKUP_AGE_IDENTITY_FILE: key.file };
    await backup(env);
    const [m] = await listJson<Listed>(env);
    expect(path.basename(m!.file)).toBe(`${m!.id}.sql.zst.age`);
    expect(m!.restore_command).toBe(`createdb NEWDB && age -d -i IDENTITY_FILE ${m!.id}.sql.zst.age | zstd -dc | psql -v ON_ERROR_STOP=1 -d NEWDB`);
    const byHand = await createTestDb('plainhand');
    execFileSync(
      'bash',
      ['-o', 'pipefail', '-c', 'age -d -i "$1" "$2" | zstd -dc | psql -X -q -v ON_ERROR_STOP=1 -d "$3" >/dev/null', 'x', key.file, m!.file, byHand],
      {
        env: { ...pgEnv(), PATH: `${pgInfo().binDir}:${process.env.PATH}` },
      },
    );
    expect(await tableCounts(byHand)).toEqual(await tableCounts(db));
    const restored = await runCli(['restore'], env);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await contents(pgInfo(), restoredInto(restored))).toEqual(await contents(pgInfo(), db));
  });

  it('a missing or wrong identity, a key file others can read, tampered or truncated ciphertext: its exit code, and no database created', async () => {
    const dir = tempDir();
    const mine = await keygen(dir, 'mine.txt');
    const other = await keygen(dir, 'other.txt');
    const db = await createWebserverDb(20);
    cleanUp(pgInfo(), db);
    const env = backupEnv(db, dir, { BACKUP_AGE_RECIPIENTS: mine.publicKey });
    await backup(env);
    const [m] = await listJson<Listed>(env);
    const before = await databasesLike(db);

    const none = await runCli(['restore'], env);
    expect(none.code).toBe(36);
    expect(none.stderr).toContain('BACKUP_AGE_IDENTITY_FILE is not set');
    expect(none.stderr).toContain(mine.publicKey);

    const wrong = await runCli(['restore'], { ...env, BACKUP_AGE_IDENTITY_FILE: other.file });
    expect(wrong.code).toBe(36);
    expect(wrong.stderr).toContain(`no key in ${other.file} opens`);
    expect(wrong.stderr).toContain(mine.publicKey);
    const wrongDrill = await runCli(['verify'], { ...env, BACKUP_AGE_IDENTITY_FILE: other.file });
    expect(wrongDrill.code).toBe(36);
    // config check says so before any restore is needed
    const checkWrong = await runCli(['config', 'check'], { ...env, BACKUP_AGE_IDENTITY_FILE: other.file });
    expect(checkWrong.code).not.toBe(0);
    expect(checkWrong.stdout).toContain(`holds no key of the recipients (it holds ${other.publicKey})`);
    const checkRight = await runCli(['config', 'check'], { ...env, BACKUP_AGE_IDENTITY_FILE: mine.file });
    expect(checkRight.stdout).toContain(`opens backups for ${mine.publicKey}`);
    expect(checkRight.stdout).toContain(`age, to ${mine.publicKey}`);

    fs.chmodSync(mine.file, 0o644);
    const open = await runCli(['restore'], { ...env, BACKUP_AGE_IDENTITY_FILE: mine.file });
    expect(open.code).toBe(35);
    expect(open.stderr).toContain('can be read by others (mode 0644)');
    fs.chmodSync(mine.file, 0o600);
    expect(await databasesLike(db)).toEqual(before);

    const withKey = { ...env, BACKUP_AGE_IDENTITY_FILE: mine.file };
    const good = fs.readFileSync(m!.file);
    const tampered = Buffer.from(good);
    tampered[Math.floor(tampered.length / 2)]! ^= 0x01;
    fs.writeFileSync(m!.file, tampered);
    for (const cmd of [
      ['restore', m!.id],
      ['verify', m!.id],
    ]) {
      const t = await runCli(cmd, withKey);
      expect(t.code, `${cmd[0]}: ${t.stderr}`).toBe(31);
    }
    fs.writeFileSync(m!.file, good.subarray(0, good.length - 100));
    // (the drill above recorded the backup as damaged: it is named by its id from here)
    const cut = await runCli(['restore', m!.id], withKey);
    expect(cut.code, cut.stderr).toBe(31);
    expect(await databasesLike(db)).toEqual(before);
    fs.writeFileSync(m!.file, good);
    const ok = await runCli(['verify', m!.id], withKey);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('plaintext backups from before encryption still list, check and restore; turning encryption off again is warned about', async () => {
    const dir = tempDir();
    const key = await keygen(dir);
    const db = await createWebserverDb(10);
    cleanUp(pgInfo(), db);
    const plainEnv = backupEnv(db, dir);
    const encEnv = { ...plainEnv, BACKUP_AGE_RECIPIENTS: key.publicKey };
    const plainId = await backup(plainEnv);
    const encId = await backup(encEnv);
    const listed = await listJson<Listed>(plainEnv);
    expect(listed.map((x) => [x.id, path.extname(x.file)])).toEqual([
      [encId, '.age'],
      [plainId, '.zst'],
    ]);
    const sums = await runCli(['verify', '--checksums-only'], plainEnv);
    expect(sums.code, sums.stderr).toBe(0);
    const old = await runCli(['restore', plainId], plainEnv);
    expect(old.code, old.stderr).toBe(0);
    const latest = await runCli(['restore'], { ...plainEnv, BACKUP_AGE_IDENTITY_FILE: key.file });
    expect(latest.code, latest.stderr).toBe(0);
    expect(latest.stdout).toContain(`Restored ${encId} (`);

    // without the identity (the daemon's server in the second deployment): checksum only, said so
    const drill = await runCli(['verify'], plainEnv);
    expect(drill.code, drill.stderr).toBe(36);
    expect(drill.stdout).toContain('checksum ok; content not drilled: no identity here');
    const status = await runCli(['status'], plainEnv);
    expect(status.stdout).toMatch(new RegExp(`checksum ok \\S+ on ${encId}; content not drilled: no identity here`));
    expect((await runCli(['list'], plainEnv)).stdout).toContain('checksum only');

    const off = await runCli(['backup'], plainEnv);
    expect(off.code, off.stderr).toBe(0);
    expect(off.stderr).toContain('encryption is off');
  });

  it('reencrypt moves every backup of a target to the new key (plaintext ones too); the old key no longer opens them, nothing is left behind', async () => {
    const dir = tempDir();
    const oldKey = await keygen(dir, 'old.txt');
    const newKey = await keygen(dir, 'new.txt');
    const db = await createWebserverDb(10);
    cleanUp(pgInfo(), db);
    const s3 = await bucket();
    const base = backupEnv(db, dir, s3.env('rot/'));
    const plainId = await backup(base);
    const oldId = await backup({ ...base, BACKUP_AGE_RECIPIENTS: oldKey.publicKey });
    const env = { ...base, BACKUP_AGE_RECIPIENTS: newKey.publicKey };

    // without the old identity the encrypted one cannot be read: reported, and left as it was
    const refused = await runCli(['reencrypt', '--all'], { ...env, BACKUP_AGE_IDENTITY_FILE: newKey.file });
    expect(refused.code, refused.stdout + refused.stderr).toBe(36);
    expect(refused.stdout).toMatch(new RegExp(`${oldId} .*FAILED: no key in`));
    expect(refused.stdout).toMatch(new RegExp(`${plainId} .*now for ${newKey.publicKey}`));
    expect((await listJson<Listed>(env)).find((m) => m.id === oldId)!.encryption!.recipients).toEqual([oldKey.publicKey]);

    for (const target of ['local', 's3']) {
      const r = await runCli(['reencrypt', '--all', '--target', target], { ...env, BACKUP_AGE_IDENTITY_FILE: oldKey.file });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const listed = await listJson<Listed>(env, ['--target', target, '--all']);
      expect(listed.map((m) => [m.id, m.encryption?.recipients])).toEqual([
        [oldId, [newKey.publicKey]],
        [plainId, [newKey.publicKey]],
      ]);
      expect(listed.every((m) => path.basename(m.file).includes('.key2.') && m.roles_file!.endsWith('.roles.sql.age'))).toBe(true);
    }
    // the old objects are gone, none is left unowned
    expect(fs.readdirSync(path.join(dir, 'backups')).filter((f) => f.startsWith(db) && /\.(dump|sql)(\.age)?$/.test(f) && !f.includes('.key2.'))).toEqual([]);
    expect((await s3.keys('rot/')).filter((k) => !k.includes('.key2.') && !k.endsWith('.json'))).toEqual([]);

    const again = await runCli(['reencrypt', '--all'], { ...env, BACKUP_AGE_IDENTITY_FILE: oldKey.file });
    expect(again.stdout).toContain('already for the current keys');
    const withOld = await runCli(['restore', oldId, '--target', 's3'], { ...env, BACKUP_AGE_IDENTITY_FILE: oldKey.file });
    expect(withOld.code).toBe(36);
    for (const id of [oldId, plainId]) {
      const r = await runCli(['verify', id, '--target', 's3'], { ...env, BACKUP_AGE_IDENTITY_FILE: newKey.file });
      expect(r.code, r.stderr).toBe(0);
    }
    expect((await runCli(['verify', '--checksums-only'], env)).code).toBe(0);
  });

  it('a passphrase-protected identity: restore asks for it on a terminal, without echoing it; off a terminal, exit 35', async () => {
    const dir = tempDir();
    const { secret, publicKey } = await generateIdentity();
    const { Encrypter, armor } = await import('age-encryption');
    const e = new Encrypter();
    e.setPassphrase('correct horse battery');
    e.setScryptWorkFactor(12);
    const keyFile = path.join(dir, 'protected.txt');
    fs.writeFileSync(keyFile, armor.encode(await e.encrypt(`${secret}\n`)), { mode: 0o600 });
    const db = await createWebserverDb(5);
    cleanUp(pgInfo(), db);
    const env = { ...backupEnv(db, dir, { BACKUP_AGE_RECIPIENTS: publicKey }), BACKUP_AGE_IDENTITY_FILE: keyFile };
    const id = await backup(env);

    const piped = await runCli(['restore'], env);
    expect(piped.code).toBe(35);
    expect(piped.stderr).toContain('is passphrase-protected, and nobody is here to type the passphrase');

    // `script` runs the command on a pseudo-terminal; the passphrase is typed once it asks
    const child = spawn('script', ['-qec', `${process.execPath} ${CLI} restore --yes`, '/dev/null'], { env, cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    const done = new Promise<number | null>((resolve) => child.once('close', resolve));
    child.stdout.on('data', (d: Buffer) => {
      const before = output;
      output += d.toString();
      if (!before.includes('Passphrase for') && output.includes(`Passphrase for ${keyFile}: `)) child.stdin.write('correct horse battery\r');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await done;
    clearTimeout(timer);
    expect(code, output).toBe(0);
    expect(output).toContain(`Restored ${id} (`);
    expect(output).not.toContain('correct horse');
  });
});

import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config';
import {
  checkRecipients,
  decrypt,
  decryptText,
  encryptStage,
  encryptText,
  findAgeProgram,
  generateIdentity,
  publicKeys,
  readIdentities,
} from '../../src/crypto/age';
import { BackupError, ConfigError } from '../../src/errors';
import { tempDir } from '../helpers/temp';

const BASE = { DB_NAME: 'webserver_db' };

function configError(vars: Record<string, string>): ConfigError {
  try {
    parseConfig({ ...BASE, ...vars }, '/srv/app', {});
  } catch (err) {
    return err as ConfigError;
  }
  throw new Error('no error');
}

async function keyFile(dir: string, name = 'key.txt'): Promise<{ file: string; publicKey: string }> {
  const { secret, publicKey } = await generateIdentity();
  const file = path.join(dir, name);
  fs.writeFileSync(file, `# a comment\n${secret}\n`, { mode: 0o600 });
  return { file, publicKey };
}

describe('age encryption', () => {
  it('reads recipients from the variable or a file (comments, blank lines, duplicates), and the identity file path', async () => {
    const dir = tempDir();
    const a = (await generateIdentity()).publicKey;
    const b = (await generateIdentity()).publicKey;
    expect(parseConfig({ ...BASE, BACKUP_AGE_RECIPIENTS: ` ${a} ,${b},${a}` }, '/srv/app', {}).encryption).toEqual({
      recipients: [a, b],
      variable: 'BACKUP_AGE_RECIPIENTS',
    });
    fs.writeFileSync(path.join(dir, 'r.txt'), `# ops laptop\n${a}\n\n${b} # offline copy\n`);
    const c = parseConfig({ ...BASE, BACKUP_AGE_RECIPIENTS_FILE: 'r.txt', BACKUP_AGE_IDENTITY_FILE: 'key.txt' }, dir, {});
    expect(c.encryption).toEqual({ recipients: [a, b], variable: 'BACKUP_AGE_RECIPIENTS_FILE' });
    expect(c.ageIdentityFile).toBe(path.join(dir, 'key.txt'));
    expect(parseConfig(BASE, '/srv/app', {}).encryption).toBeUndefined();
  });

  it('refuses malformed and ssh recipients, both variables at once, an empty or unreadable file, naming the variable', async () => {
    const a = (await generateIdentity()).publicKey;
    expect(configError({ BACKUP_AGE_RECIPIENTS: 'age1notakey' }).message).toBe('BACKUP_AGE_RECIPIENTS: "age1notakey" is not an age public key (age1…)');
    expect(configError({ BACKUP_AGE_RECIPIENTS: 'ssh-ed25519 AAAAC3Nza me@host' }).message).toContain('ssh-ed25519 keys are not supported');
    expect(configError({ BACKUP_AGE_RECIPIENTS: a, BACKUP_AGE_RECIPIENTS_FILE: '/x' }).variable).toBe('BACKUP_AGE_RECIPIENTS_FILE');
    expect(configError({ BACKUP_AGE_RECIPIENTS: ' , ' }).message).toContain('holds no public key');
    expect(configError({ BACKUP_AGE_RECIPIENTS_FILE: '/nonexistent/r.txt' }).message).toContain('cannot read /nonexistent/r.txt (ENOENT)');
    // the right form but a wrong checksum: caught when the library reads it, before a backup starts
    const flipped = a.slice(0, -1) + (a.endsWith('q') ? 'p' : 'q');
    await expect(checkRecipients([flipped], 'BACKUP_AGE_RECIPIENTS')).rejects.toThrow(/checksum does not match/);
    await expect(checkRecipients([a], 'BACKUP_AGE_RECIPIENTS')).resolves.toBeUndefined();
  });

  it('an identity file must be 0600, exist and hold age secret keys', async () => {
    const dir = tempDir();
    const { file, publicKey } = await keyFile(dir);
    expect(await publicKeys(await readIdentities(file))).toEqual([publicKey]);
    const codeOf = async (f: string, ask?: (p: string) => Promise<string>) => {
      try {
        await readIdentities(f, ask);
      } catch (err) {
        return [(err as BackupError).code, (err as Error).message];
      }
      return ['none'];
    };
    fs.chmodSync(file, 0o640);
    expect(await codeOf(file)).toEqual(['KEY_FILE', `the identity file ${file} can be read by others (mode 0640)`]);
    expect((await codeOf(path.join(dir, 'missing')))[1]).toContain('does not exist');
    fs.writeFileSync(path.join(dir, 'bad'), 'hello\n', { mode: 0o600 });
    expect((await codeOf(path.join(dir, 'bad')))[1]).toContain('not an age secret key');

    // protected with a passphrase (as `age -p` writes it): asked for where someone can answer
    const { secret, publicKey: protectedKey } = await generateIdentity();
    const { Encrypter, armor } = await import('age-encryption');
    const e = new Encrypter();
    e.setPassphrase('correct horse');
    e.setScryptWorkFactor(10); // (the default 18 takes seconds)
    const pp = path.join(dir, 'pp');
    fs.writeFileSync(pp, armor.encode(await e.encrypt(`# key\n${secret}\n`)), { mode: 0o600 });
    expect(await codeOf(pp)).toEqual(['KEY_FILE', `the identity file ${pp} is passphrase-protected, and nobody is here to type the passphrase`]);
    const prompts: string[] = [];
    const ask = (answer: string) => (p: string) => (prompts.push(p), Promise.resolve(answer));
    expect((await codeOf(pp, ask('wrong')))[1]).toContain('does not open with that passphrase');
    expect(await publicKeys(await readIdentities(pp, ask('correct horse')))).toEqual([protectedKey]);
    expect(prompts).toEqual([`Passphrase for ${pp}: `, `Passphrase for ${pp}: `]);
  });

  it('round-trips a stream and a text; a wrong key is NO_KEY at the header, a flipped byte DAMAGED', async () => {
    const dir = tempDir();
    const mine = await keyFile(dir, 'mine');
    const other = await keyFile(dir, 'other');
    const data = Buffer.alloc(300_000, 'backup bytes ');
    const stage = await encryptStage([mine.publicKey]);
    const [cipher] = await Promise.all([buffer(stage), Promise.resolve(stage.end(data))]);
    expect(cipher.includes(Buffer.from('backup bytes'))).toBe(false);
    const ids = await readIdentities(mine.file);
    expect(await buffer(await decrypt(Readable.from([cipher]), ids, 'f', [mine.publicKey]))).toEqual(data);

    const wrong = decrypt(Readable.from([cipher]), await readIdentities(other.file), 'f', [mine.publicKey]);
    await expect(wrong).rejects.toMatchObject({ code: 'NO_KEY' });
    const bad = Buffer.from(cipher);
    bad[200_000]! ^= 1;
    const plain = await decrypt(Readable.from([bad]), ids, 'f', [mine.publicKey]);
    await expect(buffer(plain)).rejects.toMatchObject({ code: 'DAMAGED' });

    const armored = await encryptText('CREATE ROLE x;', [mine.publicKey]);
    expect(armored).toMatch(/^-----BEGIN AGE ENCRYPTED FILE-----/);
    expect(await decryptText(armored, ids, 'roles', [mine.publicKey])).toBe('CREATE ROLE x;');
  });

  it('the age program as a stage: interoperates with the library both ways; one that fails half-way fails the stream, never ends it', async () => {
    const dir = tempDir();
    const mine = await keyFile(dir, 'mine');
    const age = findAgeProgram(undefined, { PATH: process.env.PATH });
    expect(age?.file).toMatch(/\/age$/);
    const data = Buffer.alloc(200_000, 'rows ');
    const ids = await readIdentities(mine.file);
    const viaProgram = await encryptStage([mine.publicKey], age);
    const [c1] = await Promise.all([buffer(viaProgram), Promise.resolve(viaProgram.end(data))]);
    expect(await buffer(await decrypt(Readable.from([c1]), ids, 'f', [mine.publicKey]))).toEqual(data);
    const viaLibrary = await encryptStage([mine.publicKey]);
    const [c2] = await Promise.all([buffer(viaLibrary), Promise.resolve(viaLibrary.end(data))]);
    expect(await buffer(await decrypt(Readable.from([c2]), ids, 'f', [mine.publicKey], age))).toEqual(data);
    const flipped = Buffer.from(c2);
    flipped[150_000]! ^= 1;
    await expect(buffer(await decrypt(Readable.from([flipped]), ids, 'f', [mine.publicKey], age))).rejects.toMatchObject({ code: 'DAMAGED' });

    const halfway = path.join(dir, 'half-age');
    fs.writeFileSync(halfway, '#!/bin/sh\nhead -c 1000\necho "age: error: disk on fire" >&2\nexit 3\n', { mode: 0o700 });
    const broken = await encryptStage([mine.publicKey], { file: halfway, env: { PATH: process.env.PATH } });
    broken.on('error', () => undefined);
    broken.end(data);
    await expect(buffer(broken)).rejects.toThrow(/could not encrypt the backup: disk on fire/);
    expect(() => findAgeProgram('/nonexistent/age', {})).toThrow(/BACKUP_AGE_PROGRAM: \/nonexistent\/age is not an executable program/);
    expect(findAgeProgram('builtin', { PATH: process.env.PATH })).toBeUndefined();

    // post-quantum keys, which Debian's age program does not know, go through the library whatever the program
    const { generateHybridIdentity, identityToRecipient } = await import('age-encryption');
    const pqSecret = await generateHybridIdentity();
    const pqFile = path.join(dir, 'pq');
    fs.writeFileSync(pqFile, `${pqSecret}\n`, { mode: 0o600 });
    const pqPublic = await identityToRecipient(pqSecret);
    const failing = { file: '/bin/false', env: { PATH: process.env.PATH } };
    const pqStage = await encryptStage([pqPublic], failing);
    const [c3] = await Promise.all([buffer(pqStage), Promise.resolve(pqStage.end(data))]);
    expect(await buffer(await decrypt(Readable.from([c3]), await readIdentities(pqFile), 'f', [pqPublic], failing))).toEqual(data);
  });
});

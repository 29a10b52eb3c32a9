import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config';
import { checkRecipients, decrypt, decryptText, encryptStage, encryptText, generateIdentity, publicKeys, readIdentities } from '../../src/crypto/age';
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
    expect(await publicKeys(readIdentities(file))).toEqual([publicKey]);
    const codeOf = (f: string) => {
      try {
        readIdentities(f);
      } catch (err) {
        return [(err as BackupError).code, (err as Error).message];
      }
      return ['none'];
    };
    fs.chmodSync(file, 0o640);
    expect(codeOf(file)).toEqual(['KEY_FILE', `the identity file ${file} can be read by others (mode 0640)`]);
    expect(codeOf(path.join(dir, 'missing'))[1]).toContain('does not exist');
    fs.writeFileSync(path.join(dir, 'bad'), 'hello\n', { mode: 0o600 });
    expect(codeOf(path.join(dir, 'bad'))[1]).toContain('not an age secret key');
    fs.writeFileSync(path.join(dir, 'pp'), '-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n', { mode: 0o600 });
    expect(codeOf(path.join(dir, 'pp'))[1]).toContain('passphrase-protected');
  });

  it('round-trips a stream and a text; a wrong key is NO_KEY at the header, a flipped byte DAMAGED', async () => {
    const dir = tempDir();
    const mine = await keyFile(dir, 'mine');
    const other = await keyFile(dir, 'other');
    const data = Buffer.alloc(300_000, 'backup bytes ');
    const stage = await encryptStage([mine.publicKey]);
    const [cipher] = await Promise.all([buffer(stage), Promise.resolve(stage.end(data))]);
    expect(cipher.includes(Buffer.from('backup bytes'))).toBe(false);
    const ids = readIdentities(mine.file);
    expect(await buffer(await decrypt(Readable.from([cipher]), ids, 'f', [mine.publicKey]))).toEqual(data);

    const wrong = decrypt(Readable.from([cipher]), readIdentities(other.file), 'f', [mine.publicKey]);
    await expect(wrong).rejects.toMatchObject({ code: 'NO_KEY' });
    const bad = Buffer.from(cipher);
    bad[200_000]! ^= 1;
    const plain = await decrypt(Readable.from([bad]), ids, 'f', [mine.publicKey]);
    await expect(buffer(plain)).rejects.toMatchObject({ code: 'DAMAGED' });

    const armored = await encryptText('CREATE ROLE x;', [mine.publicKey]);
    expect(armored).toMatch(/^-----BEGIN AGE ENCRYPTED FILE-----/);
    expect(await decryptText(armored, ids, 'roles', [mine.publicKey])).toBe('CREATE ROLE x;');
  });
});

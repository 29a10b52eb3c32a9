/**
 * Encryption in the age format (https://age-encryption.org), through the `age-encryption`
 * library: what a backup stores can be read with the standard `age` tool and the identity file.
 * The library is loaded on first use, so commands that never encrypt do not pay for it.
 */
import fs from 'node:fs';
import { Duplex, PassThrough, pipeline, Readable } from 'node:stream';
import { BackupError, ConfigError } from '../errors';
import { findExecutable, programStage } from '../pg/program';

type AgeLibrary = typeof import('age-encryption');
let library: Promise<AgeLibrary> | undefined;
const age = (): Promise<AgeLibrary> => (library ??= import('age-encryption'));

/** What a backup's manifest says of its encryption. */
export interface EncryptionInfo {
  format: 'age';
  /** The public keys it was encrypted to: one of their identities opens it. */
  recipients: string[];
}

// X25519 (age1 + 58 bech32 characters) and the library's post-quantum hybrid keys (age1pq1…).
const RECIPIENT = /^age1(?:pq1)?[02-9ac-hj-np-z]{58,}$/;

/**
 * Checks the form of each public key (BACKUP_AGE_RECIPIENTS): returns what is wrong with the
 * first bad one, or undefined. The key's checksum is checked when it is first used (`checkRecipients`).
 */
export function recipientProblem(recipients: string[]): string | undefined {
  for (const r of recipients) {
    if (/^ssh-(ed25519|rsa) /.test(r)) {
      return `${r.split(' ')[0]} keys are not supported (the age library used here reads only age1… keys)`;
    }
    if (!RECIPIENT.test(r)) return `"${r.length > 24 ? `${r.slice(0, 24)}…` : r}" is not an age public key (age1…)`;
  }
  return undefined;
}

export const RECIPIENT_HINT = 'Give age public keys (age1…), as printed by `basement-backup keygen` or `age-keygen -y KEYFILE`.';

/** Loads the library and checks every recipient with it (their checksums); a bad one is a configuration error. */
export async function checkRecipients(recipients: string[], variable: string): Promise<void> {
  const { Encrypter } = await age();
  for (const r of recipients) {
    try {
      new Encrypter().addRecipient(r);
    } catch {
      throw new ConfigError(variable, `"${r.slice(0, 24)}…" is not a valid age public key (its checksum does not match)`, RECIPIENT_HINT);
    }
  }
}

/**
 * A stream stage that encrypts what passes through it to `recipients`, in age's binary format:
 * by the age program when there is one (about 400 MB/s here), else by the library (70–86 MB/s).
 */
export async function encryptStage(recipients: string[], program?: AgeProgram): Promise<Duplex> {
  // (the age program of Debian 12 does not know the post-quantum keys; the library does)
  if (program && !recipients.some((r) => r.startsWith('age1pq1'))) {
    return programStage(
      { name: 'age', ...program },
      ['-e', ...recipients.flatMap((r) => ['-r', r])],
      (tail) =>
        new BackupError('STORAGE', `${program.file} could not encrypt the backup: ${tail || 'it failed'}`, {
          hint: 'Check BACKUP_AGE_PROGRAM (or set it to builtin), then run the backup again.',
        }),
    );
  }
  const { Encrypter } = await age();
  const e = new Encrypter();
  for (const r of recipients) e.addRecipient(r);
  const input = new PassThrough();
  const web = await e.encrypt(Readable.toWeb(input) as unknown as ReadableStream<Uint8Array>);
  return Duplex.from({ writable: input, readable: Readable.fromWeb(web) });
}

/** `text` encrypted to `recipients`, ASCII-armored (a text file `age -d` reads as it is). */
export async function encryptText(text: string, recipients: string[]): Promise<string> {
  const { Encrypter, armor } = await age();
  const e = new Encrypter();
  for (const r of recipients) e.addRecipient(r);
  return armor.encode(await e.encrypt(text));
}

/** The secret keys of an identity file, checked: see `readIdentities`. */
export interface Identities {
  file: string;
  keys: string[];
  /** The file is protected with a passphrase: only the library (which was given it) can use the keys. */
  sealed?: boolean;
}

/** The age program that streams (BACKUP_AGE_PROGRAM), with the environment it runs in (PATH only). */
export interface AgeProgram {
  file: string;
  env: NodeJS.ProcessEnv;
}

/** Asks the operator for a secret on the terminal, not echoed; absent where nobody can answer (the daemon, a pipe). */
export type AskSecret = (prompt: string) => Promise<string>;

/**
 * Reads BACKUP_AGE_IDENTITY_FILE: lines of AGE-SECRET-KEY-1…, `#` comments; or such a file
 * encrypted with a passphrase (`age -p`), which `ask` asks for on a terminal. The file must be
 * readable by this user only (0600 or stricter), like an ssh key; anything else is a KEY_FILE error.
 */
export async function readIdentities(file: string, ask?: AskSecret): Promise<Identities> {
  const bytes = readPrivateFile(file);
  const armored = bytes.subarray(0, 64).toString('latin1').trimStart().startsWith('-----BEGIN AGE ENCRYPTED FILE-----');
  if (!armored && !bytes.subarray(0, 21).toString('latin1').startsWith('age-encryption.org/')) return parseIdentities(file, bytes.toString('utf8'));
  if (!ask) {
    throw keyFileError(
      file,
      'is passphrase-protected, and nobody is here to type the passphrase',
      'Run restore or verify on a terminal, where they ask for it; the daemon needs an unprotected identity file (0600), or none (docs/encryption.md).',
    );
  }
  const passphrase = await ask(`Passphrase for ${file}: `);
  const { Decrypter, armor } = await age();
  const d = new Decrypter();
  d.addPassphrase(passphrase);
  let text: string;
  try {
    text = await d.decrypt(armored ? armor.decode(bytes.toString('utf8')) : new Uint8Array(bytes), 'text');
  } catch {
    throw keyFileError(file, 'does not open with that passphrase', 'Type the passphrase it was protected with (`age -p`); nothing was changed.');
  }
  return { ...parseIdentities(file, text), sealed: true };
}

function keyFileError(file: string, problem: string, hint: string): BackupError {
  return new BackupError('KEY_FILE', `the identity file ${file} ${problem}`, { hint });
}

/** The bytes of a file only its owner may read; a KEY_FILE error otherwise. */
function readPrivateFile(file: string): Buffer {
  try {
    const st = fs.statSync(file);
    if ((st.mode & 0o077) !== 0) {
      throw keyFileError(
        file,
        `can be read by others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`,
        `It holds the key that opens every backup: chmod 600 ${file}, and check who could have read it.`,
      );
    }
    return fs.readFileSync(file);
  } catch (err) {
    if (err instanceof BackupError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw keyFileError(
      file,
      code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (err as Error).message})`,
      'Set BACKUP_AGE_IDENTITY_FILE to the file `basement-backup keygen` wrote (mode 0600, owned by the user running this).',
    );
  }
}

/** The keys of an identity file's text. */
function parseIdentities(file: string, text: string): Identities {
  const keys = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const bad = keys.find((k) => !/^AGE-SECRET-KEY-(PQ-)?1[0-9A-Z]+$/.test(k));
  if (keys.length === 0 || bad !== undefined) {
    throw keyFileError(
      file,
      keys.length === 0 ? 'holds no key' : 'has a line that is not an age secret key (AGE-SECRET-KEY-1…)',
      'An identity file has one AGE-SECRET-KEY-1… line per key, and # comments; `basement-backup keygen` writes one.',
    );
  }
  return { file, keys };
}

/** The public keys of `ids`' secret keys. */
export async function publicKeys(ids: Identities): Promise<string[]> {
  const { identityToRecipient } = await age();
  return Promise.all(ids.keys.map((k) => identityToRecipient(k)));
}

/** What decrypting `what` failed on: no key here matches (NO_KEY), or the ciphertext is not intact (DAMAGED). */
function decryptError(err: unknown, what: string, ids: Identities, recipients: string[]): BackupError {
  const message = (err as Error).message ?? String(err);
  if (/no identity matched/.test(message)) {
    return new BackupError('NO_KEY', `no key in ${ids.file} opens ${what}: it was encrypted to ${recipients.join(', ')}`, {
      hint: 'Point BACKUP_AGE_IDENTITY_FILE at the identity of one of those keys (`age-keygen -y FILE` prints a file’s public key).',
    });
  }
  return new BackupError('DAMAGED', `${what} cannot be decrypted: ${message}`, {
    hint: 'The encrypted file was changed or cut short after the backup (age checks every 64 KiB). Use another backup and check the storage.',
    cause: err,
  });
}

/**
 * Starts decrypting the age file that `source` delivers with `ids`: resolves once its header is
 * read and a key matched it (so a wrong key fails before anything is restored), with the
 * plaintext. A damaged chunk later fails the plaintext stream with a DAMAGED error.
 */
export async function decrypt(source: Readable, ids: Identities, what: string, recipients: string[], program?: AgeProgram): Promise<Readable> {
  // a failed read of the stored bytes is the storage's failure, not the ciphertext's
  let readError: Error | undefined;
  source.once('error', (err) => (readError ??= err));
  if (program && !ids.sealed && !ids.keys.some((k) => k.startsWith('AGE-SECRET-KEY-PQ-'))) {
    const stage = programStage(
      { name: 'age', ...program },
      ['-d', '-i', ids.file],
      (tail) => readError ?? decryptError(new Error(tail), what, ids, recipients),
    );
    return pipeline(source, stage, () => undefined);
  }
  const { Decrypter } = await age();
  const d = new Decrypter();
  for (const k of ids.keys) d.addIdentity(k);
  const web = Readable.toWeb(source) as unknown as ReadableStream<Uint8Array>;
  let plain: ReadableStream<Uint8Array>;
  try {
    plain = await d.decrypt(web);
  } catch (err) {
    source.destroy();
    throw readError ?? decryptError(err, what, ids, recipients);
  }
  // not `pipeline`: it would end `out` with the library's bare error ("invalid tag") before this one
  const src = Readable.fromWeb(plain);
  const out = new PassThrough();
  src.once('error', (err) => out.destroy(readError ?? decryptError(err, what, ids, recipients)));
  out.once('close', () => src.destroy());
  src.pipe(out);
  return out;
}

/** Checks that `ids` opens the age file `source` delivers (its header), then stops reading. */
export async function checkKey(source: Readable, ids: Identities, what: string, recipients: string[]): Promise<void> {
  const plain = await decrypt(source, ids, what, recipients);
  plain.on('error', () => undefined);
  plain.destroy();
  source.destroy();
}

/** Decrypts an armored text (`encryptText`). */
export async function decryptText(armored: string, ids: Identities, what: string, recipients: string[]): Promise<string> {
  const { Decrypter, armor } = await age();
  const d = new Decrypter();
  for (const k of ids.keys) d.addIdentity(k);
  try {
    return await d.decrypt(armor.decode(armored), 'text');
  } catch (err) {
    throw decryptError(err, what, ids, recipients);
  }
}

/**
 * The age program to stream with: BACKUP_AGE_PROGRAM (a program, or `builtin` for the library),
 * by default `age` when it is on PATH. Undefined: the library.
 */
export function findAgeProgram(setting: string | undefined, env: NodeJS.ProcessEnv): AgeProgram | undefined {
  if (setting === 'builtin') return undefined;
  const found = findExecutable(setting ?? 'age', env);
  if (found) return { file: found, env: { PATH: env.PATH ?? '' } };
  if (setting !== undefined) {
    throw new ConfigError(
      'BACKUP_AGE_PROGRAM',
      `${setting} is not an executable program`,
      'Install age (apt-get install age), give its path, or set BACKUP_AGE_PROGRAM=builtin.',
    );
  }
  return undefined;
}

/** A new X25519 identity: the secret key and its public key. */
export async function generateIdentity(): Promise<{ secret: string; publicKey: string }> {
  const { generateX25519Identity, identityToRecipient } = await age();
  const secret = await generateX25519Identity();
  return { secret, publicKey: await identityToRecipient(secret) };
}

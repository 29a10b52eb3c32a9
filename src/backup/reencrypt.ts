import { pipeline, type Readable } from 'node:stream';
import type { App, Target } from '../app';
import { checkRecipients, decryptText, encryptText, type AgeProgram, type Identities } from '../crypto/age';
import { asBackupError, BackupError, ConfigError } from '../errors';
import { holdLock } from '../lock/file-lock';
import { log } from '../logger';
import { chainFor } from '../pipeline/names';
import { unkeyed, unpack } from '../pipeline/read';
import { keysFor } from '../restore/keys';
import { decodeContext, storedObject } from '../restore/read-back';
import { rewrittenNames, type Manifest } from '../repository/manifest';
import { withReleasers } from '../util/releasers';

export interface ReencryptResult {
  id: string;
  /** What it was encrypted to before ("none": stored in clear). */
  from: string;
  result: 'reencrypted' | 'already' | 'failed';
  error?: BackupError;
}

/**
 * `reencrypt`: rewrites backups on one target for the current recipients (BACKUP_AGE_RECIPIENTS),
 * so an old key can be retired or backups taken before encryption was on are encrypted too. Each
 * is decrypted with BACKUP_AGE_IDENTITY_FILE, checked against its manifest, encrypted, written as
 * new objects, and its manifest swapped last (Repository.rewrite). Under the backup lock.
 */
export async function reencryptBackups(app: App, opts: { id?: string | undefined; all?: boolean; target?: string | undefined }): Promise<ReencryptResult[]> {
  const { config } = app;
  if (!config.encryption) {
    throw new ConfigError(
      'BACKUP_AGE_RECIPIENTS',
      'is not set: reencrypt encrypts to the current recipients',
      'Set BACKUP_AGE_RECIPIENTS to the new public key(s) first.',
    );
  }
  const { recipients, variable } = config.encryption;
  await checkRecipients(recipients, variable);
  const target = app.target(opts.target);
  const database = app.database.db.database;
  return withReleasers(async (releasers) => {
    holdLock(releasers, app.lockFile(database), `reencrypt of ${database}`);
    await target.repo.removeLeftovers(database); // what a killed reencrypt left
    const backups = opts.all ? await target.repo.listGood(database) : [await target.repo.find(database, opts.id ?? 'latest')];
    const results: ReencryptResult[] = [];
    // the identity is read (and its passphrase asked for) once, when the first encrypted backup needs it
    let keys: Promise<Identities | undefined> | undefined;
    for (const m of backups) {
      const from = m.encryption ? m.encryption.recipients.join(', ') : 'none';
      if (m.encryption && sameKeys(m.encryption.recipients, recipients)) {
        results.push({ id: m.id, from, result: 'already' });
        continue;
      }
      try {
        const opener = m.encryption ? await (keys ??= keysFor(config.ageIdentityFile, m, app.askSecret)) : undefined;
        await reencryptOne(target, m, { recipients, keys: opener, program: app.ageProgram() });
        log.info('backup re-encrypted', { id: m.id, target: target.name, from, to: recipients.join(', ') });
        results.push({ id: m.id, from, result: 'reencrypted' });
      } catch (err) {
        const error = asBackupError(err);
        log.error('could not re-encrypt a backup; it is unchanged', { id: m.id, target: target.name, error: error.message });
        results.push({ id: m.id, from, result: 'failed', error });
      }
    }
    return results;
  });
}

function sameKeys(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((k) => b.includes(k));
}

/** One backup: stored bytes (checked) → decrypted (checked) → encrypted to `recipients` → new objects, manifest swapped. */
async function reencryptOne(
  target: Target,
  m: Manifest,
  { recipients, keys, program }: { recipients: string[]; keys: Identities | undefined; program: AgeProgram | undefined },
): Promise<void> {
  const { repo } = target;
  const what = `${m.file} on ${target.name}`;
  // the roles first: nothing is open yet if they cannot be read
  const storedRoles = await repo.readRoles(m);
  const roles =
    storedRoles === undefined
      ? undefined
      : await encryptText(
          m.encryption && keys ? await decryptText(storedRoles, keys, `${m.roles_file} on ${target.name}`, m.encryption.recipients) : storedRoles,
          recipients,
        );
  // the pipeline undoes the encryption only (a compressed dump stays compressed) and encrypts again
  const plain = unpack(storedObject(repo, m), decodeContext({ manifest: m, zstd: undefined, keys, age: program }), { leave: unkeyed(m.file) });
  const stages = await plain.stages();
  for (const codec of chainFor('none', true)) stages.push(await codec.encode({ recipients, age: program }));
  const encrypted = pipeline(stages as never, () => undefined) as unknown as Readable;
  let plainSha256 = '';
  const check = () => {
    const { checksum, problem, plainSha256: sha } = plain.result();
    if (!checksum.ok || problem) {
      throw new BackupError('DAMAGED', `${what} does not match its manifest: not re-encrypted`, {
        hint: `Run \`basement-backup verify ${m.id} --target ${target.name}\`; use another copy (sync) or another backup.`,
      });
    }
    plainSha256 = sha;
  };
  const next = rewrittenNames(m);
  await repo.rewrite(m, next, { stream: encrypted, roles, check }, (written) => ({
    ...m,
    file: next.file,
    roles_file: next.roles,
    size_bytes: written.size,
    sha256: written.sha256,
    encryption: { format: 'age', recipients },
    plain_sha256: plainSha256,
    targets: { ...(m.targets ?? {}), [target.name]: { state: 'stored', at: new Date().toISOString(), ...(written.etag ? { etag: written.etag } : {}) } },
  }));
}

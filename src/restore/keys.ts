import { readIdentities, type AskSecret, type Identities } from '../crypto/age';
import { BackupError } from '../errors';
import type { Manifest } from '../repository/manifest';

/**
 * The identity that opens backup `m` (BACKUP_AGE_IDENTITY_FILE), read and checked; undefined when
 * `m` is not encrypted. No identity configured for an encrypted backup is a NO_KEY error.
 */
export async function keysFor(identityFile: string | undefined, m: Manifest, ask?: AskSecret): Promise<Identities | undefined> {
  if (!m.encryption) return undefined;
  if (!identityFile) throw noKeyError(m);
  return readIdentities(identityFile, ask);
}

/** The NO_KEY error for encrypted backup `m` where no identity is configured. */
export function noKeyError(m: Manifest): BackupError {
  return new BackupError('NO_KEY', `backup ${m.id} is encrypted (to ${(m.encryption?.recipients ?? []).join(', ')}) and BACKUP_AGE_IDENTITY_FILE is not set`, {
    hint: 'Set BACKUP_AGE_IDENTITY_FILE to the identity file of one of those keys (mode 0600), or run this on the machine that holds it.',
  });
}

import fs from 'node:fs';
import { RECIPIENT_HINT, recipientProblem } from '../../crypto/age';
import type { Reader } from '../reader';
import type { Settings } from '../types';

/** Encryption: the recipients of new backups, where the identity that opens them is, and the age program. */
export function parseEncryption(r: Reader): Pick<Settings, 'encryption' | 'ageIdentityFile' | 'ageProgram'> {
  return { ...parseRecipients(r), ageProgram: r.raw('BACKUP_AGE_PROGRAM') };
}

function parseRecipients(r: Reader): Pick<Settings, 'encryption' | 'ageIdentityFile'> {
  const inline = r.raw('BACKUP_AGE_RECIPIENTS');
  const fromFile = r.raw('BACKUP_AGE_RECIPIENTS_FILE');
  const identity = r.raw('BACKUP_AGE_IDENTITY_FILE');
  const ageIdentityFile = identity ? r.dir('BACKUP_AGE_IDENTITY_FILE', identity) : undefined;
  if (inline && fromFile) {
    r.fail('BACKUP_AGE_RECIPIENTS_FILE', 'is set as well as BACKUP_AGE_RECIPIENTS', 'Set one of them.');
    return { encryption: undefined, ageIdentityFile };
  }
  let variable = 'BACKUP_AGE_RECIPIENTS';
  let recipients: string[] = [];
  if (inline) recipients = inline.split(',');
  if (fromFile) {
    variable = 'BACKUP_AGE_RECIPIENTS_FILE';
    const file = r.dir(variable, fromFile);
    try {
      recipients = fs.readFileSync(file, 'utf8').split('\n');
    } catch (err) {
      r.fail(variable, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, 'Give a readable file of age public keys, one per line.');
      return { encryption: undefined, ageIdentityFile };
    }
  }
  recipients = recipients.map((l) => l.replace(/#.*/, '').trim()).filter((l) => l !== '');
  if (!inline && !fromFile) return { encryption: undefined, ageIdentityFile };
  if (recipients.length === 0) {
    r.fail(variable, 'holds no public key', 'Give at least one age public key (age1…), or unset it to take unencrypted backups.');
    return { encryption: undefined, ageIdentityFile };
  }
  const problem = recipientProblem(recipients);
  if (problem) r.fail(variable, problem, RECIPIENT_HINT);
  return { encryption: { recipients: [...new Set(recipients)], variable }, ageIdentityFile };
}

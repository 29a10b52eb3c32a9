import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { BackupError } from '../../errors';
import { run } from '../run';

const DEFAULT_OUT = 'basement-backup-identity.txt';

/** Writes a new identity (never over an existing file) and says what to do with it. */
async function keygen(cmd: Command): Promise<void> {
  const file = path.resolve(cmd.opts<{ out: string }>().out);
  const { generateIdentity } = await import('../../crypto/age.js');
  const { secret, publicKey } = await generateIdentity();
  const text = `# created: ${new Date().toISOString()} by basement-backup keygen\n# public key: ${publicKey}\n${secret}\n`;
  try {
    fs.writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      throw new BackupError('CONFIG', `${file} exists already: keygen never overwrites an identity`, {
        hint: 'It may be the only key to earlier backups. Give another --out, or move that file away first.',
      });
    }
    throw new BackupError('CONFIG', `cannot write ${file} (${code ?? (err as Error).message})`, { hint: 'Give a writable path with --out.' });
  }
  process.stdout.write(
    [
      `Wrote a new age identity to ${file} (mode 0600).`,
      `Public key: ${publicKey}`,
      '',
      'Add this line to the .env of the server that takes the backups (it needs only the public key):',
      `  BACKUP_AGE_RECIPIENTS=${publicKey}`,
      '',
      `Then copy ${file} off this server (a password manager, a second machine): without it no`,
      'encrypted backup can be restored, and a stolen server or bucket must not hold it.',
      `To run drills and restores here, keep it here too and set BACKUP_AGE_IDENTITY_FILE=${file};`,
      'to keep this server unable to read its own backups, delete it here once copied and run',
      '`basement-backup verify` on the machine that holds it (docs/encryption.md).',
      '',
    ].join('\n'),
  );
}

/** `keygen`: a new age identity for encrypted backups. */
export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('write a new age identity (secret key, 0600) for encrypted backups and print its public key')
    .option('--out <file>', 'where to write the identity (never overwritten)', DEFAULT_OUT)
    .action(run('keygen', keygen));
}

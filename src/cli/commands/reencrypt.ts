import type { Command } from 'commander';
import { BackupError } from '../../errors';
import { parseBackupId, parseOptionalTarget } from '../input';
import { printTable } from '../output';
import { run, setup } from '../run';

interface ReencryptOpts {
  all?: boolean;
  target?: string;
}

async function reencrypt(cmd: Command, id: string | undefined, opts: ReencryptOpts): Promise<number> {
  if (id !== undefined && opts.all)
    throw new BackupError('CONFIG', 'give a backup id or --all, not both', { hint: 'Run it once with --all to re-encrypt every good backup.' });
  if (id !== undefined) parseBackupId(id);
  const target = parseOptionalTarget(opts.target);
  const { app } = await setup(cmd, 'reencrypt', ['targets']);
  const { reencryptBackups } = await import('../../backup/reencrypt.js');
  const results = await reencryptBackups(app, { id, all: opts.all === true, target });
  const to = app.config.encryption?.recipients.join(', ') ?? '';
  printTable(
    ['backup', 'was encrypted to', 'result'],
    results.map((r) => [
      r.id,
      r.from,
      r.result === 'failed' ? `FAILED: ${r.error?.message ?? ''}` : r.result === 'already' ? 'already for the current keys' : `now for ${to}`,
    ]),
  );
  const failed = results.find((r) => r.error);
  if (failed?.error) {
    process.stderr.write(`fix: ${failed.error.hint ?? 'see the message above'}\n`);
    return failed.error.exitCode;
  }
  return 0;
}

/** `reencrypt`: backups rewritten for the current recipients, so an old key can be retired. */
export function registerReencrypt(program: Command): void {
  program
    .command('reencrypt')
    .description('re-encrypt stored backups to the current BACKUP_AGE_RECIPIENTS (decrypting with BACKUP_AGE_IDENTITY_FILE), so an old key can be retired')
    .argument('[id]', 'backup id from `list`, or "latest" (the default without --all)')
    .option('--all', 'every good backup on the target')
    .option('--target <name>', 'the storage target whose copies to rewrite (default: the first); run it once per target')
    .action(run('reencrypt', reencrypt));
}

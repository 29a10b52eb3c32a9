import type { Command } from 'commander';
import { ERROR_CODES } from '../../errors';
import { printJson, printTable } from '../output';
import { run, setup } from '../run';

async function sync(cmd: Command, opts: { json?: boolean; deleted?: boolean }): Promise<number> {
  const { app } = await setup(cmd, 'sync', ['state', 'targets']);
  const { syncTargets } = await import('../../backup/sync.js');
  const copies = await syncTargets(app, { deleted: opts.deleted === true });
  if (opts.json) printJson(copies);
  else if (copies.length === 0)
    process.stdout.write(app.targets.length < 2 ? 'Only one storage target: nothing to sync.\n' : 'Every target has every backup it should keep.\n');
  else
    printTable(
      ['backup', 'from', 'to', 'result'],
      copies.map((c) => [c.id, c.from, c.to, c.ok ? 'copied' : `FAILED: ${c.error ?? ''}`]),
    );
  return copies.every((c) => c.ok) ? 0 : ERROR_CODES.STORAGE.exit;
}

/** `sync`: copies the good backups a target lacks from one that has them; exits STORAGE's code when a copy failed. */
export function registerSync(program: Command): void {
  program
    .command('sync')
    .description('copy good backups missing from a storage target (e.g. after an outage) from a target that has them, checking checksums')
    .option('--json', 'print the copies as JSON')
    .option(
      '--deleted',
      'also copy backups deleted on an S3 target whose bucket keeps versions (see `list --deleted`) back to every target whose retention keeps them, that one included',
    )
    .action(run('sync', sync));
}

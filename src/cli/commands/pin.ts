import type { Command } from 'commander';
import type { PinOutcome } from '../../backup/pins';
import { ConfigError } from '../../errors';
import { parseBackupId, parseKeep, parseLabel, parseOptionalTarget } from '../input';
import { printTable, printWarning } from '../output';
import { run, setup } from '../run';

interface PinOpts {
  keep?: string;
  note?: string;
  target?: string;
  allTargets?: boolean;
}

/** The target option of pin and unpin: one target, or (the default) every target. */
function scope(opts: PinOpts): string | undefined {
  const target = parseOptionalTarget(opts.target);
  if (target !== undefined && opts.allTargets) {
    throw new ConfigError(
      '--target',
      'and --all-targets cannot be given together',
      'Give --target NAME for one target, or --all-targets (the default) for every target.',
    );
  }
  return target;
}

async function pinCommand(cmd: Command, id: string, opts: PinOpts): Promise<void> {
  parseBackupId(id);
  if (opts.keep === undefined)
    throw new ConfigError('--keep', 'is required', 'Say how long to keep it: --keep 30d, 12w, 6m, 1y, forever, or a date like 2027-01-31.');
  const keepUntil = parseKeep(opts.keep);
  const note = opts.note === undefined ? undefined : parseLabel(opts.note, '--note');
  const target = scope(opts);
  const { app } = await setup(cmd, 'pin', ['state']);
  const { setPin } = await import('../../backup/pins.js');
  const outcomes = await setPin(app, { id, keepUntil, note, target });
  printOutcome(id, outcomes, `pinned ${keepUntil === 'forever' ? 'forever' : `until ${keepUntil}`}`);
  const [{ lifecycleFor }, { idTime }] = await Promise.all([import('../../retention/lifecycle.js'), import('../../repository/manifest.js')]);
  for (const t of app.database.targets) {
    if (t.type !== 's3' || !t.appendOnly || !outcomes.some((o) => o.target === t.name && o.result === 'pinned')) continue;
    const { days } = lifecycleFor(t.name, t.prefix, t.retention);
    const expires = idTime(id) + days * 86400_000;
    if (keepUntil === 'forever' || Date.parse(keepUntil) > expires)
      printWarning(
        `${t.name} does not delete (delete: false): the lifecycle rule for its retention (${days} days) expires this backup about ${new Date(expires).toISOString().slice(0, 10)}, whatever the pin says; keep a copy on another target to keep it longer`,
      );
  }
}

async function unpinCommand(cmd: Command, id: string, opts: PinOpts): Promise<void> {
  parseBackupId(id);
  const target = scope(opts);
  const { app } = await setup(cmd, 'unpin', ['state']);
  const { setPin } = await import('../../backup/pins.js');
  printOutcome(id, await setPin(app, { id, keepUntil: null, target }), 'unpinned', 'Retention treats it like any other backup again.');
}

function printOutcome(id: string, outcomes: PinOutcome[], what: string, then = ''): void {
  if (outcomes.length > 1)
    printTable(
      ['target', 'result'],
      outcomes.map((o) => [o.target, o.result === 'not there' ? 'not there (sync copies it with the pin)' : o.result]),
    );
  const done = outcomes.filter((o) => o.result === 'pinned' || o.result === 'unpinned').map((o) => o.target);
  process.stdout.write(`${id} ${what} on ${done.join(', ')}.${then ? ` ${then}` : ''}\n`);
}

/** `pin` and `unpin`: protect a backup from retention after it was taken, or release it. */
export function registerPin(program: Command): void {
  program
    .command('pin')
    .description('keep a backup longer than retention would, e.g. a milestone (a pin file beside its manifest)')
    .argument('<id>', 'backup id from `list`')
    .option('--keep <duration>', 'how long: 30d, 12w, 6m, 1y (calendar months and years), forever, or a future date (2027-01-31)')
    .option('--note <text>', 'why it is kept, shown by `list` (one line, at most 200 characters)')
    .option('--target <name>', 'pin it on this storage target only')
    .option('--all-targets', 'pin it on every target that holds it (the default); sync carries the pin with the backup')
    .action(run('pin', pinCommand));
  program
    .command('unpin')
    .description('release a pin (also a --keep given at backup time): retention treats the backup like any other')
    .argument('<id>', 'backup id from `list`')
    .option('--target <name>', 'on this storage target only')
    .option('--all-targets', 'on every target that holds it (the default)')
    .action(run('unpin', unpinCommand));
}

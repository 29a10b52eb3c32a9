import type { Command } from 'commander';
import type { PruneResult } from '../../backup/prune';
import type { PitrPruneResult } from '../../pitr/prune-pitr';
import { parseOptionalTarget } from '../input';
import { printTable } from '../output';
import { run, setup } from '../run';

interface PruneOpts {
  dryRun?: boolean;
  damaged?: boolean;
  trustClock?: boolean;
  target?: string;
}

async function pruneCommand(cmd: Command, opts: PruneOpts): Promise<void> {
  parseOptionalTarget(opts.target);
  const { app } = await setup(cmd, 'prune', opts.dryRun ? [] : ['state', 'targets']);
  const { prune } = await import('../../backup/prune.js');
  const results = await prune(app, { dryRun: opts.dryRun === true, target: opts.target, damaged: opts.damaged, trustClock: opts.trustClock });
  for (const result of results) {
    if (results.length > 1) process.stdout.write(`${result.target}:\n`);
    printTargetResult(result, opts);
  }
  const { prunePitr } = await import('../../pitr/prune-pitr.js');
  for (const p of await prunePitr(app, { dryRun: opts.dryRun === true, target: opts.target })) printPitrResult(p, opts);
}

/** A target's point-in-time archive: its base backups' decisions, and the WAL no kept one needs. */
function printPitrResult(p: PitrPruneResult, opts: PruneOpts): void {
  process.stdout.write(`Point-in-time archive on ${p.target}:\n`);
  if (p.error) {
    process.stdout.write(`  not pruned: ${p.error}\n`);
    return;
  }
  const verb = p.appendOnly ? 'left to lifecycle' : opts.dryRun ? 'would delete' : 'deleted';
  printTable(
    ['base backup', 'started (UTC)', 'action', 'why'],
    p.decisions.map((d) => [d.manifest.id, d.manifest.created_at, d.action === 'delete' ? verb : 'keep', d.reason]),
  );
  const wal =
    p.wal.count === 0
      ? 'no WAL file is older than the oldest kept base backup needs'
      : `${p.wal.count} WAL file(s) ${p.wal.first}..${p.wal.last} ${verb}: no kept base backup needs them`;
  process.stdout.write(`${wal}; history files are kept.\n`);
}

/** One target's decisions as a table, then a line that counts them. */
function printTargetResult(result: PruneResult, opts: PruneOpts): void {
  if (result.byLifecycle) return printLifecycleResult(result, opts);
  const { decisions, damaged, orphans, temporaries, locked } = result;
  const verb = opts.dryRun ? 'would delete' : 'deleted';
  const lockOf = new Map(locked.map((l) => [l.manifest.id, l.until]));
  const rows = decisions.map((d) => {
    const until = lockOf.get(d.manifest.id);
    if (until)
      return [
        d.manifest.id,
        d.manifest.created_at,
        opts.dryRun ? 'would leave locked' : 'left locked',
        `${d.reason}; Object Lock holds it until ${until.toISOString()}: a later prune deletes it`,
      ];
    return [d.manifest.id, d.manifest.created_at, d.action === 'delete' ? verb : 'keep', d.reason];
  });
  for (const b of damaged) {
    rows.push([
      b.id,
      b.manifest?.created_at ?? '?',
      opts.damaged ? verb : 'keep',
      `DAMAGED (${b.damage}): never counted${opts.damaged ? '' : '; `prune --damaged` removes it'}`,
    ]);
  }
  for (const o of orphans) rows.push([o.name, '', opts.dryRun ? 'would remove' : 'removed', 'no manifest owns it']);
  for (const name of temporaries) rows.push([name, '', opts.dryRun ? 'would remove' : 'removed', 'left by an interrupted write (backup, sync or reencrypt)']);
  printTable(['id', 'created (UTC)', 'action', 'why'], rows);
  const deleted = decisions.filter((d) => d.action === 'delete').length - locked.length;
  const extra = [
    locked.length > 0 ? `${locked.length} ${opts.dryRun ? 'would be left' : 'left'} for the Object Lock to pass` : '',
    damaged.length > 0 ? `${damaged.length} damaged ${opts.damaged ? (opts.dryRun ? 'would be removed' : 'removed') : 'kept (never counted)'}` : '',
    orphans.length > 0 ? `${orphans.length} object(s) without a manifest ${opts.dryRun ? 'would be removed' : 'removed'}` : '',
    temporaries.length > 0 ? `${temporaries.length} temporary object(s) ${opts.dryRun ? 'would be removed' : 'removed'}` : '',
  ].filter(Boolean);
  process.stdout.write(`${deleted} ${verb}, ${decisions.length - deleted - locked.length} kept${extra.length > 0 ? `; ${extra.join('; ')}` : ''}.\n`);
}

/** An append-only target (delete: false): nothing deleted; what retention would remove is left to the bucket's lifecycle rules. */
function printLifecycleResult({ target, decisions, damaged, orphans, temporaries }: PruneResult, opts: PruneOpts): void {
  const left = 'left to lifecycle';
  const rows = decisions.map((d) => [
    d.manifest.id,
    d.manifest.created_at,
    d.action === 'delete' ? left : 'keep',
    d.action === 'delete' ? `${d.reason}; the bucket's lifecycle rule expires it` : d.reason,
  ]);
  for (const b of damaged) rows.push([b.id, b.manifest?.created_at ?? '?', opts.damaged ? left : 'keep', `DAMAGED (${b.damage}): never counted`]);
  for (const o of orphans) rows.push([o.name, '', left, 'no manifest owns it']);
  for (const name of temporaries) rows.push([name, '', opts.dryRun ? 'would abort' : 'aborted', 'an unfinished upload (aborting it deletes no data)']);
  process.stdout.write(
    `${target} does not delete (delete: false): its backups expire by the bucket's lifecycle rules; \`basement-backup config check\` prints the rule for its retention.\n`,
  );
  printTable(['id', 'created (UTC)', 'action', 'why'], rows);
  const past = decisions.filter((d) => d.action === 'delete').length;
  const extra = [
    damaged.length > 0 ? `${damaged.length} damaged kept` : '',
    orphans.length > 0 ? `${orphans.length} object(s) without a manifest left to lifecycle` : '',
    temporaries.length > 0 ? `${temporaries.length} unfinished upload(s) ${opts.dryRun ? 'would be aborted' : 'aborted'}` : '',
  ].filter(Boolean);
  process.stdout.write(
    `0 deleted, ${past} past retention left to lifecycle, ${decisions.length - past} kept${extra.length > 0 ? `; ${extra.join('; ')}` : ''}.\n`,
  );
}

/** `prune`: applies retention now on every target (or one) and removes objects no manifest owns. */
export function registerPrune(program: Command): void {
  program
    .command('prune')
    .description('apply retention now, and remove objects that no manifest owns and temporary objects interrupted writes left')
    .option('--dry-run', 'only show what would be deleted and why (or why prune would refuse)')
    .option('--damaged', 'also remove damaged backups (retention never deletes them)')
    .option(
      '--trust-clock',
      "apply retention by this machine's clock alone, once you have checked it: when the database server's clock disagrees or cannot be read, or a backup is dated after the current time",
    )
    .option('--target <name>', 'only this storage target (default: every target, each with its own retention)')
    .action(run('prune', pruneCommand));
}

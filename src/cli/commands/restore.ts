import type { Command } from 'commander';
import { BackupError } from '../../errors';
import type { RestoreRequest } from '../../restore/request';
import type { RestoreReport } from '../../restore/restore';
import { parseAppName, parseBackupId, parseDatabaseName, parseJobs, parseOptionalTarget, parseTableName, repeatable } from '../input';
import { printTable } from '../output';
import { run, setup } from '../run';

interface RestoreOpts {
  targetDb?: string;
  replace?: boolean;
  dropOld?: boolean;
  app?: string;
  table: string[];
  withRoles?: boolean;
  yes?: boolean;
  target?: string;
  dryRun?: boolean;
  jobs?: string;
  fromOtherServer?: boolean;
}

/** The request as the use case takes it, every free-text value checked. */
function parseRequest(id: string, opts: RestoreOpts): Omit<RestoreRequest, 'confirm' | 'appControl' | 'onProgress'> {
  return {
    id: parseBackupId(id),
    targetDb: opts.targetDb === undefined ? undefined : parseDatabaseName('--target-db', opts.targetDb),
    replace: opts.replace === true,
    dropOld: opts.dropOld === true,
    appName: opts.app === undefined ? undefined : parseAppName(opts.app),
    tables: opts.table.map(parseTableName),
    withRoles: opts.withRoles === true,
    from: parseOptionalTarget(opts.target),
    jobs: opts.jobs === undefined ? undefined : parseJobs(opts.jobs),
    fromOtherServer: opts.fromOtherServer === true,
  };
}

async function restore(cmd: Command, id: string, opts: RestoreOpts): Promise<void> {
  const request = parseRequest(id, opts);
  const { app, loaded } = await setup(cmd, 'restore', ['state']);
  const [{ restoreBackup }, { pm2Control }, { askYesNo, progressBar }] = await Promise.all([
    import('../../restore/restore.js'),
    import('../../restore/pm2.js'),
    import('../interactive.js'),
  ]);
  const appControl = opts.app ? pm2Control(app.config.pm2Bin, app.config.pm2Env) : undefined;
  if (opts.dryRun) {
    const { printRestoreDryRun } = await import('../dry-run.js');
    await printRestoreDryRun(app, loaded, { ...request, appControl });
    return;
  }
  const bar = progressBar('restoring');
  const confirmPlan = (plan: string) => confirm(plan, opts, askYesNo);
  const report = await restoreBackup(app, { ...request, appControl, onProgress: bar?.update, confirm: confirmPlan }).finally(() => bar?.stop());
  printReport(report);
}

/**
 * Shows the plan and asks on a terminal, unless --yes. Off a terminal a restore into a new
 * database goes ahead, and replacing the live database is refused.
 */
async function confirm(plan: string, opts: RestoreOpts, ask: (question: string) => Promise<boolean>): Promise<boolean> {
  process.stderr.write(plan + '\n');
  if (opts.yes) return true;
  if (process.stdin.isTTY) return ask('Proceed?');
  if (opts.replace) {
    throw new BackupError('REFUSED', 'refusing to replace the live database without confirmation', {
      hint: 'Not on a terminal: add --yes to confirm.',
    });
  }
  return true;
}

function printReport(report: RestoreReport): void {
  const m = report.manifest;
  printTable(
    ['table', 'rows restored', 'rows at backup', ''],
    report.counts.map((c) => [c.table, c.restored, c.recorded ?? '?', c.recorded === null ? '' : c.recorded === c.restored ? 'ok' : 'DIFFERENT']),
  );
  const jobs = report.jobs > 1 ? ` (${report.jobs} pg_restore jobs)` : '';
  process.stdout.write(`Restored ${m.id} (${m.created_at}) into "${report.database}" in ${(report.durationMs / 1000).toFixed(1)}s${jobs}.\n`);
  if (report.note) process.stdout.write(`Note: ${report.note}\n`);
  if (report.rolesCreated.length > 0) process.stdout.write(`Recreated roles: ${report.rolesCreated.join(', ')}.\n`);
  if (report.previous) process.stdout.write(`The previous database is kept as "${report.previous}" (drop it when you are sure).\n`);
  else if (report.previous === null) process.stdout.write('The previous database was dropped.\n');
}

/** `restore`: a backup into a new database, or with --replace as the live one; --dry-run prints the plan. */
export function registerRestore(program: Command): void {
  program
    .command('restore')
    .description('restore a backup (default: the newest) into a new database, or with --replace make it the live one')
    .argument('[id]', 'backup id from `list`, or "latest"', 'latest')
    .option('--target-db <name>', 'restore into this new database (default <db>_restored_<time>)')
    .option('--replace', 'make the restored copy the live database; the old one is kept as <db>_before_restore_<time>')
    .option('--drop-old', 'with --replace: drop the old database after a successful switch')
    .option('--app <name>', 'with --replace: stop this pm2 app for the switch and start it again')
    .option('--table <schema.table>', 'restore only this table with its data into a side database (repeatable)', repeatable, [])
    .option('--with-roles', 'first recreate the roles the backup saved that this server lacks')
    .option('--yes', 'do not ask for confirmation')
    .option('--target <name>', 'restore from this storage target (default: the first)')
    .option('--from-other-server', 'restore a backup taken on another PostgreSQL server (a server that replaced it: new, re-initialised, pg_upgrade)')
    .option('--jobs <n>', 'parallel pg_restore jobs (custom format; default: one stream, or jobs where they pay)')
    .option('--dry-run', 'only print the plan and the exact commands to do it by hand; changes nothing')
    .action(run('restore', restore));
}

import type { Command } from 'commander';
import type { PitrRestoreResult } from '../../pitr/recover';
import { parseOptionalTarget } from '../input';
import { printJson } from '../output';
import { run, setup } from '../run';
import { BackupError } from '../../errors';

interface PitrOpts {
  pgdata: string;
  to?: string;
  toLatest?: boolean;
  toLsn?: string;
  toName?: string;
  target?: string;
  start?: boolean;
  port?: string;
  dryRun?: boolean;
  json?: boolean;
}

function parsePort(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new BackupError('CONFIG', `--port ${text} is not a port`, { hint: 'Give a free TCP port, e.g. --port 5433.' });
  return n;
}

async function pitrRestoreCommand(cmd: Command, opts: PitrOpts): Promise<void> {
  const { recoveryTarget } = await import('../../pitr/recovery-plan.js');
  const target = recoveryTarget(opts);
  const port = parsePort(opts.port);
  const from = parseOptionalTarget(opts.target);
  const { app, loaded } = await setup(cmd, 'pitr-restore');
  const { pitrRestore } = await import('../../pitr/recover.js');
  const result = await pitrRestore(app, {
    pgdata: opts.pgdata,
    target,
    from,
    start: opts.start === true,
    port,
    dryRun: opts.dryRun === true,
    envFiles: loaded.env.files,
    cwd: process.cwd(),
  });
  if (opts.json) printJson(result);
  else if (opts.dryRun) process.stdout.write(dryRunText(result, (await import('../../pipeline/by-hand.js')).decodePipe));
  else process.stdout.write(reportText(result));
}

function reportText(r: PitrRestoreResult): string {
  const lines = [
    `Recovered from base backup ${r.base.id} (ended ${r.base.stop_time}, target ${r.from}) into ${r.pgdata}, to ${r.target}.`,
    r.verified ? 'Its files match the backup_manifest (pg_verifybackup).' : 'pg_verifybackup is not here: the files were checked by the stored checksum only.',
  ];
  if (r.configWritten.length > 0)
    lines.push(
      `The backup has no ${r.configWritten.join(', ')} (the server keeps them outside its data directory, as Debian does): minimal ones were written; copy what this copy needs from the original.`,
    );
  const s = r.started;
  if (!s) {
    lines.push('Start it when ready (recovery runs at start, fetching WAL with wal-fetch):', `  pg_ctl -D ${r.pgdata} -o "-p PORT" start`);
  } else {
    lines.push(
      `Recovery replayed up to the transaction of ${s.time ?? '(none after the base backup)'}${s.lsn ? ` (redo done at ${s.lsn})` : ''} in ${(s.durationMs / 1000).toFixed(1)} s; the server is up on port ${s.port}${s.timeline ? `, timeline ${s.timeline}` : ''}.`,
    );
    if (s.stop) lines.push(`  server: ${s.stop}`);
    lines.push(`Its log: ${s.logFile}. Stop it with: ${s.stopCommand}`);
  }
  return lines.join('\n') + '\n';
}

function dryRunText(r: PitrRestoreResult, decodePipe: (file: string, fileArg: string, key: string) => string[]): string {
  const pipe = decodePipe(r.base.file, r.base.file, '"$BACKUP_AGE_IDENTITY_FILE"');
  return [
    `# pitr-restore --dry-run: recover to ${r.target} into ${r.pgdata}`,
    `# from base backup ${r.base.id} on ${r.from} (started ${r.base.start_time}, ended ${r.base.stop_time}; LSN ${r.base.start_lsn}..${r.base.stop_lsn}, timeline ${r.base.timeline})`,
    "# By hand, without basement-backup (the file from the target's pitr/ folder):",
    `mkdir -m 700 ${r.pgdata}`,
    `${pipe.length > 0 ? pipe.join(' | ') : `cat ${r.base.file}`} | tar -x -f - -C ${r.pgdata}`,
    `cat >> ${r.pgdata}/postgresql.auto.conf <<'EOF'`,
    r.settings.trimEnd(),
    'EOF',
    `touch ${r.pgdata}/recovery.signal`,
    `pg_ctl -D ${r.pgdata} -o "-p PORT" start`,
    '',
  ].join('\n');
}

/** `pitr-restore`: a cluster recovered to a point in time, in a new data directory (docs/pitr.md). */
export function registerPitrRestore(program: Command): void {
  program
    .command('pitr-restore')
    .description('recover the cluster to a point in time into a new data directory, from a base backup and the archived WAL')
    .requiredOption('--pgdata <dir>', 'the new data directory (must not exist or be empty)')
    .option('--to <time>', 'recover to this time, with its zone: "2026-01-22 14:00:00+00"')
    .option('--to-latest', 'recover to the end of the archived WAL')
    .option('--to-lsn <lsn>', 'recover to this WAL position, e.g. 0/16B3740')
    .option('--to-name <name>', 'recover to this restore point (pg_create_restore_point)')
    .option('--target <name>', 'the storage target to recover from (default: the first)')
    .option('--start', 'start the recovered server (as this user, not root) on --port and wait until recovery is done')
    .option('--port <n>', 'the port of the recovered server')
    .option('--dry-run', 'print the plan and the commands to do it by hand; change nothing')
    .option('--json', 'print the result as JSON')
    .action(run('pitr-restore', pitrRestoreCommand));
}

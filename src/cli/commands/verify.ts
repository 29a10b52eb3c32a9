import type { Command } from 'commander';
import type { App } from '../../app';
import { BackupError, ERROR_CODES } from '../../errors';
import type { PitrDrillRecord } from '../../pitr/drill-record';
import type { VerifyReport } from '../../restore/verify';
import { parseBackupId, parseOptionalTarget } from '../input';
import { printJson, printTable } from '../output';
import { run, setup } from '../run';

interface VerifyOpts {
  checksumsOnly?: boolean;
  json?: boolean;
  target?: string;
  fromOtherServer?: boolean;
  pitr?: boolean;
}

async function verify(cmd: Command, id: string, opts: VerifyOpts): Promise<number> {
  parseBackupId(id);
  parseOptionalTarget(opts.target);
  if (opts.pitr) return pitrDrill(cmd, id, opts);
  const { app } = await setup(cmd, 'verify', opts.checksumsOnly ? [] : ['state']);
  return opts.checksumsOnly ? checksums(app, opts) : drill(app, id, opts);
}

/** `--checksums-only`: exits DAMAGED's code when any backup's bytes do not match. */
async function checksums(app: App, opts: VerifyOpts): Promise<number> {
  const { verifyChecksums } = await import('../../restore/verify.js');
  const results = await verifyChecksums(app, opts.target);
  if (opts.json) printJson(results);
  else
    printTable(
      ['id', 'checksum', 'problem'],
      results.map((r) => [r.id, r.ok ? 'ok' : 'BAD', r.error ?? '']),
    );
  return results.every((r) => r.ok) ? 0 : ERROR_CODES.DAMAGED.exit;
}

/** The drill: exits 0 when it passed, else with the code of what failed (VERIFY_FAILED when unknown). */
async function drill(app: App, id: string, opts: VerifyOpts): Promise<number> {
  const { verifyBackup } = await import('../../restore/verify.js');
  const report = await verifyBackup(app, id, { from: opts.target, signal: app.signal, fromOtherServer: opts.fromOtherServer === true });
  const v = report.verification;
  if (opts.json) printJson({ id: report.manifest.id, ...v });
  else printTable(['', ''], drillRows(report));
  // a drill was asked for and only the checksum could be checked: say so in the exit code too
  if (v.ok && v.content) return ERROR_CODES.NO_KEY.exit;
  if (v.ok) return 0;
  return v.error_code && v.error_code in ERROR_CODES ? ERROR_CODES[v.error_code as keyof typeof ERROR_CODES].exit : ERROR_CODES.VERIFY_FAILED.exit;
}

/** `--pitr`: the point-in-time recovery drill; exits 0 when it passed, else with the code of what failed. */
async function pitrDrill(cmd: Command, id: string, opts: VerifyOpts): Promise<number> {
  if (id !== 'latest' || opts.checksumsOnly || opts.fromOtherServer)
    throw new BackupError('CONFIG', '--pitr takes no backup id, --checksums-only or --from-other-server', {
      hint: 'It recovers the newest base backup to a restore point it creates: `basement-backup verify --pitr [--target NAME]`.',
    });
  const { app, loaded } = await setup(cmd, 'verify', ['state']);
  const { pitrDrill: runDrill } = await import('../../pitr/drill.js');
  const { record, failure } = await runDrill(app, { from: opts.target, envFiles: loaded.env.files, cwd: process.cwd() });
  if (opts.json) printJson(record);
  else printTable(['', ''], pitrRows(record, failure));
  return failure ? failure.exitCode : 0;
}

function pitrRows(r: PitrDrillRecord, failure: BackupError | undefined): [string, string][] {
  return [
    ['base backup', `${r.base_backup ?? '-'} on ${r.target}`],
    ['restore point', r.restore_point ? `${r.restore_point} (${r.restore_point_lsn})` : '-'],
    ['recovery time', r.recovery_ms === null ? '-' : `${(r.recovery_ms / 1000).toFixed(1)}s (laid out, replayed, promoted)`],
    ['reached', r.reached ?? '-'],
    ['tables / rows checked', `${r.tables_checked} / ${r.rows_checked}`],
    [
      'exact',
      r.tables_checked === 0
        ? '-'
        : r.exact
          ? 'yes: nothing committed between the digest and the restore point'
          : `no: ${r.committed_between.length} transaction(s) committed in between`,
    ],
    ...(r.skipped_unlogged.length > 0 ? [['not compared', `${r.skipped_unlogged.join(', ')} (UNLOGGED: recovered empty by design)`] as [string, string]] : []),
    ['result', r.ok ? 'PASSED' : `FAILED: ${r.error ?? ''}`],
    ...(failure?.hint ? [['fix', failure.hint] as [string, string]] : []),
    ...r.mismatches.map((mm): [string, string] => [`  ${mm.table}`, `${mm.problem}${r.exact ? '' : ' (changed by a transaction in between: not damage)'}`]),
  ];
}

function drillRows({ manifest, verification: v, failure }: VerifyReport): [string, string][] {
  return [
    ['backup', `${manifest.id} (${manifest.created_at})`],
    ['checksum', v.checksum_ok === null ? 'not checked' : v.checksum_ok ? 'ok' : 'BAD'],
    ['restore time', v.restore_ms === null ? '-' : `${(v.restore_ms / 1000).toFixed(1)}s into an empty database on ${v.server}`],
    ['tables / rows checked', `${v.tables_checked} / ${v.rows_checked} (${manifest.digest_mode})`],
    ['result', v.content ? `checksum ${v.ok ? 'ok' : 'BAD'}; content ${v.content}` : v.ok ? 'PASSED' : `FAILED: ${v.error ?? ''}`],
    ...(v.content
      ? [['fix', 'Set BACKUP_AGE_IDENTITY_FILE, or run `basement-backup verify` on the machine that holds the identity.'] as [string, string]]
      : []),
    ...(failure?.hint ? [['fix', failure.hint] as [string, string]] : []),
    ...v.mismatches.map((mm): [string, string] => [`  ${mm.table}`, mm.problem]),
  ];
}

/** `verify`: a restore drill of one backup, or with --checksums-only every backup's sha256. */
export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description("restore drill: check the checksum, restore into a scratch database, compare every table with the backup's record")
    .argument('[id]', 'backup id from `list`, or "latest"', 'latest')
    .option('--checksums-only', "only check every stored backup's sha256, without restoring")
    .option('--json', 'print the result as JSON')
    .option('--target <name>', 'verify the copy on this storage target (default: the first)')
    .option('--pitr', 'point-in-time recovery drill: a restore point now, the newest base backup recovered to it on a scratch server, every table compared')
    .option('--from-other-server', 'drill a backup taken on another PostgreSQL server than the one DB_* names (e.g. before a pg_upgrade)')
    .action(run('verify', verify));
}

import type { Command } from 'commander';
import type { App } from '../../app';
import type { BackupResult } from '../../backup/run-backup';
import { asBackupError, BackupError } from '../../errors';
import type { Manifest } from '../../storage/manifest';
import { formatBytes } from '../../util/format';
import { parseKeep, parseLabel } from '../input';
import { printWarning } from '../output';
import { run, setup, type GlobalOpts } from '../run';

interface BackupOpts {
  label?: string;
  keep?: string;
  verify?: boolean;
  requireAllTargets?: boolean;
}

async function backup(cmd: Command, opts: BackupOpts): Promise<void> {
  const keep = opts.keep === undefined ? null : parseKeep(opts.keep);
  const label = opts.label === undefined ? undefined : parseLabel(opts.label);
  const { app } = await setup(cmd, 'backup', ['log', 'state', 'targets']);
  const { performBackup } = await import('../../backup/job.js');
  const result = await performBackup(app, { trigger: 'manual', label, keepUntil: keep, signal: app.signal });
  printResult(app, result);
  const m = result.manifest;
  const gate = opts.verify || opts.requireAllTargets;
  if (gate) process.stdout.write(`Backup ID: ${m.id}\n`);
  if (opts.requireAllTargets && result.failedTargets.length > 0) {
    const names = result.failedTargets.map((f) => f.name).join(', ');
    throw new BackupError(
      'STORAGE',
      `backup ${m.id} is stored on ${result.stored.join(', ')} but not on ${names} (--require-all-targets): ${result.failedTargets[0]!.error.message}`,
      {
        hint: `Fix ${names}, then \`basement-backup sync\` copies it there, or run this command again. ${result.failedTargets[0]!.error.hint ?? ''}`.trim(),
      },
    );
  }
  if (opts.verify) await gateDrill(app, m, result.stored[0]!);
  if (gate) process.stdout.write(`To go back to exactly this backup: ${restoreLine(cmd, app, m, result.stored[0]!)}\n`);
}

/** `--verify`: a restore drill of the backup just taken, from the first target that stored it; GATE_DRILL when it does not pass. */
async function gateDrill(app: App, m: Manifest, from: string): Promise<void> {
  const { verifyBackup } = await import('../../restore/verify.js');
  let report: Awaited<ReturnType<typeof verifyBackup>>;
  try {
    report = await verifyBackup(app, m.id, { from, signal: app.signal });
  } catch (thrown) {
    // the drill could not run at all (another drill holds its lock, the drill server is down): the gate stays shut
    const e = asBackupError(thrown);
    if (e.code === 'ABORTED') throw drillStopped(m, e);
    throw new BackupError('GATE_DRILL', `backup ${m.id} is stored, but its restore drill could not run: ${e.message}`, { hint: e.hint, cause: e });
  }
  const { verification: v, failure } = report;
  if (failure?.code === 'ABORTED') throw drillStopped(m, failure);
  if (v.ok && !v.content) {
    const seconds = v.restore_ms === null ? '' : ` in ${(v.restore_ms / 1000).toFixed(1)}s`;
    process.stdout.write(`Restore drill passed: restored${seconds}, ${v.tables_checked} table(s) and ${v.rows_checked} row(s) compared (${m.digest_mode}).\n`);
    return;
  }
  const why = v.content ? `only its checksum could be checked: ${v.content}` : (v.error ?? 'see `basement-backup verify`');
  throw new BackupError('GATE_DRILL', `backup ${m.id} is stored, but its restore drill did not pass: ${why}`, {
    hint: v.content
      ? 'Set BACKUP_AGE_IDENTITY_FILE where the gate runs, so the drill can decrypt and restore it.'
      : `Do not go ahead with the risky change. ${failure?.hint ?? `\`basement-backup verify ${m.id}\` shows the details.`}`,
  });
}

/** A gate stopped by a signal during its drill: interrupted (24), not a failed drill (37): the drill proved nothing either way. */
function drillStopped(m: Manifest, cause: BackupError): BackupError {
  return new BackupError('ABORTED', `backup ${m.id} is stored, but its restore drill was stopped before it finished`, {
    hint: `Nothing was recorded about the drill. Run the gate again, or drill this backup with \`basement-backup verify ${m.id}\`.`,
    cause,
  });
}

/** The one command that restores exactly this backup over the live database (from the target it was drilled on). */
function restoreLine(cmd: Command, app: App, m: Manifest, from: string): string {
  const envFiles = cmd
    .optsWithGlobals<GlobalOpts>()
    .envFile.map((f) => `--env-file ${shellWord(f)} `)
    .join('');
  const target = app.targets.length > 1 && from !== app.targets[0]!.name ? ` --target ${from}` : '';
  const db = app.config.databases.length > 1 ? `--db ${shellWord(app.database.name)} ` : '';
  return `basement-backup ${envFiles}${db}restore ${m.id} --replace${target}`;
}

function shellWord(s: string): string {
  return /^[\w./@:=+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function printResult(app: App, result: BackupResult): void {
  const m = result.manifest;
  process.stdout.write(`Backup completed: ${result.path ?? m.file} (${formatBytes(m.size_bytes)}, sha256 ${m.sha256.slice(0, 12)}…)\n`);
  if (app.targets.length > 1) process.stdout.write(`Stored on: ${result.stored.join(', ')}.\n`);
  for (const r of result.retention) {
    const deleted = r.decisions.filter((d) => d.action === 'delete').length;
    if (deleted > 0) process.stdout.write(`Retention removed ${deleted} old backup(s)${app.targets.length > 1 ? ` from ${r.target}` : ''}.\n`);
  }
  // The backup is complete and checked on at least one target: exit 0 even when retention or
  // another target failed (those are alerted separately), unless --require-all-targets.
  for (const f of result.failedTargets) printWarning(`not stored on ${f.name}: ${f.error.message}`);
  for (const r of result.retentionErrors) printWarning(`retention on ${r.target} failed: ${r.error.message}`);
}

/** `backup`: takes a backup now; exits 0 only when it is complete and checked on a target (with --verify: and its drill passed). */
export function registerBackup(program: Command): void {
  program
    .command('backup')
    .description('take a backup now (e.g. before a risky migration); exits 0 only when it is complete and checked')
    .option('--label <text>', 'a note stored in the manifest, e.g. "before migration 42" (one line, at most 200 characters)')
    .option('--keep <duration>', 'protect it from retention: 30d, 12w, 6m, 1y, forever, or a future date (2027-01-31)')
    .option('--verify', 'then run a restore drill of it; exit 37 when the backup is stored but the drill fails (a gate before a migration)')
    .option('--require-all-targets', 'fail (exit 23) unless it is stored on every storage target')
    .action(run('backup', backup));
}

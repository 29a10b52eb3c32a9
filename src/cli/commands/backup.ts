import type { Command } from 'commander';
import type { App } from '../../app';
import type { BackupResult } from '../../backup/run-backup';
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
  const gate = { verify: opts.verify ?? false, requireAllTargets: opts.requireAllTargets ?? false, envFiles: cmd.optsWithGlobals<GlobalOpts>().envFile };
  const { app } = await setup(cmd, 'backup', ['log', 'state', 'targets']);
  const { performBackup } = await import('../../backup/job.js');
  const { passGate } = await import('../../backup/gate.js');
  const gated = gate.verify || gate.requireAllTargets;
  const after = async (result: BackupResult) => {
    printResult(app, result);
    await passGate(app, result, gate, (line) => process.stdout.write(`${line}\n`));
  };
  // with a gate, the backup's last ping waits for it and says how the command ends
  const result = await performBackup(app, { trigger: 'manual', label, keepUntil: keep, signal: app.signal }, gated ? after : undefined);
  if (!gated) printResult(app, result);
}

function printResult(app: App, result: BackupResult): void {
  const m = result.manifest;
  process.stdout.write(`Backup completed: ${result.path ?? m.file} (${formatBytes(m.size_bytes)}, sha256 ${m.sha256.slice(0, 12)}…)\n`);
  if (app.targets.length > 1) process.stdout.write(`Stored on: ${result.stored.join(', ')}.\n`);
  for (const r of result.retention) {
    const deleted = r.decisions.filter((d) => d.action === 'delete').length - r.locked.length;
    const on = app.targets.length > 1 ? ` on ${r.target}` : '';
    if (r.byLifecycle) {
      if (deleted > 0)
        process.stdout.write(
          `Retention${on} deletes nothing (delete: false): ${deleted} backup(s) past its rules stay for the bucket's lifecycle rules to expire.\n`,
        );
      continue;
    }
    if (deleted > 0) process.stdout.write(`Retention removed ${deleted} old backup(s)${app.targets.length > 1 ? ` from ${r.target}` : ''}.\n`);
    if (r.locked.length > 0)
      process.stdout.write(`Retention left ${r.locked.length} old backup(s)${on} for their Object Lock to pass; a later prune deletes them.\n`);
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

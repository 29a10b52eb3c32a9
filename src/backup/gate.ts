import type { App } from '../app';
import { asBackupError, BackupError } from '../errors';
import type { Manifest } from '../repository/manifest';
import type { BackupResult } from './run-backup';

/** What `backup` is asked to prove beyond a stored, checked backup: a gate before a risky change. */
export interface GateRequest {
  /** `--verify`: a restore drill of the backup just taken. */
  verify: boolean;
  /** `--require-all-targets`: stored on every storage target. */
  requireAllTargets: boolean;
  /** The `--env-file`s the command was given, repeated in the command that goes back to the backup. */
  envFiles: string[];
}

/**
 * The gate of `backup --verify` and `--require-all-targets`, once the backup is taken: its ID, the
 * check that every target stores it, its restore drill, then the one command that goes back to
 * exactly this backup; each line is given to `say` as soon as it is known (the ID first, so that a
 * failure after it still names the backup). Throws STORAGE when a target lacks the backup,
 * GATE_DRILL when its drill does not pass, ABORTED when a signal stops the drill.
 */
export async function passGate(app: App, result: BackupResult, req: GateRequest, say: (line: string) => void): Promise<void> {
  if (!req.verify && !req.requireAllTargets) return;
  const m = result.manifest;
  const from = result.stored[0]!;
  say(`Backup ID: ${m.id}`);
  if (req.requireAllTargets) requireAllTargets(result);
  if (req.verify) say(await gateDrill(app, m, from));
  say(`To go back to exactly this backup: ${restoreLine(app, m, from, req.envFiles)}`);
}

/** `--require-all-targets`: a STORAGE error naming the targets that did not store the backup. */
function requireAllTargets(result: BackupResult): void {
  if (result.failedTargets.length === 0) return;
  const m = result.manifest;
  const names = result.failedTargets.map((f) => f.name).join(', ');
  throw new BackupError(
    'STORAGE',
    `backup ${m.id} is stored on ${result.stored.join(', ')} but not on ${names} (--require-all-targets): ${result.failedTargets[0]!.error.message}`,
    {
      hint: `Fix ${names}, then \`basement-backup sync\` copies it there, or run this command again. ${result.failedTargets[0]!.error.hint ?? ''}`.trim(),
    },
  );
}

/**
 * `--verify`: a restore drill of the backup just taken, from the first target that stored it;
 * GATE_DRILL when it does not pass. Returns the line that says it passed.
 */
async function gateDrill(app: App, m: Manifest, from: string): Promise<string> {
  const { verifyBackup } = await import('../restore/verify.js');
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
    return `Restore drill passed: restored${seconds}, ${v.tables_checked} table(s) and ${v.rows_checked} row(s) compared (${m.digest_mode}).`;
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
function restoreLine(app: App, m: Manifest, from: string, envFiles: string[]): string {
  const files = envFiles.map((f) => `--env-file ${shellWord(f)} `).join('');
  const target = app.targets.length > 1 && from !== app.targets[0]!.name ? ` --target ${from}` : '';
  const db = app.config.databases.length > 1 ? `--db ${shellWord(app.database.name)} ` : '';
  return `basement-backup ${files}${db}restore ${m.id} --replace${target}`;
}

function shellWord(s: string): string {
  return /^[\w./@:=+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

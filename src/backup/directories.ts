import type { Settings, TargetConfig } from '../config/types';
import { LOG_FILES } from '../logger';
import { checkWritableDir, type DirProblem } from '../util/dirs';

/** What basement-backup writes on this machine: its logs, its locks and state, and local targets. */
export type DirRole = 'log' | 'state' | 'targets';

export interface DirCheck {
  role: DirRole;
  /** The setting that names the directory, e.g. LOG_DIR. */
  setting: string;
  dir: string;
  /** Undefined when the directory is usable. */
  problem: DirProblem | undefined;
}

/**
 * Checks that this user can write the directories of `roles` (creating them, 0700, when missing):
 * the local ones of `targets` first, then the state directory (by default inside BACKUP_DIR), then LOG_DIR.
 */
export function checkDirectories(config: Pick<Settings, 'stateDir' | 'logDir'>, targets: readonly TargetConfig[], roles: readonly DirRole[]): DirCheck[] {
  const out: DirCheck[] = [];
  if (roles.includes('targets')) {
    for (const t of targets) {
      if (t.type === 'local') out.push({ role: 'targets', setting: t.setting, dir: t.path, problem: checkWritableDir(t.path, t.setting) });
    }
  }
  if (roles.includes('state')) {
    out.push({ role: 'state', setting: 'BACKUP_STATE_DIR', dir: config.stateDir, problem: checkWritableDir(config.stateDir, 'BACKUP_STATE_DIR') });
  }
  if (roles.includes('log')) {
    out.push({ role: 'log', setting: 'LOG_DIR', dir: config.logDir, problem: checkWritableDir(config.logDir, 'LOG_DIR', LOG_FILES) });
  }
  return out;
}

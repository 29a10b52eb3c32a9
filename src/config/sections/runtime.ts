import os from 'node:os';
import path from 'node:path';
import { childEnvironment } from '../../util/child-env';
import type { Reader } from '../reader';
import type { Settings } from '../types';

/** The settings of how basement-backup runs on this machine, apart from storage, alerts and encryption. */
export type RuntimeSettings = Omit<
  Settings,
  'backupDir' | 'timezone' | 'compression' | 'minFreeBytes' | 'alert' | 'notify' | 'monitor' | 'pitr' | 'encryption' | 'ageIdentityFile' | 'ageProgram'
>;

const LOG_LEVELS = ['error', 'warn', 'info', 'debug'];

/** BACKUP_STALL_MINUTES, in ms. */
function stallMs(r: Reader): number {
  const hint =
    'Set BACKUP_STALL_MINUTES to how many minutes pg_dump or pg_restore may show no progress before it is stopped, e.g. 30 (decimals allowed: 0.5 is 30 seconds).';
  return Math.round(r.decimal('BACKUP_STALL_MINUTES', 30, 7 * 24 * 60, hint) * 60_000);
}

/** BACKUP_RESTORE_JOBS: `auto` (undefined) or 1–16. */
function restoreJobs(r: Reader): number | undefined {
  const raw = r.raw('BACKUP_RESTORE_JOBS');
  if (raw === undefined || raw.toLowerCase() === 'auto') return undefined;
  return r.int('BACKUP_RESTORE_JOBS', 1, 1, 16, 'Set BACKUP_RESTORE_JOBS to auto, or to how many pg_restore jobs to run, e.g. 2.');
}

/**
 * How it runs here: the state and temporary directories, logging, limits (parallel backups,
 * restore jobs, stalls, the shutdown grace), the programs it starts (pg_dump's, zstd, pm2) and
 * what they may see of its environment.
 */
export function parseRuntime(r: Reader, backupDir: string, cwd: string, processEnv: NodeJS.ProcessEnv): RuntimeSettings {
  const pgBinDir = r.raw('PG_BIN_DIR');
  const logLevel = r.oneOf('LOG_LEVEL', 'info', LOG_LEVELS);
  // from the process environment only, as the child would inherit it; not from env files
  const childEnv = childEnvironment(processEnv);
  return {
    maxParallel: r.int('BACKUP_MAX_PARALLEL', 1, 1, 64, 'Set BACKUP_MAX_PARALLEL to how many databases may be backed up at once, e.g. 1.'),
    stateDir: r.dir('BACKUP_STATE_DIR', path.join(backupDir, '.basement-backup')),
    restoreJobs: restoreJobs(r),
    tempDir: r.dir('BACKUP_TEMP_DIR', os.tmpdir()),
    catchUp: r.bool('BACKUP_CATCH_UP', true),
    zstdProgram: r.raw('BACKUP_ZSTD_PROGRAM'),
    pgBinDir: pgBinDir ? path.resolve(cwd, pgBinDir) : undefined,
    logDir: r.dir('LOG_DIR', './logs'),
    logLevel,
    logMaxBytes: r.int('LOG_MAX_SIZE_MB', 10, 1, 10_000) * 1024 * 1024,
    logMaxFiles: r.int('LOG_MAX_FILES', 5, 1, 1000),
    shutdownGraceSeconds: r.int('SHUTDOWN_GRACE_SECONDS', 30, 0, 86400),
    stallMs: stallMs(r),
    pm2Bin: r.string('PM2_BIN', 'pm2'),
    pm2LogFiles: ['pm_out_log_path', 'pm_err_log_path', 'pm_log_path']
      .map((v) => r.raw(v))
      .filter((f): f is string => f !== undefined && f !== '/dev/null' && path.isAbsolute(f)),
    childEnv,
    pm2Env: { ...childEnv, ...(processEnv.PM2_HOME ? { PM2_HOME: processEnv.PM2_HOME } : {}) },
  };
}

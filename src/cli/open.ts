import type { Command } from 'commander';
import { createApp, type App } from '../app';
import { checkDirectories, type DirRole } from '../backup/directories';
import { forDatabase, loadConfig, parseStartAlerts } from '../config';
import { loadEnv } from '../config/env-files';
import type { DatabaseEntry, LoadedConfig } from '../config/types';
import { BackupError } from '../errors';
import { initLogger } from '../logger';
import { Alerter } from '../notify/alerts';
import { smtpSender } from '../notify/mailer';
import { printWarning } from './output';
import type { GlobalOpts } from './options';
import type { StopSignals } from './stop-signals';

/**
 * What a command needs before its work, loaded only once it runs (`setup` in run.ts): the
 * configuration, its directories checked, the logger, the App. `--version`, `--help` and a
 * command's options load none of it.
 */

/** Commands whose failures are alerted by mail even when the configuration itself is broken. */
const UNATTENDED = new Set(['daemon', 'backup']);
/** Errors of unattended commands that cannot start, with why, to be mailed (startFailure). */
const configFailures = new WeakMap<BackupError, string>();

/**
 * Commands that use no schedule, which read the configuration without checking its cron
 * expressions and time zone: wal-push and wal-fetch (and the prefetcher) run once per WAL file,
 * as PostgreSQL's archive_command and restore_command, where a typo in VERIFY_SCHEDULE must not
 * stop archiving or recovery, and where loading the cron parsers and the time-zone data would
 * add ~50 ms to every start; a base backup by hand likewise. The daemon, `config check` and
 * every other command check them.
 */
const NO_SCHEDULES = new Set(['wal-push', 'wal-fetch', 'wal-prefetch', 'basebackup']);

/** The commands an operator runs by hand that may ask for an identity's passphrase on a terminal (never the daemon). */
const ASKS = new Set(['restore', 'verify', 'reencrypt', 'config check']);

/** Asks on the terminal without echoing (loaded only when asked). */
async function askSecret(prompt: string): Promise<string> {
  const { askHidden } = await import('./interactive.js');
  return askHidden(prompt);
}

/** See `setup` in run.ts. */
export function openApp(cmd: Command, name: string, writes: readonly DirRole[], stops: StopSignals | undefined): { app: App; loaded: LoadedConfig } {
  const { loaded, open } = prepare(cmd, name, writes, stops);
  return { app: open(forDatabase(loaded.config, cmd.optsWithGlobals<GlobalOpts>().db)), loaded };
}

/** See `setupEach` in run.ts. */
export function openApps(cmd: Command, name: string, writes: readonly DirRole[], stops: StopSignals | undefined): { apps: App[]; loaded: LoadedConfig } {
  const { loaded, open } = prepare(cmd, name, writes, stops);
  const { db } = cmd.optsWithGlobals<GlobalOpts>();
  const names = db === undefined ? loaded.config.databases.map((d) => d.name) : [db];
  return { apps: names.map((n) => open(forDatabase(loaded.config, n))), loaded };
}

function prepare(
  cmd: Command,
  name: string,
  writes: readonly DirRole[],
  stops: StopSignals | undefined,
): { loaded: LoadedConfig; open: (database: DatabaseEntry) => App } {
  const { envFile } = cmd.optsWithGlobals<GlobalOpts>();
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig(envFile, undefined, undefined, { checkSchedules: !NO_SCHEDULES.has(name) });
  } catch (err) {
    // only a configuration that cannot be loaded is mailed from here; every later failure has its own alert
    if (err instanceof BackupError && UNATTENDED.has(name)) configFailures.set(err, 'bad configuration');
    throw err;
  }
  const { config } = loaded;
  // the directories of every database's targets (each target once)
  const targets = [...new Map(config.databases.flatMap((d) => d.targets).map((t) => [t.name, t])).values()];
  const checks = checkDirectories(config, targets, [...writes, 'log']);
  const logProblem = checks.find((c) => c.role === 'log')?.problem;
  initLogger({
    dir: logProblem ? undefined : config.logDir,
    level: config.logLevel,
    maxBytes: config.logMaxBytes,
    maxFiles: config.logMaxFiles,
    consoleStream: name === 'daemon' ? 'stdout' : 'stderr',
    consoleLevel: name === 'daemon' || name === 'backup' || name === 'wal-receive' || config.logLevel === 'debug' ? config.logLevel : 'warn',
  });
  const unusable = checks
    .filter((c) => c.problem && writes.includes(c.role))
    .map((c) => new BackupError('CONFIG', c.problem!.message, { hint: c.problem!.hint }));
  if (unusable.length > 0) {
    const err = Object.assign(unusable[0]!, { all: unusable });
    if (UNATTENDED.has(name)) configFailures.set(err, 'a directory it writes is not usable');
    throw err;
  }
  if (logProblem) printWarning(`${logProblem.message}; logging to the console only\n  fix: ${logProblem.hint}`);
  const ask = ASKS.has(name) && process.stdin.isTTY && process.stderr.isTTY ? askSecret : undefined;
  return { loaded, open: (database) => createApp(config, database, { askSecret: ask, signal: stops?.signal, holdStop: stops?.hold }) };
}

/**
 * An unattended command that could not start (its configuration, a directory) is reported by mail
 * and to BACKUP_WEBHOOK_URL too, when those settings still work.
 */
export async function mailStartFailure(err: BackupError, command: string, envFile: string[]): Promise<void> {
  const why = configFailures.get(err);
  if (!why) return;
  try {
    const { alert, webhook } = parseStartAlerts(loadEnv(envFile).vars);
    if (!alert && !webhook) return;
    const alerter = new Alerter(alert && smtpSender(alert), webhook);
    await alerter.send({ kind: 'problem', what: `basement-backup ${command} cannot start: ${why}`, error: err });
  } catch {
    // the error is printed anyway
  }
}

import type { Command } from 'commander';
import { createApp, type App } from '../app';
import { checkDirectories, type DirRole } from '../backup/directories';
import { forDatabase, loadConfig, parseAlertConfig, type Config, type LoadedConfig } from '../config';
import { loadEnv } from '../config/env-files';
import { asBackupError, BackupError } from '../errors';
import { closeLogger, initLogger, log } from '../logger';
import { Alerter } from '../notify/alerts';
import { smtpSender } from '../notify/mailer';
import { exitWhenWritten } from './exit';
import { printError, printWarning } from './output';
import { StopSignals } from './stop-signals';

/** The options every command inherits from the program. */
export interface GlobalOpts {
  envFile: string[];
  /** `--db NAME`: the database (of BACKUP_CONFIG_FILE's `databases:`) the command is about. */
  db?: string;
}

/** Commands whose failures are alerted by mail even when the configuration itself is broken. */
const UNATTENDED = new Set(['daemon', 'backup']);
/** Errors of unattended commands that cannot start, with why, to be mailed from `run`. */
const configFailures = new WeakMap<BackupError, string>();

/** The commands an operator runs by hand that may ask for an identity's passphrase on a terminal (never the daemon). */
const ASKS = new Set(['restore', 'verify', 'reencrypt', 'config check']);

/**
 * Commands that stop cleanly on SIGINT or SIGTERM: what they run is stopped, a partly restored or
 * scratch database dropped, temporary files removed (a backup's too, and its gate's drill), and
 * they exit as ABORTED. A second signal exits at once; during the switch of `restore --replace`
 * every signal waits until the switch is done (StopSignals). Other commands keep the default (the
 * signal ends the process).
 */
const STOPPABLE = new Set(['restore', 'verify', 'backup']);
/** Set while a stoppable command runs: its stop signals. */
let stopping: StopSignals | undefined;

/** Asks on the terminal without echoing (loaded only when asked). */
async function askSecret(prompt: string): Promise<string> {
  const { askHidden } = await import('./interactive.js');
  return askHidden(prompt);
}

/**
 * Loads the configuration, checks the directories the command writes (`writes`; see README
 * "Directories") and starts logging. A directory it needs that cannot be written is a
 * configuration error (exit 2). LOG_DIR is checked for every command: those that do not need it
 * log to the console only, with a warning.
 */
export function setup(cmd: Command, name: string, writes: readonly DirRole[] = []): { app: App; loaded: LoadedConfig } {
  const { loaded, open } = prepare(cmd, name, writes);
  const config = forDatabase(loaded.config, cmd.optsWithGlobals<GlobalOpts>().db);
  return { app: open(config), loaded: { ...loaded, config } };
}

/**
 * Like `setup`, for the commands about every database (daemon, status, config check): one App per
 * database configured, or only the one `--db` names.
 */
export function setupEach(cmd: Command, name: string, writes: readonly DirRole[] = []): { apps: App[]; loaded: LoadedConfig } {
  const { loaded, open } = prepare(cmd, name, writes);
  const { db } = cmd.optsWithGlobals<GlobalOpts>();
  const names = db === undefined ? loaded.config.databases.map((d) => d.name) : [db];
  return { apps: names.map((n) => open(forDatabase(loaded.config, n))), loaded };
}

function prepare(cmd: Command, name: string, writes: readonly DirRole[]): { loaded: LoadedConfig; open: (config: Config) => App } {
  const { envFile } = cmd.optsWithGlobals<GlobalOpts>();
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig(envFile);
  } catch (err) {
    // only a configuration that cannot be loaded is mailed from here; every later failure has its own alert
    if (err instanceof BackupError && UNATTENDED.has(name)) configFailures.set(err, 'bad configuration');
    throw err;
  }
  const { config } = loaded;
  // the directories of every database's targets (each target once)
  const targets = [...new Map(config.databases.flatMap((d) => d.targets).map((t) => [t.name, t])).values()];
  const checks = checkDirectories({ ...config, targets: targets.length > 0 ? targets : config.targets }, [...writes, 'log']);
  const logProblem = checks.find((c) => c.role === 'log')?.problem;
  initLogger({
    dir: logProblem ? undefined : config.logDir,
    level: config.logLevel,
    maxBytes: config.logMaxBytes,
    maxFiles: config.logMaxFiles,
    consoleStream: name === 'daemon' ? 'stdout' : 'stderr',
    consoleLevel: name === 'daemon' || name === 'backup' || config.logLevel === 'debug' ? config.logLevel : 'warn',
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
  const stops = STOPPABLE.has(name) ? stopping : undefined;
  return { loaded, open: (c) => createApp(c, { askSecret: ask, signal: stops?.signal, holdStop: stops?.hold }) };
}

/** Reports a configuration error by mail too when the alert settings still work. */
async function alertConfigError(err: BackupError, command: string, why: string, envFile: string[]): Promise<void> {
  try {
    const alert = parseAlertConfig(loadEnv(envFile).vars);
    if (!alert) return;
    await new Alerter(smtpSender(alert)).send({ kind: 'problem', what: `basement-backup ${command} cannot start: ${why}`, error: err });
  } catch {
    // the error is printed anyway
  }
}

/**
 * Wraps a command's body as its commander action: the body gets the command first, then the
 * arguments and options. What it returns (or 0) is the exit code; an error is printed, mailed
 * when it stopped an unattended command from starting, and exits with its code. The logger,
 * stdout and stderr are flushed before the process exits.
 */
export function run(name: string, fn: (cmd: Command, ...args: never[]) => Promise<number | void>) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    if (STOPPABLE.has(name)) {
      stopping = new StopSignals();
      process.on('SIGINT', stopping.handle);
      process.on('SIGTERM', stopping.handle);
    }
    let code = 0;
    try {
      code = (await fn(cmd, ...(args.slice(0, -1) as never[]))) ?? 0;
    } catch (thrown) {
      const err = asBackupError(thrown);
      printError(err);
      if (err.code === 'INTERNAL') log.error('unexpected error', { error: err.message, stack: (thrown as Error).stack });
      const why = configFailures.get(err);
      if (why) await alertConfigError(err, name, why, cmd.optsWithGlobals<GlobalOpts>().envFile);
      code = err.exitCode;
    }
    await closeLogger();
    await exitWhenWritten(code);
  };
}

import type { Command } from 'commander';
import type { App } from '../app';
import type { DirRole } from '../backup/directories';
import type { LoadedConfig } from '../config/types';
import { asBackupError } from '../errors';
import { exitWhenWritten } from './exit';
import { printError } from './output';
import type { GlobalOpts } from './options';
import type { StopSignals } from './stop-signals';

export type { GlobalOpts } from './options';

/**
 * Commands that stop cleanly on SIGINT or SIGTERM: what they run is stopped, a partly restored or
 * scratch database dropped, temporary files removed (a backup's too, and its gate's drill), and
 * they exit as ABORTED. A second signal exits at once; during the switch of `restore --replace`
 * every signal waits until the switch is done (StopSignals). Other commands keep the default (the
 * signal ends the process).
 */
const STOPPABLE = new Set(['restore', 'verify', 'backup', 'pitr-restore', 'basebackup']);
/** Set while a stoppable command runs: its stop signals. */
let stopping: StopSignals | undefined;
/** What `setup` loads (cli/open.ts), once a command has asked for it. */
let opened: typeof import('./open') | undefined;

async function open(): Promise<typeof import('./open')> {
  opened ??= await import('./open.js');
  return opened;
}

/**
 * Loads the configuration, checks the directories the command writes (`writes`; see README
 * "Directories") and starts logging. A directory it needs that cannot be written is a
 * configuration error (exit 2). LOG_DIR is checked for every command: those that do not need it
 * log to the console only, with a warning. What it needs is loaded only now, so that a command's
 * options, `--help` and `--version` start fast.
 */
export async function setup(cmd: Command, name: string, writes: readonly DirRole[] = []): Promise<{ app: App; loaded: LoadedConfig }> {
  return (await open()).openApp(cmd, name, writes, stopping);
}

/** What stops a stoppable command (its first SIGINT or SIGTERM); one that never fires for the others. */
export function stopSignal(): AbortSignal {
  return stopping?.signal ?? new AbortController().signal;
}

/**
 * Like `setup`, for the commands about every database (daemon, status, config check): one App per
 * database configured, or only the one `--db` names.
 */
export async function setupEach(cmd: Command, name: string, writes: readonly DirRole[] = []): Promise<{ apps: App[]; loaded: LoadedConfig }> {
  return (await open()).openApps(cmd, name, writes, stopping);
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
      const { StopSignals } = await import('./stop-signals.js');
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
      // before setup, nothing was logged and no alert can be configured
      if (opened) {
        const { log } = await import('../logger.js');
        if (err.code === 'INTERNAL') log.error('unexpected error', { error: err.message, stack: (thrown as Error).stack });
        await opened.mailStartFailure(err, name, cmd.optsWithGlobals<GlobalOpts>().envFile);
      }
      code = err.exitCode;
    }
    if (opened) await (await import('../logger.js')).closeLogger();
    await exitWhenWritten(code);
  };
}

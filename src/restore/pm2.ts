import { stripVTControlCharacters } from 'node:util';
import { BackupError } from '../errors';
import { outputOf, runProgram, type ProgramExit } from '../pg/program';

/** One app as pm2 lists it. */
export interface AppInfo {
  name: string;
  id: number;
  /** online, stopped, errored, … */
  status: string;
}

/** The slice of pm2 a restore needs: find the app first, stop it before the switch, start it after. */
export interface AppControl {
  /** The apps the pm2 of this user runs. */
  list(): Promise<AppInfo[]>;
  stop(name: string): Promise<void>;
  start(name: string): Promise<void>;
}

/** How long pm2 may take to list the apps, and to stop or start one. */
const DEADLINES = { listMs: 30_000, controlMs: 60_000 };

/** How to get pm2 when `bin` is not there. */
export function pm2InstallHint(bin: string): string {
  return (
    `Install pm2 for the user that runs the app (\`npm install -g pm2\`), or set PM2_BIN to the path of its pm2 ` +
    `(\`command -v pm2\` in that user's shell${bin === 'pm2' ? '' : `; PM2_BIN is now ${bin}`}).`
  );
}

/** pm2 jlist prints every app's environment: up to this much output is read. */
const MAX_OUTPUT_CHARS = 256 * 1024 * 1024;

/**
 * Runs the `pm2` CLI (PM2_BIN, or pm2 on PATH) in `env` (Settings.pm2Env: PATH, HOME, the caller's
 * PM2_HOME, no secret) through the one child-process runner; each call has a deadline. It runs in
 * a session of its own: a Ctrl-C on the terminal does not cut `pm2 stop` short (the stop signal
 * of a restore waits for the switch, see StopHold).
 */
export function pm2Control(pm2Bin: string, env: NodeJS.ProcessEnv, deadlines = DEADLINES): AppControl {
  const run = async (args: string[], timeoutMs: number): Promise<string> => {
    const program = runProgram({ name: 'pm2', file: pm2Bin, args, env, timeoutMs, detached: true });
    const exit = await outputOf(program, MAX_OUTPUT_CHARS);
    if (exit.code === 0 && !exit.error) return exit.stdout;
    // what pm2 said on stderr, else on stdout (where it prints its table of apps after an error)
    const said = program.tail.some((l) => l.trim()) ? [...program.tail] : exit.stdout.split('\n');
    throw pm2Failure({ what: `pm2 ${args.join(' ')}`, pm2Bin, timeoutMs }, exit, said);
  };
  return {
    async list() {
      const out = await run(['jlist'], deadlines.listMs);
      // a pm2 daemon started by this call first prints a few "[PM2] …" lines
      const json = stripVTControlCharacters(out)
        .split('\n')
        .filter((l) => l.startsWith('['))
        .at(-1);
      try {
        const apps = JSON.parse(json ?? '') as { name?: string; pm_id?: number; pm2_env?: { status?: string } }[];
        return apps.map((a) => ({ name: String(a.name), id: Number(a.pm_id), status: a.pm2_env?.status ?? 'unknown' }));
      } catch {
        throw new BackupError('APP_CONTROL', `pm2 jlist printed no list of apps: ${stripVTControlCharacters(out).trim().slice(0, 200)}`, {
          hint: "Check that `pm2 list` works as the user that owns the pm2 processes, or set PM2_BIN to that user's pm2.",
        });
      }
    },
    stop: async (name) => void (await run(['stop', name], deadlines.controlMs)),
    start: async (name) => void (await run(['start', name], deadlines.controlMs)),
  };
}

/** Why a pm2 command failed, with the fix: not found, its deadline, a signal, or what pm2 said. */
function pm2Failure(o: { what: string; pm2Bin: string; timeoutMs: number }, exit: ProgramExit, output: string[]): BackupError {
  const { what, pm2Bin } = o;
  if (exit.error && 'code' in exit.error && exit.error.code === 'ENOENT') {
    return new BackupError('APP_CONTROL', `${what} failed: ${pm2Bin} was not found${pm2Bin.includes('/') ? '' : ' on the PATH'}`, {
      hint: pm2InstallHint(pm2Bin),
    });
  }
  if (exit.timedOut || exit.signal) {
    return new BackupError('APP_CONTROL', exit.timedOut ? `${what} did not finish within ${o.timeoutMs / 1000}s` : `${what} was ended by ${exit.signal}`, {
      hint: 'Check that pm2 answers (`pm2 list`) as the user that owns the pm2 processes.',
    });
  }
  const said = stripVTControlCharacters(output.join('\n'))
    .split('\n')
    .map((l) => l.trim().slice(0, 200))
    .filter(Boolean)
    .slice(-3)
    .join(' ');
  return new BackupError('APP_CONTROL', `${what} failed: ${said || stripVTControlCharacters(exit.error?.message ?? `it exited with ${exit.code}`)}`, {
    hint: "Check the app with `pm2 list`, run as the user that owns the pm2 processes, or set PM2_BIN to that user's pm2.",
  });
}

import { execFile } from 'node:child_process';
import { stripVTControlCharacters } from 'node:util';
import { BackupError } from '../errors';

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

/**
 * Runs the `pm2` CLI (PM2_BIN, or pm2 on PATH) in `env` (Config.pm2Env: PATH, HOME, the caller's
 * PM2_HOME, no secret); each call has a deadline.
 */
export function pm2Control(pm2Bin: string, env: NodeJS.ProcessEnv, deadlines = DEADLINES): AppControl {
  const run = (args: string[], timeout: number) =>
    new Promise<string>((resolve, reject) => {
      // pm2 colours its output even into a pipe; jlist prints every app's environment, hence the buffer
      execFile(pm2Bin, args, { env, timeout, killSignal: 'SIGKILL', maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
        const what = `pm2 ${args.join(' ')}`;
        if (e.code === 'ENOENT') {
          return reject(
            new BackupError('APP_CONTROL', `${what} failed: ${pm2Bin} was not found${pm2Bin.includes('/') ? '' : ' on the PATH'}`, {
              hint: pm2InstallHint(pm2Bin),
            }),
          );
        }
        if (e.killed || e.signal) {
          return reject(
            new BackupError('APP_CONTROL', `${what} did not finish within ${timeout / 1000}s`, {
              hint: 'Check that pm2 answers (`pm2 list`) as the user that owns the pm2 processes.',
            }),
          );
        }
        const said = stripVTControlCharacters(`${stderr}\n${stdout}`)
          .split('\n')
          .map((l) => l.trim().slice(0, 200))
          .filter(Boolean)
          .slice(-3)
          .join(' ');
        reject(
          new BackupError('APP_CONTROL', `${what} failed: ${said || stripVTControlCharacters(e.message)}`, {
            hint: "Check the app with `pm2 list`, run as the user that owns the pm2 processes, or set PM2_BIN to that user's pm2.",
          }),
        );
      });
    });
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

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BackupError } from '../errors';

const execFileP = promisify(execFile);

/** The slice of pm2 a restore needs: stop the app before the switch, start it after. */
export interface AppControl {
  stop(name: string): Promise<void>;
  start(name: string): Promise<void>;
}

/** Runs the `pm2` CLI (PM2_BIN, or pm2 on PATH) with the caller's PM2_HOME. */
export function pm2Control(pm2Bin: string): AppControl {
  const run = async (verb: 'stop' | 'start', name: string) => {
    try {
      await execFileP(pm2Bin, [verb, name], { timeout: 60_000 });
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; code?: string | number; message: string };
      const why = e.code === 'ENOENT' ? `${pm2Bin} not found` : (e.stderr || e.stdout || e.message).trim().split('\n').slice(-3).join(' ');
      throw new BackupError('APP_CONTROL', `pm2 ${verb} ${name} failed: ${why}`, {
        hint: `Check the app name with \`pm2 list\` (run as the user that owns the pm2 processes), or set PM2_BIN to pm2's path.`,
      });
    }
  };
  return { stop: (name) => run('stop', name), start: (name) => run('start', name) };
}

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { onTestFinished } from 'vitest';
import { waitFor } from './cli';

const REPO = path.resolve(__dirname, '../..');
const PM2 = path.join(REPO, 'node_modules/pm2/bin/pm2');

/** Runs `pm2 kill` (through `kill`) and waits until the throwaway PM2_HOME's daemon has exited. */
export async function killPm2Daemon(pm2Home: string, kill: () => Promise<unknown>): Promise<void> {
  const pidFile = path.join(pm2Home, 'pm2.pid');
  const godPid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8')) : 0;
  await kill();
  await waitFor(
    () => {
      if (godPid <= 0) return true;
      try {
        process.kill(godPid, 0);
        return false;
      } catch {
        return true;
      }
    },
    10_000,
    'the pm2 daemon to exit',
  );
}

export interface Pm2App {
  name: string;
  pid: number;
  pm2_env: {
    status: string;
    restart_time: number;
    pm_exec_path: string;
    exit_code?: number;
    pm_out_log_path: string;
    pm_err_log_path: string;
    args?: string[];
  };
}

export interface Pm2Sandbox {
  home: string;
  /** The ecosystem file pm2 starts. */
  ecosystem: string;
  /** The app's folder (the ecosystem's `cwd`), where pm2 writes its own logs/. */
  appDir: string;
  pm2: (...args: string[]) => Promise<string>;
  /** The basement-backup app as `pm2 jlist` shows it. */
  app: () => Promise<Pm2App | undefined>;
}

/**
 * pm2 with a throwaway PM2_HOME under `dir`, its daemon killed when the test finishes. With
 * `ownAppDir`, the repository's ecosystem.config.js is copied into a folder of its own (with a
 * link to dist/), so pm2's own log files start fresh there instead of in the repository's logs/.
 */
export function pm2Sandbox(dir: string, env: Record<string, string>, opts: { ownAppDir?: boolean } = {}): Pm2Sandbox {
  const home = path.join(dir, 'pm2');
  fs.mkdirSync(home);
  // An existing "touch" file skips pm2's first-run banner and online version check.
  fs.writeFileSync(path.join(home, 'touch'), String(Date.now()));
  let appDir = REPO;
  if (opts.ownAppDir) {
    appDir = path.join(dir, 'app');
    fs.mkdirSync(appDir);
    fs.copyFileSync(path.join(REPO, 'ecosystem.config.js'), path.join(appDir, 'ecosystem.config.js'));
    fs.symlinkSync(path.join(REPO, 'dist'), path.join(appDir, 'dist'));
  }
  const pm2Env = { ...env, PM2_HOME: home, PM2_DISABLE_VERSION_CHECK: 'true' };
  const pm2 = async (...args: string[]) => (await promisify(execFile)(process.execPath, [PM2, ...args], { env: pm2Env, cwd: dir, timeout: 90_000 })).stdout;
  onTestFinished(() => killPm2Daemon(home, () => pm2('kill')));
  return {
    home,
    ecosystem: path.join(appDir, 'ecosystem.config.js'),
    appDir,
    pm2,
    app: async () => (JSON.parse(await pm2('jlist')) as Pm2App[]).find((a) => a.name === 'basement-backup'),
  };
}

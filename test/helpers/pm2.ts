import fs from 'node:fs';
import path from 'node:path';
import { waitFor } from './cli';

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

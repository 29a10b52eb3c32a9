import type { Command } from 'commander';
import { run, setupEach } from '../run';

async function daemon(cmd: Command): Promise<number> {
  const { runDaemonProcess } = await import('../../daemon/process.js');
  const { apps, loaded } = await setupEach(cmd, 'daemon', ['log', 'state', 'targets']);
  // the PITR drill's recovered server fetches WAL with this configuration
  return runDaemonProcess(apps, { envFiles: loaded.env.files });
}

/** `daemon`: runs backups on the schedule until stopped; what pm2 runs. */
export function registerDaemon(program: Command): void {
  program.command('daemon').description('run backups on BACKUP_SCHEDULE until stopped (what pm2 runs)').action(run('daemon', daemon));
}

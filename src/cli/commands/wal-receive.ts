import type { Command } from 'commander';
import { ERROR_CODES } from '../../errors';
import { run, setup } from '../run';

/**
 * `wal-receive`: the WAL receiver in the foreground until SIGINT or SIGTERM, then a clean stop
 * (pg_receivewal keeps its `.partial`, pushes in flight finish) and exit 0. A second signal exits
 * at once. A role without REPLICATION or a missing pg_hba.conf line exits with its code and fix.
 */
async function walReceive(cmd: Command): Promise<number> {
  const { app } = await setup(cmd, 'wal-receive', ['log', 'state']);
  // loaded only once it runs: `--help` and `--version` start without the logger
  const [{ WalReceiver }, { log }] = await Promise.all([import('../../pitr/receive.js'), import('../../logger.js')]);
  const receiver = new WalReceiver(app, {
    onFailure: (err) => log.warn(err.message, { hint: err.hint }),
  });
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) process.exit(ERROR_CODES.ABORTED.exit);
    log.info(`${sig} received: stopping pg_receivewal and waiting for the pushes in flight (send it again to exit at once)`);
    void receiver.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const { done } = await receiver.start({ failFast: true });
    log.info(`receiving WAL of ${app.database.name} through slot ${receiver.slot} into ${receiver.state().spool}`);
    // a permanent failure while streaming (the role lost REPLICATION) ends it too: the spool is left as it is
    await done.finally(() => receiver.stop());
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** `wal-receive`: streams WAL with pg_receivewal and archives each completed file (docs/pitr.md). */
export function registerWalReceive(program: Command): void {
  program
    .command('wal-receive')
    .description('stream WAL with pg_receivewal through a replication slot and store each completed segment on the targets, until stopped')
    .action(run('wal-receive', walReceive));
}

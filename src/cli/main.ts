#!/usr/bin/env -S node --max-semi-space-size=1 --
// (--max-semi-space-size: a backup streams hundreds of MB through short-lived 64 KB buffers;
// small young-generation semi-spaces return their memory promptly: peak RSS ~75-90 MB, not ~130.
// `--` stops Node from reading our own --env-file as its option.)
import { Command, Option } from 'commander';
import { asBackupError } from '../errors';
import { VERSION } from '../version';
import { registerAlertTest } from './commands/alert-test';
import { registerBackup } from './commands/backup';
import { registerBaseBackup } from './commands/basebackup';
import { registerConfigCheck } from './commands/config-check';
import { registerDaemon } from './commands/daemon';
import { registerKeygen } from './commands/keygen';
import { registerList } from './commands/list';
import { registerPin } from './commands/pin';
import { registerPitrRestore } from './commands/pitr-restore';
import { registerPitrSetup } from './commands/pitr-setup';
import { registerPrune } from './commands/prune';
import { registerReencrypt } from './commands/reencrypt';
import { registerRestore } from './commands/restore';
import { registerStatus } from './commands/status';
import { registerSync } from './commands/sync';
import { registerVerify } from './commands/verify';
import { registerWal } from './commands/wal';
import { registerWalReceive } from './commands/wal-receive';
import { exitWhenWritten, quietOnClosedPipe } from './exit';
import { repeatable } from './input';
import { printError } from './output';

/**
 * The command line: the global options, then every command from its module under commands/
 * (each registers its options and help text and wraps its body in `run`; see run.ts).
 */
export function buildProgram(): Command {
  const program = new Command('basement-backup')
    .description('Scheduled, checked PostgreSQL backups with retention and email alerts.')
    .version(VERSION)
    .option('--env-file <path>', 'read variables from this env file (repeatable; later files win, the environment wins over all)', repeatable, [])
    .option('--db <name>', 'the database to work on, when BACKUP_CONFIG_FILE lists several (`status`, `config check` and `daemon`: every one by default)')
    .showHelpAfterError();
  registerDaemon(program);
  registerBackup(program);
  registerList(program);
  registerStatus(program);
  registerPrune(program);
  registerPin(program);
  registerRestore(program);
  registerVerify(program);
  registerSync(program);
  registerKeygen(program);
  registerReencrypt(program);
  registerWal(program);
  registerPitrRestore(program);
  registerBaseBackup(program);
  registerWalReceive(program);
  registerPitrSetup(program);
  registerConfigCheck(program.command('config').description('configuration'));
  registerAlertTest(program.command('alert').description('email alerts'));
  program.addOption(new Option('--no-color').hideHelp());
  return program;
}

if (require.main === module) {
  quietOnClosedPipe();
  buildProgram()
    .parseAsync(process.argv)
    .catch((err: unknown) => {
      printError(asBackupError(err));
      return exitWhenWritten(70);
    });
}

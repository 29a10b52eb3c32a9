import path from 'node:path';
import { StateStore } from './backup/state';
import type { Config } from './config';
import { Alerter } from './notify/alerts';
import { smtpSender, type MailSender } from './notify/mailer';
import { findPgBinaries, type PgBinaries } from './pg/binaries';
import { LocalStorage } from './storage/local';
import { Repository } from './storage/repository';

/** Everything a use case needs, built once from the validated configuration. */
export interface App {
  config: Config;
  repo: Repository;
  state: StateStore;
  alerter: Alerter;
  binaries(): Promise<PgBinaries>;
  lockFile(database: string): string;
}

export function createApp(config: Config, opts: { sender?: MailSender } = {}): App {
  let bins: Promise<PgBinaries> | undefined;
  return {
    config,
    repo: new Repository(new LocalStorage(config.backupDir)),
    state: new StateStore(config.stateDir),
    alerter: new Alerter(opts.sender ?? smtpSender(config.alert)),
    binaries() {
      bins ??= findPgBinaries(config.pgBinDir);
      bins.catch(() => {
        bins = undefined;
      });
      return bins;
    },
    lockFile(database) {
      return path.join(config.stateDir, 'locks', `${encodeURIComponent(database)}.lock`);
    },
  };
}

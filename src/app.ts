import { findZstd, type ZstdSource } from './compress/compression';
import path from 'node:path';
import { StateStore } from './state/store';
import type { Configuration, DatabaseEntry, RetentionRules, TargetConfig } from './config/types';
import { findAgeProgram, type AgeProgram, type AskSecret } from './crypto/age';
import { BackupError } from './errors';
import { Alerter } from './notify/alerts';
import { smtpSender, type MailSender } from './notify/mailer';
import { findPgBinaries, type PgBinaries } from './pg/binaries';
import { LocalStorage } from './storage/local';
import { lockPolicyOf } from './repository/locking';
import { Repository } from './repository/repository';
import { safeName } from './repository/manifest';
import type { PitrStorage } from './wal/archive';
import { createS3Api } from './storage/s3-api';
import { S3Storage } from './storage/s3';
import type { Storage } from './storage/types';
import { noStopHold, type HoldStop } from './util/stop-hold';

/** One place backups are kept, with its own retention. */
export interface Target {
  name: string;
  repo: Repository;
  retention: RetentionRules;
  /** This database's point-in-time recovery archive on the target (created on first use): see PitrStorage. */
  pitr(): PitrStorage;
}

/** Everything a use case needs, built once from the validated configuration. */
export interface App {
  /** The settings every database shares (and the list of every database configured). */
  config: Configuration;
  /** The database this App is about (`--db`): its connection, schedules, format and targets. */
  database: DatabaseEntry;
  /** Asks for a passphrase on the terminal (a protected identity file); undefined where nobody can answer. */
  askSecret: AskSecret | undefined;
  /** The age program that streams (BACKUP_AGE_PROGRAM), found once; undefined: the library. */
  ageProgram(): AgeProgram | undefined;
  /** The zstd that compresses and decompresses (BACKUP_ZSTD_PROGRAM), looked up once; undefined: none here. */
  zstd(): ZstdSource;
  /** Every configured target; the first is the default for list, restore and verify. */
  targets: Target[];
  /** The target named `name` (the first when undefined), or a NOT_FOUND error. */
  target(name?: string): Target;
  state: StateStore;
  alerter: Alerter;
  binaries(): Promise<PgBinaries>;
  lockFile(database: string): string;
  /** Fires when the command is asked to stop (SIGINT/SIGTERM of `restore` and `verify`): what it runs stops and cleans up. */
  signal: AbortSignal;
  /** Stops every request to remote targets at once (they fail as ABORTED): a forced shutdown. */
  cancelRequests(): void;
  /** Defers the stop signals while work that must finish once begun runs (see StopHold). */
  holdStop: HoldStop;
}

/**
 * The factory that maps target configuration to a storage driver. `signal` cancels every
 * request of a remote driver (the daemon stopping).
 */
export function storageFor(t: TargetConfig, signal?: AbortSignal, sub?: string): Storage {
  if (t.type === 'local') return new LocalStorage(sub === undefined ? t.path : path.join(t.path, ...sub.split('/')), t.name, t.setting);
  const api = createS3Api({
    endpoint: t.endpoint,
    region: t.region,
    accessKeyId: t.accessKeyId,
    secretAccessKey: t.secretAccessKey,
    forcePathStyle: t.forcePathStyle,
    maxAttempts: 3,
    timeoutMs: t.timeoutSeconds * 1000,
  });
  return new S3Storage(api, {
    name: t.name,
    bucket: t.bucket,
    prefix: sub === undefined ? t.prefix : `${t.prefix}${sub}/`,
    endpointLabel: t.endpoint ?? `AWS ${t.region}`,
    partSize: t.partSizeBytes,
    queueSize: 2,
    timeoutSeconds: t.timeoutSeconds,
    signal,
    objectLock: t.objectLock !== undefined,
    appendOnly: t.appendOnly === true,
  });
}

/**
 * `opts.signal`: when it fires, requests to remote targets stop at once (e.g. the daemon's
 * shutdown), failing with an ABORTED error. `opts.holdStop`: how the command defers its stop
 * signals (none by default).
 */
export function createApp(
  config: Configuration,
  entry: DatabaseEntry,
  opts: { sender?: MailSender; signal?: AbortSignal | undefined; askSecret?: AskSecret | undefined; holdStop?: HoldStop | undefined } = {},
): App {
  let bins: Promise<PgBinaries> | undefined;
  let age: { program: AgeProgram | undefined } | undefined;
  let zstd: { source: ZstdSource } | undefined;
  const requests = new AbortController();
  opts.signal?.addEventListener('abort', () => requests.abort(), { once: true });
  // State and locks of this configuration's database go by its entry's name: two entries may back
  // up databases of one name on two servers. For the DB_* setup the name is the database's.
  const keyOf = (database: string) => (database === entry.db.database ? entry.name : database);
  const targets: Target[] = entry.targets.map((t) => {
    let pitr: PitrStorage | undefined;
    const sub = `pitr/${safeName(entry.name)}`;
    return {
      name: t.name,
      repo: new Repository(storageFor(t, requests.signal), lockPolicyOf(t)),
      retention: t.retention,
      pitr: () => (pitr ??= { root: storageFor(t, requests.signal, sub), wal: storageFor(t, requests.signal, `${sub}/wal`) }),
    };
  });
  return {
    config,
    database: entry,
    askSecret: opts.askSecret,
    signal: opts.signal ?? new AbortController().signal,
    ageProgram() {
      age ??= { program: findAgeProgram(config.ageProgram, config.childEnv) };
      return age.program;
    },
    zstd() {
      zstd ??= { source: findZstd(config.zstdProgram, config.childEnv) };
      return zstd.source;
    },
    targets,
    target(name) {
      if (name === undefined) return targets[0]!;
      const t = targets.find((x) => x.name === name);
      if (!t) {
        throw new BackupError('NOT_FOUND', `no storage target named "${name}"`, { hint: `Configured targets: ${targets.map((x) => x.name).join(', ')}.` });
      }
      return t;
    },
    state: new StateStore(config.stateDir, keyOf),
    alerter: new Alerter(
      opts.sender ?? smtpSender(config.alert),
      config.notify.webhookUrl === undefined ? undefined : { url: config.notify.webhookUrl, totalMs: config.notify.timeoutMs },
    ),
    binaries() {
      bins ??= findPgBinaries(config.pgBinDir, config.childEnv);
      bins.catch(() => {
        bins = undefined;
      });
      return bins;
    },
    lockFile(database) {
      return path.join(config.stateDir, 'locks', `${encodeURIComponent(keyOf(database))}.lock`);
    },
    cancelRequests() {
      requests.abort();
    },
    holdStop: opts.holdStop ?? noStopHold,
  };
}

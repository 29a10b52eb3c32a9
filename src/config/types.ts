/**
 * The shape of the validated configuration: the bottom of the house. Every folder imports its
 * configuration types from here (type-only), and this file imports nothing of the project.
 *
 * `Configuration` is what the env files, the environment and BACKUP_CONFIG_FILE say: the global
 * `Settings` and every `DatabaseEntry`. A command or the daemon runs with the settings and one
 * entry (`forDatabase`): `app.config` and `app.database`.
 */

export type BackupFormat = 'custom' | 'plain';

/** BACKUP_DIGEST: what each backup records of every table, for drills. */
export type DigestMode = 'full' | 'counts' | 'off';

export type CompressionMethod = 'zstd' | 'gzip' | 'lz4' | 'none';

/** BACKUP_COMPRESSION as configured; undefined in Settings: the default (zstd when available, else gzip). */
export interface CompressionSetting {
  method: CompressionMethod;
  /** The method's level; undefined: its default. */
  level: number | undefined;
}

export interface RetentionRules {
  /** Backups younger than this many days are kept… */
  days: number;
  /** …and always the newest this many good backups. */
  minCount: number;
  /** Grandfather-father-son: the newest good backup of each of the last N days / ISO weeks / months / years that have one (0 or absent: none). */
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

export interface DbConfig {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  sslmode: string | undefined;
  connectTimeoutSeconds: number;
  /** Set when VERIFY_DB_* (the drill server) set this connection: hints then name them, not DB_*. */
  settings?: 'VERIFY_DB';
}

export interface SmtpConfig {
  host: string;
  port: number;
  secure: boolean;
  user: string | undefined;
  password: string | undefined;
}

export interface AlertConfig {
  /** Undefined when SMTP_HOST is not set: alerts are then only logged. */
  smtp: SmtpConfig | undefined;
  from: string;
  to: string[];
  repeatMinutes: number;
}

export interface LocalTargetConfig {
  name: string;
  type: 'local';
  path: string;
  /** Where `path` was set, for messages: BACKUP_DIR, or the target in BACKUP_CONFIG_FILE. */
  setting: string;
  retention: RetentionRules;
}

export interface S3TargetConfig {
  name: string;
  type: 's3';
  endpoint: string | undefined;
  region: string;
  bucket: string;
  /** "" or ending in "/". */
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: boolean;
  partSizeBytes: number;
  /** Deadline of every S3 request: connecting, an answer, progress (see README). */
  timeoutSeconds: number;
  retention: RetentionRules;
  /** `object_lock` / S3_OBJECT_LOCK: every object of a backup is written under S3 Object Lock; undefined: no lock. */
  objectLock?: ObjectLockSetting | undefined;
  /** `delete: false` / S3_DELETE=false: nothing is ever deleted there; the bucket's lifecycle rules expire backups. */
  appendOnly?: boolean | undefined;
}

/** S3 Object Lock's two modes: compliance (nobody can delete or shorten it) and governance (a key with s3:BypassGovernanceRetention can). */
export type ObjectLockMode = 'compliance' | 'governance';

export interface ObjectLockSetting {
  mode: ObjectLockMode;
  /**
   * BACKUP_TEST_LOCK_SECONDS, for tests only: the lock lasts this many seconds from the write
   * instead of what retention needs (a test cannot wait days for a server's lock to pass).
   */
  testSeconds?: number | undefined;
}

export type TargetConfig = LocalTargetConfig | S3TargetConfig;

/** One database the daemon backs up: its connection, schedules, format and storage targets (with their retention). */
export interface DatabaseEntry {
  /** `--db NAME`; state, locks, logs and alerts name it. The database's own name unless the config file gives one. */
  name: string;
  db: DbConfig;
  /** Where verification drills restore; defaults to the backed-up server. */
  verifyDb: DbConfig;
  schedule: string;
  /** Cron expression for restore drills, or undefined when VERIFY_SCHEDULE=off. */
  verifySchedule: string | undefined;
  /** VERIFY_TARGETS (`verify_targets`): each drill slot drills one target in turn (`rotate`), or every target (`all`). */
  verifyTargets: VerifyTargets;
  format: BackupFormat;
  digest: DigestMode;
  /** Where backups go; the first is where list/restore/verify look unless told otherwise. */
  targets: TargetConfig[];
  /** BACKUP_PING_URL, BACKUP_VERIFY_PING_URL (or the entry's ping_url, verify_ping_url). */
  ping: PingUrls;
}

/** Which targets a scheduled drill restores from: the least recently drilled one, or each. */
export type VerifyTargets = 'rotate' | 'all';

/** Dead-man's-switch checks (healthchecks.io's convention): pinged at the start and end of every backup / drill. */
export interface PingUrls {
  backup: string | undefined;
  verify: string | undefined;
}

/** Outgoing HTTP besides storage: the alert webhook and the deadline of every ping or post. */
export interface NotifyConfig {
  /** BACKUP_WEBHOOK_URL: every alert is also POSTed there as JSON. */
  webhookUrl: string | undefined;
  /** BACKUP_PING_TIMEOUT_SECONDS: the most one ping or post may take, retries included. */
  timeoutMs: number;
}

/**
 * Knowing without looking (issue 21): the early-warning checks, the metrics, the HTTP server and
 * the weekly summary. Read once; every database shares them.
 */
export interface MonitorConfig {
  /** BACKUP_CHECK_MINUTES: how often the daemon runs its checks (and at start, and after every job). */
  checkIntervalMs: number;
  /** BACKUP_MAX_AGE_HOURS: a database with no good backup younger than this on a target is stale; undefined: from its schedule (maxAgeMs). */
  maxAgeHours: number | undefined;
  /** BACKUP_ALERT_AFTER_FAILURES: failed backups in a row before the failure alert goes out (1: at the first). */
  alertAfterFailures: number;
  /** BACKUP_SIZE_ALERT_RATIO: a backup below this times the median of the 7 good ones before it (or above its inverse) is an anomaly. */
  sizeAlertRatio: number;
  /** BACKUP_DISK_ALERT_DAYS: warn when the backup directory's filesystem is projected full within this many days; 0: off. */
  diskAlertDays: number;
  /** BACKUP_MAX_RESTORE_MINUTES: the recovery-time objective; a drill that restored slower warns. Undefined: off. */
  maxRestoreMinutes: number | undefined;
  /** BACKUP_METRICS_FILE: the Prometheus textfile (node_exporter's textfile collector) written after every job and check. */
  metricsFile: string | undefined;
  /**
   * BACKUP_HTTP_PORT (off when unset), BACKUP_HTTP_HOST (127.0.0.1), BACKUP_HTTP_TOKEN (bearer;
   * /healthz stays open), BACKUP_HTTP_BUSY_RATE (requests a second answered while a backup or
   * drill runs; 0: no cap).
   */
  http: { port: number; host: string; token: string | undefined; busyRate: number } | undefined;
  /** BACKUP_SUMMARY_SCHEDULE: a cron expression for the summary mail; undefined: off. */
  summarySchedule: string | undefined;
}

/** Point-in-time recovery: WAL archiving and base backups (docs/pitr.md). */
export interface PitrConfig {
  /** WAL_PUSH_TIMEOUT_SECONDS: one `wal-push` (every target) ends by then, failed when not stored. */
  pushTimeoutMs: number;
  /** WAL_REQUIRED_TARGETS: the targets a WAL file must be stored on before PostgreSQL is told it is archived; undefined: every target. */
  requiredTargets: string[] | undefined;
  /** BASEBACKUP_WAL_WAIT_SECONDS: how long `basebackup` waits for the WAL from its start to its stop to be archived before it fails. */
  baseWalWaitMs: number;
  /** WAL_RECEIVE: the daemon streams each cluster's WAL with pg_receivewal (one receiver per server, not per database entry). */
  receive: boolean;
  /** WAL_SLOT_NAME: the replication slot the receiver streams from (created when missing). */
  slotName: string;
  /** BASEBACKUP_SCHEDULE: when the daemon takes base backups (with WAL_RECEIVE=on); undefined: off. */
  baseSchedule: string | undefined;
  /** WAL_MAX_LAG_MINUTES: how long WAL the server completed may wait unarchived before the alert; undefined: off. */
  maxLagMs: number | undefined;
  /** WAL_QUEUE_MAX_MB in bytes: the unarchived WAL (the slot's retained WAL and the spool) above which the alert goes out; undefined: off. */
  queueMaxBytes: number | undefined;
  /** PITR_VERIFY_SCHEDULE: when the daemon runs the point-in-time recovery drill (with WAL_RECEIVE=on); undefined: off. */
  drillSchedule: string | undefined;
}

/** The settings every database shares: directories, limits, alerts, logging, compression, encryption, pm2. */
export interface Settings {
  /** BACKUP_MAX_PARALLEL: how many backups of different databases the daemon runs at once. */
  maxParallel: number;
  backupDir: string;
  stateDir: string;
  /** BACKUP_RESTORE_JOBS: pg_restore's jobs for restores (without --jobs) and drills; undefined: chosen per backup (restore/jobs.ts). */
  restoreJobs: number | undefined;
  /** BACKUP_TEMP_DIR: where a restore writes the decompressed copy pg_restore --jobs reads (removed afterwards). */
  tempDir: string;
  timezone: string;
  catchUp: boolean;
  /** BACKUP_COMPRESSION, or undefined for the default: zstd when available, else gzip. */
  compression: CompressionSetting | undefined;
  /** BACKUP_ZSTD_PROGRAM: `builtin`, a program, or undefined (`zstd` from PATH when there, else Node's zstd). */
  zstdProgram: string | undefined;
  minFreeBytes: number;
  alert: AlertConfig;
  notify: NotifyConfig;
  monitor: MonitorConfig;
  /** Point-in-time recovery: WAL archiving and base backups. */
  pitr: PitrConfig;
  pgBinDir: string | undefined;
  logDir: string;
  logLevel: string;
  logMaxBytes: number;
  logMaxFiles: number;
  shutdownGraceSeconds: number;
  /** A pg_dump, pg_restore or psql that shows no progress for this long is stopped (BACKUP_STALL_MINUTES). */
  stallMs: number;
  /** The pm2 executable `restore --app` uses. */
  pm2Bin: string;
  /** What that pm2 sees: childEnv and PM2_HOME (which pm2 daemon to talk to), nothing else. */
  pm2Env: NodeJS.ProcessEnv;
  /** pm2's own log files for this process (pm2 passes them as pm_out_log_path etc.), to keep private. */
  pm2LogFiles: string[];
  /**
   * The variables of basement-backup's own environment a PostgreSQL program may see (see
   * childEnvironment), never a secret; libpqEnv adds the connection settings of each run.
   */
  childEnv: NodeJS.ProcessEnv;
  /** The age public keys new backups are encrypted to (BACKUP_AGE_RECIPIENTS[_FILE]); undefined: not encrypted. */
  encryption: { recipients: string[]; variable: string } | undefined;
  /** BACKUP_AGE_IDENTITY_FILE: the secret keys that open encrypted backups (restore, verify), read when needed. */
  ageIdentityFile: string | undefined;
  /** BACKUP_AGE_PROGRAM: `builtin`, a program, or undefined (`age` from PATH when there, else the library). */
  ageProgram: string | undefined;
}

/** The whole configuration: the global settings and every database configured. */
export interface Configuration extends Settings {
  /** The DB_* settings are the one-entry case; BACKUP_CONFIG_FILE's `databases:` lists several. */
  databases: DatabaseEntry[];
}

export interface LoadedEnv {
  /** Merged variables: env files first (later files override earlier ones), the process environment wins. */
  vars: Record<string, string | undefined>;
  /** Where each variable came from, for `config check`. */
  sources: Record<string, string>;
  files: string[];
}

export interface LoadedConfig {
  config: Configuration;
  env: LoadedEnv;
}

/** How the configuration is read. */
export interface ConfigOptions {
  /**
   * Check the cron expressions (every *_SCHEDULE) and BACKUP_TIMEZONE (the default). Off for the
   * commands that use no schedule and that PostgreSQL may run once per WAL file: a schedule is
   * not theirs to refuse, nor to pay for (cli/open.ts).
   */
  checkSchedules?: boolean;
}

/** Where a configured value (a password, a key) came from, for instructions that must not show it. */
export interface ValueSource {
  /** The variable holding exactly this value, e.g. DB_PASSWORD; undefined when none does (e.g. inside DATABASE_URL). */
  variable: string | undefined;
  /** The env file it was read from; undefined for the process environment. */
  file: string | undefined;
  /** A shell command printing exactly the value from `file`, when a simple one does. */
  reader: string | undefined;
}

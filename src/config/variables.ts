import { DEFAULT_S3_TIMEOUT_SECONDS } from './sections/targets-file';

/** One variable basement-backup reads: the reference in docs/configuration.md is generated from these (`npm run docs`). */
export interface Variable {
  name: string;
  /** What `config check` shows when it is not set; also the reference's default column. */
  default?: string;
  secret?: boolean;
  /** One line for the reference (markdown; links relative to the repository's root). */
  meaning: string;
  /** Shown in the README's short table of the settings most servers set. */
  common?: boolean;
  /** Read from the process environment only, before the env files (not a `config check` row). */
  environmentOnly?: boolean;
}

/** Every variable basement-backup reads, with its default and meaning, for `config check` and the documentation. */
export const VARIABLES: Variable[] = [
  {
    name: 'DATABASE_URL',
    secret: true,
    meaning:
      'instead of the `DB_*` variables: `postgresql://USER:PASSWORD@HOST:5432/DBNAME?sslmode=require`; special characters in the password percent-encoded (`@` as `%40`, `/` as `%2F`, `#` as `%23`, `%` as `%25`): a URL that can be read two ways is refused; `?password=` is taken as libpq takes it',
  },
  { name: 'DB_HOST', default: 'localhost', meaning: 'database host (or a Unix socket directory)' },
  { name: 'DB_PORT', default: '5432', meaning: 'database port' },
  {
    name: 'DB_USER',
    meaning: 'database user (unset: the OS user); needs `SELECT` on every table and sequence, see [Database privileges](README.md#database-privileges)',
  },
  { name: 'DB_PASSWORD', secret: true, meaning: "its password; passed to pg_dump in the child's environment, never on the command line" },
  { name: 'DB_NAME', common: true, meaning: "the database to back up (usually in the app's `.env`, with `DB_HOST`, `DB_PORT`, `DB_USER`, `DB_PASSWORD`)" },
  {
    name: 'DB_SSLMODE',
    meaning:
      "`disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`; unset: `prefer` (TLS when the server offers it, as libpq does; to a loopback address basement-backup's own connections try plaintext first, and TLS when pg_hba.conf asks for it)",
  },
  { name: 'DB_CONNECT_TIMEOUT_SECONDS', default: '10', meaning: 'give up connecting after this long' },
  { name: 'BACKUP_DIR', default: './backups', common: true, meaning: "where backups, their manifests and the daemon's small state live (created 0700)" },
  { name: 'BACKUP_LOCAL', default: 'true', meaning: 'keep backups in `BACKUP_DIR` (target `local`); `false` for off-site only' },
  { name: 'BACKUP_STATE_DIR', default: '<BACKUP_DIR>/.basement-backup', meaning: "locks, failure/alert state and the daemon's control socket (0700)" },
  {
    name: 'BACKUP_CONFIG_FILE',
    meaning:
      'JSON or YAML file listing every storage target (see [Off-site copies](docs/offsite.md#several-targets)), replacing `BACKUP_LOCAL` and `S3_*`; and/or several databases (see [Several databases](README.md#several-databases))',
  },
  { name: 'S3_ENDPOINT', default: 'AWS', meaning: 'S3-compatible endpoint URL (Spaces, B2, R2, MinIO)' },
  { name: 'S3_REGION', default: 'us-east-1', meaning: 'region (`auto` for R2)' },
  { name: 'S3_BUCKET', common: true, meaning: 'bucket for off-site copies (target `s3`); unset: none; see [Off-site copies](docs/offsite.md)' },
  { name: 'S3_PREFIX', default: '(bucket root)', meaning: 'key prefix, e.g. `cloudedbasement/`' },
  { name: 'S3_ACCESS_KEY_ID', secret: true, meaning: 'the bucket key (see the [least-privilege policy](docs/offsite.md#least-privilege-bucket-access))' },
  { name: 'S3_SECRET_ACCESS_KEY', secret: true, meaning: "the bucket key's secret" },
  { name: 'S3_FORCE_PATH_STYLE', default: 'false', meaning: '`true` for MinIO and other path-style endpoints' },
  { name: 'S3_PART_SIZE_MB', default: '8', meaning: 'multipart part size (5–5000); memory per bucket is about three parts' },
  {
    name: 'S3_TIMEOUT_SECONDS',
    default: String(DEFAULT_S3_TIMEOUT_SECONDS),
    meaning:
      'a request to the bucket that cannot connect, gets no answer or moves no data for this long fails (see [deadlines](docs/offsite.md#when-a-bucket-stops-answering))',
  },
  { name: 'S3_RETENTION_DAYS', default: 'BACKUP_RETENTION_DAYS', meaning: "the bucket's own retention: days" },
  {
    name: 'S3_OBJECT_LOCK',
    default: 'off',
    meaning:
      '`compliance` or `governance`: every object of a backup is written under S3 Object Lock until retention could let it go; the bucket must have Object Lock enabled (see [Object Lock](docs/offsite.md#object-lock))',
  },
  {
    name: 'S3_DELETE',
    default: 'true',
    meaning:
      "`false`: basement-backup never sends a delete to the bucket (a key without delete rights); retention is left to the bucket's lifecycle rules, which `config check` prints (see [Append-only keys](docs/offsite.md#append-only-keys))",
  },
  {
    name: 'BACKUP_TEST_LOCK_SECONDS',
    meaning: "for basement-backup's own tests only: an Object Lock lasts this many seconds instead of what retention needs; never set it",
  },
  { name: 'S3_RETENTION_MIN_COUNT', default: 'BACKUP_RETENTION_MIN_COUNT', meaning: "the bucket's own retention: minimum count" },
  { name: 'BACKUP_SCHEDULE', default: '0 2 * * *', common: true, meaning: 'cron expression, 5 fields, or 6 with seconds first' },
  {
    name: 'BACKUP_MAX_PARALLEL',
    default: '1',
    meaning:
      'how many databases the daemon backs up at once when `BACKUP_CONFIG_FILE` lists several (the others wait their turn); see [Several databases](README.md#several-databases)',
  },
  { name: 'BACKUP_TIMEZONE', default: 'UTC', common: true, meaning: 'time zone of the schedule (IANA name, e.g. `Europe/Berlin`)' },
  { name: 'BACKUP_CATCH_UP', default: 'true', meaning: 'at start, take a backup when a scheduled one was missed' },
  { name: 'BACKUP_FORMAT', default: 'custom', meaning: '`custom` (`pg_dump -Fc`, `.dump.zst`) or `plain` (SQL, `.sql.zst`)' },
  {
    name: 'BACKUP_COMPRESSION',
    default: '`zstd` when available, else `gzip`',
    meaning:
      '`zstd[:LEVEL]` (1–19, default 1; compressed in the stream, multi-threaded), `gzip[:LEVEL]` (1–9), `lz4` (custom format, pg_dump 16+), `none`; a bare digit is a gzip level',
  },
  {
    name: 'BACKUP_ZSTD_PROGRAM',
    default: '`zstd` when installed',
    meaning: "the zstd program that compresses and decompresses; `builtin` for Node's own (22.15+), or a path",
  },
  { name: 'BACKUP_RETENTION_DAYS', default: '7', common: true, meaning: 'delete backups older than this…' },
  { name: 'BACKUP_RETENTION_MIN_COUNT', default: '7', common: true, meaning: '…but never keep fewer good backups than this' },
  {
    name: 'BACKUP_KEEP_DAILY',
    default: '0',
    meaning: 'also keep the newest backup of each of the last N days that have one (in `BACKUP_TIMEZONE`); see [Retention](README.md#retention)',
  },
  { name: 'BACKUP_KEEP_WEEKLY', default: '0', meaning: '…of each of the last N ISO weeks (Monday to Sunday)' },
  { name: 'BACKUP_KEEP_MONTHLY', default: '0', meaning: '…of each of the last N calendar months' },
  { name: 'BACKUP_KEEP_YEARLY', default: '0', meaning: '…of each of the last N calendar years' },
  {
    name: 'BACKUP_AGE_RECIPIENTS',
    meaning:
      'encrypt new backups (data and roles) to these age public keys, comma-separated (`age1…`; from `basement-backup keygen`); see [Encryption](docs/encryption.md)',
  },
  { name: 'BACKUP_AGE_RECIPIENTS_FILE', meaning: 'instead: a file of age public keys, one per line, `#` comments' },
  {
    name: 'BACKUP_AGE_PROGRAM',
    default: '`age` when installed',
    meaning:
      'the age program that encrypts and decrypts the data stream (about five times faster than the built-in library); `builtin` for the library, or a path',
  },
  {
    name: 'BACKUP_AGE_IDENTITY_FILE',
    meaning: 'the age identity (secret key file, mode 0600) that `restore` and `verify` decrypt with; not needed to take backups',
  },
  {
    name: 'BACKUP_RESTORE_JOBS',
    default: '`auto`',
    meaning:
      "`pg_restore --jobs` for restores without `--jobs`, and for drills: `auto` streams in one job unless jobs pay (cores, the archive's size, how its data is spread over tables; see [Parallel restores](docs/design.md#parallel-restores)), a number (1–16) fixes it",
  },
  {
    name: 'BACKUP_TEMP_DIR',
    default: '`$TMPDIR` or `/tmp`',
    meaning:
      'where `restore` and drills write a decompressed copy of a backup for a parallel `pg_restore --jobs` (private, removed afterwards, and one a killed run left by the next restore, drill or daemon start; skipped when it has no room)',
  },
  { name: 'BACKUP_MIN_FREE_MB', default: '256', meaning: 'refuse a backup that would leave less free disk than this' },
  {
    name: 'BACKUP_DIGEST',
    default: 'full',
    meaning: "what each backup records of every table in the dump's snapshot, for drills: `full` (row count and content digest), `counts`, or `off`",
  },
  {
    name: 'BACKUP_STALL_MINUTES',
    default: '30',
    meaning:
      'stop pg_dump, pg_restore or psql after this long without progress (exit 25); decimals allowed (`0.5` is 30 seconds), see [Stalls](docs/design.md#stalls)',
  },
  {
    name: 'VERIFY_SCHEDULE',
    default: '0 4 * * *',
    common: true,
    meaning: "cron expression for the daemon's restore drill of the newest backup (in `BACKUP_TIMEZONE`), or `off`",
  },
  {
    name: 'VERIFY_TARGETS',
    default: 'rotate',
    meaning:
      'with several targets, which one a drill slot restores from, reading that target alone: `rotate` (the one drilled longest ago, so each in turn) or `all` (each, one after the other); `verify_targets` per database in `BACKUP_CONFIG_FILE`',
  },
  { name: 'VERIFY_DB_HOST', default: 'DB_HOST', meaning: 'run drills on another server so production is not loaded' },
  { name: 'VERIFY_DB_PORT', default: 'DB_PORT', meaning: "the drill server's port" },
  { name: 'VERIFY_DB_USER', default: 'DB_USER', meaning: "the drill server's user" },
  {
    name: 'VERIFY_DB_PASSWORD',
    secret: true,
    default: 'DB_PASSWORD',
    meaning: 'its password; the production password is not sent to another host (`VERIFY_DB_HOST` or `VERIFY_DB_USER` set) unless this is set',
  },
  { name: 'SMTP_HOST', common: true, meaning: 'mail server; alerts are only logged when unset (set `SMTP_PORT`, `SMTP_USER`, `SMTP_PASSWORD` with it)' },
  { name: 'SMTP_PORT', default: '587 (465 when SMTP_SECURE=true)', meaning: 'mail server port' },
  { name: 'SMTP_SECURE', default: 'false', meaning: '`true` for TLS from the start (port 465); otherwise STARTTLS when offered' },
  { name: 'SMTP_USER', meaning: 'mail login' },
  { name: 'SMTP_PASSWORD', secret: true, meaning: "mail login's password" },
  { name: 'ALERT_EMAIL_FROM', default: 'basement-backup@<hostname>', meaning: 'sender' },
  { name: 'ALERT_EMAIL_TO', common: true, meaning: 'comma-separated recipients' },
  { name: 'ALERT_REPEAT_MINUTES', default: '60', meaning: 'while failures continue, remind at most this often (0: every failure)' },
  {
    name: 'BACKUP_PING_URL',
    secret: true,
    meaning:
      "a dead-man's switch: pinged (healthchecks.io's convention) at the start, success and failure of every backup; per database `ping_url` in `BACKUP_CONFIG_FILE`; see [Monitoring](docs/monitoring.md)",
  },
  { name: 'BACKUP_VERIFY_PING_URL', secret: true, meaning: 'the same for restore drills; per database `verify_ping_url`' },
  {
    name: 'BACKUP_WEBHOOK_URL',
    secret: true,
    meaning: 'every alert is also POSTed there as JSON: `text` (Slack, Mattermost, Discord) and `title`, `database`, `code`, `fix`, `kind`',
  },
  { name: 'BACKUP_PING_TIMEOUT_SECONDS', default: '10', meaning: 'the most one ping or webhook post may take, retries included; it never fails a backup' },
  {
    name: 'BACKUP_CHECK_MINUTES',
    default: '5',
    meaning: 'how often the daemon checks for stale backups, failing runs, size anomalies, a filling disk and overdue drills',
  },
  {
    name: 'BACKUP_MAX_AGE_HOURS',
    default: 'from the schedule (26 for a daily one)',
    meaning: 'a database whose newest good backup on a target is older is stale: alert, `/healthz` 503',
  },
  { name: 'BACKUP_ALERT_AFTER_FAILURES', default: '1', meaning: 'failed backups in a row before the failure alert goes out' },
  {
    name: 'BACKUP_SIZE_ALERT_RATIO',
    default: '0.5',
    meaning: 'a backup below this times the median of the 7 good ones before it, or above its inverse, warns (it is kept)',
  },
  { name: 'BACKUP_DISK_ALERT_DAYS', default: '14', meaning: "warn when the backup directory's filesystem is projected full within this many days (0: off)" },
  { name: 'BACKUP_MAX_RESTORE_MINUTES', meaning: 'the recovery-time objective: a drill that restored slower warns' },
  { name: 'BACKUP_METRICS_FILE', meaning: "Prometheus textfile for node_exporter's textfile collector, replaced after every job and check" },
  { name: 'BACKUP_HTTP_PORT', meaning: 'serve `/healthz`, `/metrics` and the status page `/` on this port (off when unset)' },
  { name: 'BACKUP_HTTP_HOST', default: '127.0.0.1', meaning: 'the address the HTTP server binds' },
  { name: 'BACKUP_HTTP_TOKEN', secret: true, meaning: 'a bearer token required on everything but `/healthz`' },
  {
    name: 'BACKUP_HTTP_BUSY_RATE',
    default: '50',
    meaning: 'while a backup or drill runs, the HTTP server answers at most this many requests a second (the rest wait their turn); `0`: no cap',
  },
  {
    name: 'WAL_PUSH_TIMEOUT_SECONDS',
    default: '60',
    meaning: "one `wal-push` (PostgreSQL's `archive_command`) ends by then; a file not stored on its targets fails, and PostgreSQL keeps it and tries again",
  },
  {
    name: 'WAL_REQUIRED_TARGETS',
    default: 'all',
    meaning:
      'the targets (comma-separated names) a WAL file must be stored on before it counts as archived; the others are tried once at the same time, and a file one of them missed is not copied to it later (yet)',
  },
  {
    name: 'BASEBACKUP_WAL_WAIT_SECONDS',
    default: '300',
    meaning:
      '`basebackup` waits this long, once pg_basebackup has ended, for every WAL segment from its start to its stop to be archived on the targets holding it; then it fails and nothing of it stays (see [Base backups](docs/pitr.md))',
  },
  {
    name: 'WAL_RECEIVE',
    default: 'off',
    meaning:
      '`on`: the daemon streams WAL with `pg_receivewal` through a replication slot and archives each completed segment (one receiver per PostgreSQL server, archived under its first database entry); see [The WAL receiver](docs/pitr.md#the-wal-receiver)',
  },
  {
    name: 'BASEBACKUP_SCHEDULE',
    default: '0 3 * * 0',
    meaning:
      "with `WAL_RECEIVE=on`: when the daemon takes a base backup (a cron expression, or `off`); it also takes one at start when no target has a good one, and applies the archive's retention after each",
  },
  {
    name: 'PITR_VERIFY_SCHEDULE',
    default: '30 4 * * 0',
    meaning:
      'with `WAL_RECEIVE=on`: when the daemon runs the point-in-time recovery drill (`verify --pitr`: a restore point, the newest base backup recovered to it on a scratch server, every table compared; see [Drills](docs/pitr.md#drills)); a cron expression, or `off`',
  },
  {
    name: 'WAL_SLOT_NAME',
    default: 'basement_backup',
    meaning:
      'the replication slot `wal-receive` and the daemon stream from; created when missing; the server keeps the WAL it has not taken, up to `max_slot_wal_keep_size`',
  },
  {
    name: 'WAL_MAX_LAG_MINUTES',
    default: '15',
    meaning:
      'with a WAL receiver: the daemon warns when WAL the server has completed is not archived after this long (the oldest file waiting in the spool, or the time since the last archived segment while the server is past it); an idle server never counts as behind; `off`: no such warning (see [Monitoring](docs/pitr.md#monitoring))',
  },
  {
    name: 'WAL_QUEUE_MAX_MB',
    default: 'off',
    meaning:
      "with a WAL receiver: the daemon warns when the unarchived WAL (what the replication slot makes the server keep, plus the receiver's spool) passes this many MB, before pg_wal fills its disk",
  },
  {
    name: 'BACKUP_SUMMARY_SCHEDULE',
    default: 'off',
    meaning: 'a cron expression for a summary mail (e.g. `0 8 * * 1`): taken, drilled, pruned, sizes, free space',
  },
  { name: 'PG_BIN_DIR', default: 'newest pg_dump on PATH or under /usr/lib/postgresql/*/bin', meaning: 'where pg_dump and pg_restore live' },
  { name: 'LOG_DIR', default: './logs', meaning: 'JSON log (`basement-backup.jsonl`) and `backup.log`' },
  { name: 'LOG_LEVEL', default: 'info', meaning: '`error`, `warn`, `info`, `debug`' },
  { name: 'LOG_MAX_SIZE_MB', default: '10', meaning: 'rotate the JSON log at this size' },
  { name: 'LOG_MAX_FILES', default: '5', meaning: 'how many JSON log files rotation keeps' },
  {
    name: 'SHUTDOWN_GRACE_SECONDS',
    default: '30',
    meaning: "how long a stopping daemon lets a running backup finish; keep pm2's `kill_timeout` above it plus 5 s",
  },
  { name: 'PM2_BIN', default: 'pm2 (on PATH)', meaning: 'the pm2 that `restore --app` uses to stop and start the app' },
  {
    name: 'BACKUP_ENV_FILE',
    default: './.env',
    environmentOnly: true,
    meaning: 'comma-separated env files to read (environment only; `--env-file` wins over it)',
  },
];

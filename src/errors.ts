/**
 * The few error classes basement-backup uses. Each carries a stable `code` that becomes the
 * process exit code and the alert's title, a `hint` that tells the operator what to do, and
 * whether retrying later could succeed on its own.
 */
export const ERROR_CODES = {
  CONFIG: { exit: 2, retryable: false, title: 'configuration error' },
  LOCKED: { exit: 3, retryable: true, title: 'another backup is running' },
  DB_CONNECT: { exit: 10, retryable: true, title: 'cannot reach the database' },
  DB_AUTH: { exit: 11, retryable: false, title: 'database login refused' },
  DB_MISSING: { exit: 12, retryable: false, title: 'database does not exist' },
  VERSION: { exit: 13, retryable: false, title: 'pg_dump version cannot dump this server' },
  PRIVILEGE: { exit: 14, retryable: false, title: 'the database user lacks a privilege' },
  DUMP_FAILED: { exit: 20, retryable: true, title: 'pg_dump failed' },
  DUMP_INVALID: { exit: 21, retryable: true, title: 'the dump failed its checks' },
  NO_SPACE: { exit: 22, retryable: true, title: 'not enough disk space' },
  STORAGE: { exit: 23, retryable: true, title: 'a storage target failed' },
  ABORTED: { exit: 24, retryable: true, title: 'backup interrupted' },
  STALLED: { exit: 25, retryable: true, title: 'pg_dump or pg_restore stalled' },
  CLOCK: { exit: 26, retryable: true, title: 'the clock went backwards' },
  NOT_FOUND: { exit: 30, retryable: false, title: 'not found' },
  REFUSED: { exit: 4, retryable: false, title: 'not confirmed' },
  DAMAGED: { exit: 31, retryable: false, title: 'the backup file is damaged' },
  RESTORE_FAILED: { exit: 32, retryable: false, title: 'restore failed' },
  VERIFY_FAILED: { exit: 33, retryable: false, title: 'verification failed' },
  APP_CONTROL: { exit: 34, retryable: false, title: 'cannot stop or start the app' },
  SMTP: { exit: 40, retryable: true, title: 'cannot send email' },
  INTERNAL: { exit: 70, retryable: false, title: 'unexpected error' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class BackupError extends Error {
  readonly code: ErrorCode;
  /** What the operator should check or do, in one or two sentences. */
  readonly hint: string | undefined;
  /** Extra detail for alerts, e.g. the last lines of pg_dump's stderr (already redacted). */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, message: string, opts: { hint?: string; detail?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BackupError';
    this.code = code;
    this.hint = opts.hint;
    this.detail = opts.detail;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }
}

/** A configuration value is missing or wrong. Always names the variable. */
export class ConfigError extends BackupError {
  constructor(
    readonly variable: string,
    message: string,
    hint?: string,
  ) {
    super('CONFIG', `${variable}: ${message}`, { hint });
    this.name = 'ConfigError';
  }
}

/** Wraps anything thrown into a BackupError; unknown errors become INTERNAL. */
export function asBackupError(err: unknown): BackupError {
  if (err instanceof BackupError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new BackupError('INTERNAL', message, {
    cause: err,
    hint: 'This is a bug or an unexpected condition; the JSON log under LOG_DIR has the stack trace.',
  });
}

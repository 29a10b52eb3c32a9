import fs from 'node:fs';
import path from 'node:path';
import type winston from 'winston';
import { redact } from './redact';

/**
 * Logging: the console (what `pm2 logs basement-backup` shows), a JSON-lines file with size
 * rotation, and `backup.log` with one human line per backup attempt, like the old cron script's.
 * Every message and field passes through `redact`.
 *
 * Several processes write the same files at once (the daemon, a `backup` from cron, a `status`
 * typed by hand): both are opened for appending (O_APPEND), so each line lands whole at the end,
 * whoever else writes. Rotation is not coordinated between processes: each rotates by its own
 * count of what it wrote, and one that still has the old file open keeps appending to it under
 * its rotated name (nothing is lost). When two processes rotate in the same instant, the rename
 * chains interleave and one rotated file can be dropped early (LOG_MAX_FILES is then one file
 * short until the next rotation).
 *
 * winston is loaded, and the logger built, at the first line logged, not when a module imports
 * this one (~40 ms of every start here): `basebackup` starts pg_basebackup before that, and a
 * command that logs nothing never loads it.
 */
export interface LogOptions {
  dir?: string;
  level?: string;
  maxBytes?: number;
  maxFiles?: number;
  /** CLI commands log to stderr so their stdout stays clean for --json. */
  consoleStream?: 'stdout' | 'stderr';
  consoleLevel?: string;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const load = (): typeof winston => require('winston') as typeof winston;

/** Every string field passed through `redact`. */
function redactFormat(w: typeof winston): winston.Logform.Format {
  return w.format((info) => {
    for (const key of Object.keys(info)) {
      const v = info[key];
      if (typeof v === 'string') info[key] = redact(v);
    }
    return info;
  })();
}

function consoleFormat(w: typeof winston): winston.Logform.Format {
  return w.format.combine(
    redactFormat(w),
    w.format.timestamp(),
    w.format.printf((info) => {
      const { level, message, timestamp, ...rest } = info;
      const fields = Object.entries(rest)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      return `${String(timestamp)} ${level}: ${String(message)}${fields ? ' ' + fields : ''}`;
    }),
  );
}

const JSON_LOG = 'basement-backup.jsonl';
const BACKUP_LOG = 'backup.log';
/** The files every process appends to in LOG_DIR. */
export const LOG_FILES = [JSON_LOG, BACKUP_LOG];

/** What `initLogger` was given last (none: the console only, at info). */
let options: LogOptions = { level: 'info' };
/** Built at the first line logged after `initLogger`. */
let current: winston.Logger | undefined;
let logDir: string | undefined;

export function initLogger(opts: LogOptions): void {
  logDir = opts.dir;
  // made now, so a directory that cannot be made fails where the command starts
  if (opts.dir) fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  options = opts;
  const old = current;
  current = undefined;
  old?.close();
}

function logger(): winston.Logger {
  current ??= build(options);
  return current;
}

function build(opts: LogOptions): winston.Logger {
  const w = load();
  const transports: winston.transport[] = [
    new w.transports.Console({
      level: opts.consoleLevel ?? opts.level ?? 'info',
      stderrLevels: opts.consoleStream === 'stdout' ? ['error'] : ['error', 'warn', 'info', 'debug'],
      format: consoleFormat(w),
    }),
  ];
  if (opts.dir) {
    transports.push(
      new w.transports.File({
        filename: path.join(opts.dir, JSON_LOG),
        maxsize: opts.maxBytes ?? 10 * 1024 * 1024,
        maxFiles: opts.maxFiles ?? 5,
        tailable: true,
        level: opts.level ?? 'info',
        // winston's default is { flags: 'a' }: replacing it without 'a' opened the file for
        // writing at offset 0, truncating what other processes wrote (and leaving NUL bytes)
        options: { flags: 'a', mode: 0o600 },
        format: w.format.combine(redactFormat(w), w.format.timestamp(), w.format.json()),
      }),
    );
  }
  return w.createLogger({ level: 'debug', transports });
}

type LogFn = (msg: string, meta?: Record<string, unknown>) => void;

export const log: Record<'error' | 'warn' | 'info' | 'debug', LogFn> = {
  error: (msg, meta) => void logger().error(msg, meta),
  warn: (msg, meta) => void logger().warn(msg, meta),
  info: (msg, meta) => void logger().info(msg, meta),
  debug: (msg, meta) => void logger().debug(msg, meta),
};

/** Appends one human line to logs/backup.log, in the spirit of the old script's log. */
export function backupLogLine(ok: boolean, text: string, at: Date = new Date()): void {
  if (!logDir) return;
  const line = `${at.toISOString().replace(/\.\d{3}Z$/, 'Z')}: ${ok ? '✅' : '❌'} ${redact(text)}\n`;
  try {
    fs.appendFileSync(path.join(logDir, BACKUP_LOG), line, { mode: 0o600 });
  } catch (err) {
    logger().warn('cannot write backup.log', { error: String(err) });
  }
}

/** Waits until the file transports have flushed, so a process can exit without losing lines. */
let closing: Promise<void> | undefined;

export async function closeLogger(): Promise<void> {
  const open = current;
  // nothing was logged: nothing to flush
  if (!open) return;
  closing ??= new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 2000);
    open.on('finish', () => {
      clearTimeout(timer);
      resolve();
    });
    open.end();
  });
  await closing;
}

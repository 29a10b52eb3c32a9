/**
 * The daemon's control socket, what both ends share: where it is, what is said on it, and how a
 * base backup's result and errors cross it. One JSON object a line.
 *
 *   command → daemon   { v, run: 'basebackup', database, pid, config }       (then, to stop it: end)
 *   daemon → command   { refused }                                            (the command runs it itself)
 *                      { accepted, pid }, { alive } every ALIVE_MS, then { result } or { error }
 *
 * The socket is `daemon.sock` in BACKUP_STATE_DIR (0700), itself 0600: only the daemon's user (and
 * root) can ask it for anything. The daemon runs a command's request only when its configuration
 * is the command's (`config`: a hash of each setting), so a command given another env file is
 * never run with the daemon's.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import { BackupError, ERROR_CODES, type ErrorCode } from '../errors';
import type { Configuration, DatabaseEntry } from '../config/types';
import type { BaseBackupResult } from '../pitr/base-backup';

export const PROTOCOL_VERSION = 1;
/** How often the daemon says it is alive while it runs a request. */
export const ALIVE_MS = 5_000;
/** The longest a socket path may be (sun_path is 108 bytes with its NUL); a longer state directory has no socket. */
const MAX_SOCKET_PATH = 107;

/** Where the daemon of `stateDir` listens, or undefined when the path is too long for a socket. */
export function controlSocketPath(stateDir: string): string | undefined {
  const p = path.join(stateDir, 'daemon.sock');
  return Buffer.byteLength(p) <= MAX_SOCKET_PATH ? p : undefined;
}

/**
 * The settings that differ between two processes of one configuration (their environments, pm2's
 * files): left out of the comparison. The rest decides what a base backup does.
 */
const PROCESS_OWN = new Set(['databases', 'childEnv', 'pm2Env', 'pm2LogFiles', 'pm2Bin']);

/** A hash of each setting of `config` and of `database`'s entry: what the daemon compares with its own. */
export function configHashes(config: Configuration, database: DatabaseEntry): Record<string, string> {
  const hash = (v: unknown) =>
    crypto
      .createHash('sha256')
      .update(JSON.stringify(v) ?? 'undefined')
      .digest('hex')
      .slice(0, 16);
  const out: Record<string, string> = { database: hash(database) };
  for (const [k, v] of Object.entries(config)) if (!PROCESS_OWN.has(k)) out[k] = hash(v);
  return out;
}

/** The settings whose hashes differ (or that one side lacks). */
export function differing(a: Record<string, string>, b: Record<string, string>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => a[k] !== b[k]).sort();
}

export interface Request {
  v: number;
  run: 'basebackup';
  database: string;
  pid: number;
  config: Record<string, string>;
}

export interface WireError {
  code: string;
  message: string;
  hint?: string | undefined;
  detail?: string | undefined;
}

export interface WireResult extends Omit<BaseBackupResult, 'failedTargets'> {
  failedTargets: { name: string; error: WireError }[];
}

export type Reply = { refused: string } | { accepted: true; pid: number } | { alive: true } | { result: WireResult } | { error: WireError };

export function errorToWire(e: BackupError): WireError {
  return { code: e.code, message: e.message, hint: e.hint, detail: e.detail };
}

export function errorFromWire(w: WireError): BackupError {
  const code: ErrorCode = w.code in ERROR_CODES ? (w.code as ErrorCode) : 'INTERNAL';
  return new BackupError(code, w.message, { hint: w.hint, detail: w.detail });
}

export function resultToWire(r: BaseBackupResult): WireResult {
  return { ...r, failedTargets: r.failedTargets.map((f) => ({ name: f.name, error: errorToWire(f.error) })) };
}

export function resultFromWire(w: WireResult): BaseBackupResult {
  return { ...w, failedTargets: w.failedTargets.map((f) => ({ name: f.name, error: errorFromWire(f.error) })) };
}

/** Splits a socket's text into JSON lines, calling `onLine` with each parsed one (a line that is not JSON ends it with `onBad`). */
export function lineReader(onLine: (v: unknown) => void, onBad: (line: string) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('utf8');
    let i: number;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      if (line.trim() === '') continue;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        onBad(line.slice(0, 200));
        return;
      }
      onLine(v);
    }
    // one request or reply is small: a line past 1 MB is not ours
    if (pending.length > 1024 * 1024) onBad(pending.slice(0, 200));
  };
}

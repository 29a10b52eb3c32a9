import fs from 'node:fs';
import path from 'node:path';

/**
 * Replaces `file` with `value` as JSON atomically: a temporary file beside it (`<file>.tmp-<pid>`,
 * mode 0600), fsync, rename; the directory is created 0700 when missing. A reader sees the old
 * content or the new, never half of it. `durable: false` leaves out the fsync, for a record
 * rewritten every second that a crash may set back by one write (a synchronous fsync blocks this
 * process, up to a tenth of a second when the disk is busy).
 */
export function writeJsonAtomic(file: string, value: unknown, opts: { durable?: boolean } = {}): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(value, null, 2) + '\n');
    if (opts.durable !== false) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** The JSON in `file`, or undefined when it is missing or not JSON. */
export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

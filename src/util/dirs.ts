import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Why a directory cannot be written, in words an operator can act on. */
export interface DirProblem {
  /** Names the setting and the path, e.g. "LOG_DIR /var/log/bb is on a read-only file system". */
  message: string;
  /** The fix. */
  hint: string;
}

function userName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

/** The first of `p` and its parents that exists. */
function nearestExisting(p: string): string {
  let at = p;
  while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  return at;
}

/** The first of `p` and its parents that exists and is not a directory. */
function fileInTheWay(p: string): string | undefined {
  for (let at = p; ; at = path.dirname(at)) {
    try {
      return fs.statSync(at).isDirectory() ? undefined : at;
    } catch {
      if (path.dirname(at) === at) return undefined;
    }
  }
}

function notADirectory(p: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${p}'`), { code: 'ENOTDIR', path: p });
}

/**
 * mkdir -p with mode 0700, one level at a time, so that a read-only file system or a file in the
 * way is reported as such (Node's recursive mkdir reports ENOENT for both).
 */
export function makeDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if (!fs.statSync(dir).isDirectory()) throw notADirectory(dir);
      return;
    }
    if (code !== 'ENOENT' || path.dirname(dir) === dir) throw err;
    makeDir(path.dirname(dir));
    makeDir(dir);
  }
}

/**
 * What a file-system error on `file`, inside the directory `dir` that `setting` names, means for
 * the operator: a read-only file system, a missing permission (naming the user), a file where a
 * directory should be, or else the error code.
 */
export function describeFsError(err: unknown, setting: string, dir: string, file = dir): DirProblem {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EROFS') {
    return { message: `${setting} ${dir} is on a read-only file system`, hint: `Remount it read-write, or set ${setting} to a directory on a writable disk.` };
  }
  if (code === 'EACCES' || code === 'EPERM') {
    const user = userName();
    // the file when it exists (and is not writable), else the directory it was to be created in
    const blocked = fs.existsSync(file) ? file : nearestExisting(path.dirname(file));
    return {
      message: `${setting} ${dir}: permission denied: user ${user} cannot write ${blocked === dir ? 'it' : blocked}`,
      hint: `Run chown ${user} ${blocked} (or chmod it so ${user} can write it), or set ${setting} to a directory ${user} can write.`,
    };
  }
  if (code === 'ENOTDIR' || code === 'EEXIST') {
    const inTheWay = fileInTheWay(dir);
    if (inTheWay) {
      return {
        message: inTheWay === dir ? `${setting} ${dir} is a file, not a directory` : `${setting} ${dir}: ${inTheWay} is a file, not a directory`,
        hint: `Set ${setting} to a directory, or move the file ${inTheWay} out of the way.`,
      };
    }
  }
  return {
    message: `${setting} ${dir}: cannot write ${file} (${code ?? (err as Error).message})`,
    hint: `Check ${setting}, its permissions and the disk it is on.`,
  };
}

/**
 * Creates `dir` when missing (0700) and proves this user can create files in it and append to
 * `files` (names inside it, created 0600 when missing). Returns what is wrong, or undefined when
 * it is usable. A full disk does not count: the free-space check before a backup reports it.
 */
export function checkWritableDir(dir: string, setting: string, files: string[] = []): DirProblem | undefined {
  let step = dir;
  try {
    makeDir(dir);
    step = path.join(dir, `.write-test-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    fs.closeSync(fs.openSync(step, 'wx', 0o600));
    fs.rmSync(step);
    for (const f of files) {
      step = path.join(dir, f);
      fs.closeSync(fs.openSync(step, 'a', 0o600));
    }
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return undefined;
    return describeFsError(err, setting, dir, step);
  }
}

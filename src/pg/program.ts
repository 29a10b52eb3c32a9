import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { Duplex, PassThrough, Readable, type Writable } from 'node:stream';
import { BackupError } from '../errors';
import { log } from '../logger';
import { redact } from '../redact';
import { formatWait } from '../util/format';
import { childStdinSink, discard } from '../util/streams';
import type { SessionDiagnosis } from './activity';

/** How many of its last stderr lines a program's error message can draw on. */
const TAIL_LINES = 20;

/** When a program that shows no progress is stopped (BACKUP_STALL_MINUTES). */
export interface StallOptions {
  /** No progress for this long is a stall. */
  ms: number;
  /**
   * Asked once the program has been silent for `ms`: what its sessions on the server do. A
   * server still executing their statement (`busy`) restarts the wait; a lock, an idle session
   * or no answer is a stall. Without it, silence alone is.
   */
  diagnose?: () => Promise<SessionDiagnosis>;
  /** What to do about the sessions of a lock wait, for the hint. */
  lockHint?: (blockerPid: number | undefined) => string;
}

export interface ProgramOptions {
  /** The program, for messages: "pg_dump", "pg_dumpall", "pg_restore", "psql", "age". */
  name: string;
  /** Its executable, e.g. `bins.path('pg_dump')`. */
  file: string;
  args: string[];
  /**
   * The child's whole environment, nothing of ours added: libpqEnv for a program that connects
   * (the password goes there, never into `args`), else only PATH.
   */
  env: NodeJS.ProcessEnv;
  /** The program reads `stdin`; otherwise its stdin is closed at once. */
  input?: boolean;
  /**
   * Its stdin is this pipe instead: another program's stdout (`output` of `programPipeStage`),
   * which it reads directly, so those bytes never pass through this process. This process's end
   * of the pipe is closed once the program has started; `stdin` then discards what is written.
   */
  inputFrom?: Readable;
  /** Its stdout goes straight into this open file (a descriptor), not through this process; `stdout` is then empty. */
  outputFd?: number;
  /** Stops the program when it fires. */
  signal?: AbortSignal;
  /** Stops the program after this long (`timedOut`). */
  timeoutMs?: number;
  /** Each stderr line, redacted, as it comes: for progress and the log. */
  onStderr?: (line: string) => void;
  /** Which stderr lines the tail keeps (default: all), e.g. not the --verbose chatter. */
  keep?: (line: string) => boolean;
  /** Stop the program when it shows no progress for this long (see StallOptions). */
  stall?: StallOptions;
  /**
   * Runs it in a session of its own, so that a Ctrl-C on the terminal (SIGINT to our process
   * group) does not reach it: it ends by itself, or when we stop it (`signal`, `timeoutMs`).
   * For a step that must finish once begun (pm2 stopping the app of a switch).
   */
  detached?: boolean;
}

export interface ProgramExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** It could not run: not found, not executable (or, from outputOf, too much output). */
  error?: Error;
  /** The stall watch stopped it: the STALLED error that says what it waited for. */
  stalled?: BackupError;
  /** `timeoutMs` passed and it was stopped. */
  timedOut: boolean;
}

/** A running program: its pipes, its end, and what its stderr said. */
export interface Program {
  /** Feeds its stdin (with `input`); once it stops reading, the rest is swallowed (see childStdinSink). */
  readonly stdin: Writable;
  /** Read it at once: with a stall watch it flows from the start. */
  readonly stdout: Readable;
  /** Resolves, never rejects, once the program has ended and its pipes are closed. */
  readonly exited: Promise<ProgramExit>;
  /** Aborted, with the STALLED error as its reason, when the stall watch stops the program. */
  readonly stalled: AbortSignal;
  /** The last 20 stderr lines (of those `keep` kept), redacted. */
  readonly tail: readonly string[];
  /** The first line of the tail that names an error or is fatal, else its last line. */
  firstError(): string | undefined;
  /** `line` without the program's "pg_dump: " or "pg_dump: error: " in front. */
  withoutName(line: string): string;
  /** Counts bytes it processes outside its pipes (a file it reads) as progress. */
  progress(bytes: number): void;
  /** Stops it: SIGTERM, then SIGKILL if it is still there 5 s later. Safe to call twice. */
  stop(): void;
  /** Its process id (undefined when it could not start). */
  readonly pid: number | undefined;
}

/**
 * Starts a PostgreSQL program (pg_dump, pg_dumpall, pg_restore, psql, …), or the age program,
 * without a shell and with exactly the environment given. Its stderr is read line by line and redacted; the program is
 * stopped when `signal` fires, when `timeoutMs` passes, or when it stalls. The one place a
 * child program is started and ended.
 */
export function runProgram(o: ProgramOptions): Program {
  const child = spawn(o.file, o.args, {
    env: o.env,
    stdio: [o.inputFrom ?? 'pipe', o.outputFd ?? 'pipe', 'pipe'],
    detached: o.detached,
  }) as ChildProcessWithoutNullStreams;
  // the pipe is the child's now: this process must neither read it nor keep its writer from seeing the reader go
  o.inputFrom?.destroy();
  const stdin = o.inputFrom ? discard() : childStdinSink(child);
  if (!o.input && !o.inputFrom) child.stdin.end();
  const tail: string[] = [];
  readline.createInterface({ input: child.stderr }).on('line', (raw) => {
    const line = redact(raw);
    o.onStderr?.(line);
    if (o.keep && !o.keep(line)) return;
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
  });

  const stop = () => stopChild(child);
  const stalled = new AbortController();
  const watch = o.stall ? watchForStall(child, o.name, o.stall, (err) => stalled.abort(err)) : undefined;
  let timedOut = false;
  const deadline =
    o.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          stop();
        }, o.timeoutMs);
  if (o.signal?.aborted) stop();
  o.signal?.addEventListener('abort', stop, { once: true });
  const exited = new Promise<ProgramExit>((resolve) => {
    const end = (code: number | null, signal: NodeJS.Signals | null, error?: Error) => {
      clearTimeout(deadline);
      o.signal?.removeEventListener('abort', stop);
      watch?.stop();
      const stall = stalled.signal.aborted ? (stalled.signal.reason as BackupError) : undefined;
      resolve({ code, signal, error, stalled: stall, timedOut });
    };
    child.on('error', (error) => end(null, null, error));
    child.once('close', (code, signal) => end(code, signal));
  });
  const prefix = new RegExp(`^${o.name}: (error: )?`);
  return {
    stdin,
    stdout: child.stdout ?? Readable.from([]),
    exited,
    stalled: stalled.signal,
    tail,
    firstError: () => tail.find((l) => /error|fatal/i.test(l)) ?? tail[tail.length - 1],
    withoutName: (line) => line.replace(prefix, ''),
    progress: (bytes) => watch?.progress(bytes),
    stop,
    pid: child.pid,
  };
}

/**
 * Reads all of `program`'s stdout as text and waits for its end. More than `maxChars` stops it
 * and ends with an `error`.
 */
export async function outputOf(program: Program, maxChars = Infinity): Promise<ProgramExit & { stdout: string }> {
  let stdout = '';
  let tooMuch: Error | undefined;
  program.stdout.setEncoding('utf8').on('data', (d: string) => {
    if (tooMuch) return;
    stdout += d;
    if (stdout.length <= maxChars) return;
    tooMuch = new RangeError(`more than ${maxChars} characters of output`);
    program.stop();
  });
  const exit = await program.exited;
  return { ...exit, error: exit.error ?? tooMuch, stdout };
}

/** A helper program that filters a stream (age, zstd): its executable and the environment it runs in (PATH only). */
export interface FilterProgram {
  /** For messages: "age", "zstd". */
  name: string;
  file: string;
  env: NodeJS.ProcessEnv;
}

/**
 * A filter program as a stream stage: what is written goes to its stdin, its stdout comes out.
 * The output ends only once the program has exited 0, so a program that fails half-way can never
 * look like a complete stream; it fails with `failure(the last stderr lines)` instead. Destroying
 * the stage stops the program. With `outputFd`, its stdout goes into that open file instead, and
 * the stage's output ends, empty, once it has exited 0.
 */
export function programStage(program: FilterProgram, args: string[], failure: (tail: string) => Error, outputFd?: number): Duplex {
  const run = runProgram({ name: program.name, file: program.file, args, env: program.env, input: true, outputFd });
  const out = new PassThrough({ highWaterMark: 1024 * 1024 });
  run.stdout.pipe(out, { end: false });
  return stageOf(run, program, out, failure, false);
}

/**
 * A filter program whose output another program reads directly: `output` is its stdout pipe, to
 * be given at once (before anything is written to `stage`) as that program's `inputFrom`, so the
 * bytes pass between the two without this process. `stage` takes the input; its readable side
 * ends, empty, once the program has exited 0, or when the reader stopped reading before the end
 * (see readerStopped: the reader's own exit tells whether it got what it needed).
 */
export function programPipeStage(program: FilterProgram, args: string[], failure: (tail: string) => Error): { stage: Duplex; output: Readable } {
  const run = runProgram({ name: program.name, file: program.file, args, env: program.env, input: true });
  return { stage: stageOf(run, program, new PassThrough(), failure, true), output: run.stdout };
}

function stageOf(run: Program, program: FilterProgram, out: PassThrough, failure: (tail: string) => Error, readerMayStop: boolean): Duplex {
  const stage = Duplex.from({ writable: run.stdin, readable: out });
  const prefix = new RegExp(`^${program.name}: (error: )?`);
  void run.exited.then((exit) => {
    if (exit.code === 0 || (readerMayStop && readerStopped(exit, run.tail))) out.end();
    else
      stage.destroy(
        failure(exit.error ? `cannot run it: ${exit.error.message}` : run.tail.join(' ').replace(prefix, '') || `it exited with ${exit.signal ?? exit.code}`),
      );
  });
  stage.once('close', () => run.stop());
  return stage;
}

/**
 * The program's reader stopped reading before the end: SIGPIPE, or the error writing to it
 * (libuv's pipes are socket pairs, where a reader gone with unread bytes is a reset, not EPIPE).
 */
function readerStopped(exit: ProgramExit, tail: readonly string[]): boolean {
  return exit.signal === 'SIGPIPE' || (exit.code !== 0 && tail.some((l) => /broken pipe|connection reset by peer/i.test(l)));
}

/** The executable `name` (a path, or a name looked up in env.PATH), or undefined when there is none. */
export function findExecutable(name: string, env: NodeJS.ProcessEnv): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined;
  return (env.PATH ?? '')
    .split(path.delimiter)
    .filter(Boolean)
    .map((d) => path.join(d, name))
    .find(isExecutable);
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Sends SIGTERM to `child`, then SIGKILL if it is still there after `graceMs`; never throws. */
function stopChild(child: ChildProcess, graceMs = 5000): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, graceMs);
  timer.unref();
  child.once('exit', () => clearTimeout(timer));
}

/** The bytes the process read and wrote so far (any file, pipe or socket), or undefined without /proc. */
function ioCounter(pid: number | undefined): () => number | undefined {
  let available = pid !== undefined;
  return () => {
    if (!available) return undefined;
    try {
      const text = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
      const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
      return field('rchar') + field('wchar');
    } catch {
      available = false; // not Linux, or not allowed: the pipes and the server still tell
      return undefined;
    }
  };
}

interface StallWatch {
  /** Stops watching. Safe to call twice. */
  stop(): void;
  progress(bytes: number): void;
}

/**
 * Watches a program for progress: bytes on its stdout and stderr, its read and write counters in
 * /proc/<pid>/io where Linux offers them, and whatever the caller reports. After `o.ms` without
 * any, and unless the server says it is still working for it, builds a STALLED error saying what
 * the program waited for, calls `onStall` and stops the child. It ends by itself when the child exits.
 */
function watchForStall(child: ChildProcess, program: string, o: StallOptions, onStall: (err: BackupError) => void): StallWatch {
  const io = ioCounter(child.pid);
  let streamed = 0;
  let reported = 0;
  const count = (chunk: Buffer | string) => (streamed += chunk.length);
  child.stdout?.on('data', count);
  child.stderr?.on('data', count);

  let last = -1;
  let quietSince = Date.now();
  let asking = false;
  let stopped = false;
  const sample = () => streamed + reported + (io() ?? 0);
  const tick = async () => {
    const now = sample();
    if (now !== last) {
      last = now;
      quietSince = Date.now();
      return;
    }
    const quietMs = Date.now() - quietSince;
    if (quietMs < o.ms || asking) return;
    asking = true;
    let d: SessionDiagnosis | undefined;
    let unknown: string | undefined;
    try {
      d = await o.diagnose?.();
    } catch (err) {
      unknown = `the server did not say what it waits for (${(err as Error).message})`;
    } finally {
      asking = false;
    }
    if (stopped || sample() !== last) return;
    if (d?.busy) {
      log.info(`${program} has been silent for ${formatWait(quietMs)}, but the server is still executing its statement`);
      quietSince = Date.now();
      return;
    }
    watch.stop();
    const err = stallError(program, o, quietMs, d, unknown);
    log.error(`${program} stalled; stopping it`, { error: err.message });
    onStall(err);
    stopChild(child);
  };
  const timer = setInterval(() => void tick(), Math.max(100, Math.min(10_000, Math.floor(o.ms / 5))));
  const watch: StallWatch = {
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      child.stdout?.off('data', count);
      child.stderr?.off('data', count);
    },
    progress(bytes) {
      reported += bytes;
    },
  };
  child.once('exit', () => watch.stop());
  return watch;
}

function stallError(program: string, o: StallOptions, quietMs: number, d: SessionDiagnosis | undefined, unknown: string | undefined): BackupError {
  const wait = formatWait(quietMs);
  const limit = `BACKUP_STALL_MINUTES (${formatWait(o.ms)}) sets how long a silence is tolerated.`;
  if (d?.waitingFor) {
    const lock = d.waitingFor.startsWith('a lock');
    const fix = lock
      ? (o.lockHint?.(d.blockerPid) ??
        `End the blocking transaction (COMMIT or ROLLBACK it in its application${d.blockerPid ? `, or SELECT pg_terminate_backend(${d.blockerPid})` : ''}), then retry.`)
      : 'Bring the standby back or remove it from synchronous_standby_names, then retry.';
    return new BackupError('STALLED', `${program} waited ${wait} for ${d.waitingFor}`, { hint: `${fix} ${limit}` });
  }
  const seen = d?.seen ?? unknown ?? 'no progress was seen';
  return new BackupError('STALLED', `${program} made no progress for ${wait}: ${seen}`, {
    hint: `It was stopped and its sessions ended. Check the database server and the network to it, then retry. ${limit}`,
  });
}

/**
 * Starts a program that outlives this process (a background helper such as the WAL prefetcher):
 * its own session, no pipes to us, not waited for. It must end by itself (its own deadline); the
 * caller may stop it by the pid returned (undefined when it could not start).
 */
export function startBackground(file: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): number | undefined {
  const child = spawn(file, args, { env, cwd, detached: true, stdio: 'ignore' });
  child.on('error', (err) => log.warn('background program could not start', { file, error: err.message }));
  child.unref();
  return child.pid;
}

/**
 * The CLI with its stdout into a real pipe (a FIFO, as `basement-backup … | reader` makes): a
 * reader that takes its time, and one that stops after the first line (`| head -1`). The pipe
 * holds 64 KiB; a command that prints more must wait for its reader before it exits.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onTestFinished } from 'vitest';
import { CLI, type CliResult } from './cli';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Piped {
  child: ReturnType<typeof spawn>;
  readFd: number;
  stderr: () => string;
  exited: Promise<number | null>;
  closed: Promise<number | null>;
  /** Whether the process has exited. */
  hasExited: () => boolean;
}

/** Starts the CLI with stdout into a FIFO whose read end this process holds (non-blocking) and has not read yet. */
function startPiped(args: string[], env: Record<string, string>): Piped {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-pipe-'));
  const fifo = path.join(dir, 'stdout');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  const readFd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const writeFd = fs.openSync(fifo, fs.constants.O_WRONLY);
  fs.rmSync(dir, { recursive: true }); // the open ends keep the pipe
  const child = spawn(process.execPath, [CLI, ...args], { env, cwd: os.tmpdir(), stdio: ['ignore', writeFd, 'pipe'] });
  fs.closeSync(writeFd);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let done = false;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => ((done = true), resolve(code))));
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  onTestFinished(() => {
    if (!done) child.kill('SIGKILL');
  });
  return { child, readFd, stderr: () => stderr, exited, closed, hasExited: () => done };
}

/** Reads what the pipe holds now: the bytes, `null` at the end (no writer left), or an empty buffer when nothing is there yet. */
function readNow(fd: number, size = 4096): Buffer | null {
  const buf = Buffer.alloc(size);
  try {
    const n = fs.readSync(fd, buf, 0, size, null);
    return n === 0 ? null : buf.subarray(0, n);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return Buffer.alloc(0);
    throw err;
  }
}

/** Reads until `until` says stop, or the end; waits `pauseMs` whenever the pipe is empty. */
async function readWhile(fd: number, chunks: Buffer[], until: (chunks: Buffer[]) => boolean, deadline: number, pauseMs = 10): Promise<boolean> {
  while (!until(chunks)) {
    const got = readNow(fd);
    if (got === null) return false;
    if (got.length > 0) chunks.push(got);
    else {
      if (Date.now() > deadline) throw new Error('timed out reading the pipe');
      await sleep(pauseMs);
    }
  }
  return true;
}

/**
 * A slow reader: takes the first 4 KiB, then reads nothing more until the command has exited or
 * `holdMs` has passed, then the rest. A command that exits without waiting for its reader
 * loses what the pipe could not hold; one that waits exits only after the reader read it all.
 */
export async function runCliSlowReader(args: string[], env: Record<string, string>, holdMs = 1000, timeoutMs = 120_000): Promise<CliResult> {
  const p = startPiped(args, env);
  const deadline = Date.now() + timeoutMs;
  const chunks: Buffer[] = [];
  try {
    await readWhile(p.readFd, chunks, (c) => c.length > 0, deadline);
    await Promise.race([p.exited, sleep(holdMs)]);
    await readWhile(p.readFd, chunks, () => false, deadline);
  } finally {
    fs.closeSync(p.readFd);
  }
  const code = await p.closed;
  return { code, stdout: Buffer.concat(chunks).toString(), stderr: p.stderr() };
}

/** `basement-backup ARGS | head -1`: reads the first line, then closes the pipe; `stdout` is that line. */
export async function runCliHeadOne(args: string[], env: Record<string, string>, timeoutMs = 120_000): Promise<CliResult & { exitedBeforeClose: boolean }> {
  const p = startPiped(args, env);
  const chunks: Buffer[] = [];
  let exitedBeforeClose: boolean;
  try {
    await readWhile(p.readFd, chunks, (c) => Buffer.concat(c).includes('\n'), Date.now() + timeoutMs);
    exitedBeforeClose = p.hasExited();
  } finally {
    fs.closeSync(p.readFd);
  }
  const code = await p.closed;
  const text = Buffer.concat(chunks).toString();
  return { code, stdout: text.slice(0, text.indexOf('\n') + 1), stderr: p.stderr(), exitedBeforeClose };
}

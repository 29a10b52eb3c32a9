/**
 * pg_receivewal, run for the WAL receiver: the replication slot created when missing, the stream
 * into the spool, and the stop of a pg_receivewal a killed receiver left running. Every run goes
 * through the one program runner, with the password in its environment (libpqEnv), never in argv.
 */
import fs from 'node:fs';
import type { App } from '../app';
import type { BackupError } from '../errors';
import { log } from '../logger';
import { libpqEnv } from '../pg/libpq';
import { runProgram, type Program } from '../pg/program';
import { receivewalError } from './receivewal-errors';

/**
 * libpq settings on the command line (no secret among them): a server or network that goes
 * silent ends the stream within about a minute (TCP keepalives and tcp_user_timeout), and
 * pg_receivewal is restarted, instead of waiting on a dead connection for hours.
 */
const CONNECTION = 'keepalives=1 keepalives_idle=20 keepalives_interval=10 keepalives_count=3 tcp_user_timeout=60000';
/** Creating the slot is one short exchange: beyond the connect timeout, this much more is a failure. */
const CREATE_SLOT_MS = 30_000;

async function receivewal(app: App): Promise<{ file: string; env: NodeJS.ProcessEnv }> {
  const db = app.database.db;
  return {
    file: (await app.binaries()).path('pg_receivewal'),
    env: libpqEnv(db, app.config.childEnv, db.database, `basement-backup wal-receive`),
  };
}

/** Creates replication slot `slot` unless it exists; throws the error that names the fix. */
export async function createSlot(app: App, slot: string, signal: AbortSignal): Promise<void> {
  const { file, env } = await receivewal(app);
  const p = runProgram({
    name: 'pg_receivewal',
    file,
    env,
    args: ['--create-slot', '--if-not-exists', '-S', slot, '--no-password', '-d', CONNECTION],
    signal,
    timeoutMs: app.database.db.connectTimeoutSeconds * 1000 + CREATE_SLOT_MS,
  });
  const exit = await p.exited;
  if (exit.code === 0) return;
  const why = exit.error ? `cannot run it: ${exit.error.message}` : exit.timedOut ? 'it did not finish in time' : p.tail.join('\n');
  throw receivewalError(why, app.database.db, slot);
}

/** A running stream into `spool`; `ended` resolves with its failure (undefined after `stop()`). */
export interface WalStream {
  program: Program;
  ended: Promise<BackupError | undefined>;
  /** SIGTERM: pg_receivewal keeps the segment in progress as `.partial` and exits. */
  stop(): void;
}

/** Starts `pg_receivewal -D spool -S slot --no-loop -v`; each stderr line goes to `onLine`. */
export async function startStream(app: App, spool: string, slot: string, pidFile: string, onLine: (line: string) => void): Promise<WalStream> {
  const { file, env } = await receivewal(app);
  const program = runProgram({
    name: 'pg_receivewal',
    file,
    env,
    args: ['-D', spool, '-S', slot, '--no-loop', '-v', '--no-password', '-d', CONNECTION],
    onStderr: onLine,
  });
  if (program.pid !== undefined) fs.writeFileSync(pidFile, `${program.pid}\n`, { mode: 0o600 });
  let stopped = false;
  const ended = program.exited.then((exit) => {
    fs.rmSync(pidFile, { force: true });
    if (stopped && (exit.code === 0 || exit.signal !== null)) return undefined;
    const why = exit.error ? `cannot run it: ${exit.error.message}` : program.tail.join('\n') || `it exited with ${exit.signal ?? exit.code}`;
    return receivewalError(why, app.database.db, slot);
  });
  return {
    program,
    ended,
    stop() {
      stopped = true;
      program.stop();
    },
  };
}

/**
 * Stops the pg_receivewal a receiver killed with SIGKILL left streaming into `spool` (its pid in
 * `pidFile`): it holds the slot, and the new one could not start. Only a process that is
 * pg_receivewal writing into this very spool is signalled. Waits up to 10 s for it to go.
 */
export async function stopLeftover(pidFile: string, spool: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  const isOurs = () => {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return /pg_receivewal$/.test(argv[0] ?? '') && argv.includes(spool);
    } catch {
      return false;
    }
  };
  if (pid > 0 && isOurs()) {
    log.warn('stopping the pg_receivewal a killed receiver left running', { pid });
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && isOurs(); i++) await new Promise((r) => setTimeout(r, 100));
    if (isOurs()) process.kill(pid, 'SIGKILL');
  }
  fs.rmSync(pidFile, { force: true });
}

import { spawn } from 'node:child_process';
import readline from 'node:readline';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { BackupError } from '../errors';
import { log } from '../logger';
import type { SessionDiagnosis } from '../pg/activity';
import { classifyLibpqStderr } from '../pg/connection';
import { grantFromStderr } from '../pg/privileges';
import { watchForStall } from '../pg/watchdog';
import { redact } from '../redact';
import { hashTap } from '../util/streams';

export interface DumpOptions {
  pgDump: string;
  /** Connection settings, password included, go in the environment: see libpqEnv. */
  env: NodeJS.ProcessEnv;
  args: string[];
  /** gzip the stream on its way to storage (plain-format dumps). */
  gzipLevel?: number;
  out: Writable;
  signal: AbortSignal;
  /** Stop pg_dump when it shows no progress for `ms` (and the server is not working for it). */
  stall?: { ms: number; diagnose?: () => Promise<SessionDiagnosis> };
}

export interface DumpResult {
  sha256: string;
  sizeBytes: number;
}

const STDERR_LINES = 20;

/**
 * Runs pg_dump without a shell and streams its stdout through (gzip,) sha256 and size into
 * `out`. stderr goes to the log, never into the dump. Resolves only when pg_dump exited 0 and
 * every byte reached `out`; an abort kills pg_dump.
 */
export async function runPgDump(opts: DumpOptions): Promise<DumpResult> {
  const child = spawn(opts.pgDump, opts.args, { env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  const rl = readline.createInterface({ input: child.stderr });
  rl.on('line', (line) => {
    const clean = redact(line);
    tail.push(clean);
    if (tail.length > STDERR_LINES) tail.shift();
    log.warn(clean.startsWith('pg_dump:') ? clean : `pg_dump: ${clean}`);
  });

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  const onAbort = () => child.kill('SIGTERM');
  opts.signal.addEventListener('abort', onAbort, { once: true });
  let stalled: BackupError | undefined;
  const stop = new AbortController();
  const watch = opts.stall
    ? watchForStall(child, {
        program: 'pg_dump',
        stallMs: opts.stall.ms,
        diagnose: opts.stall.diagnose,
        lockHint: (pid) =>
          `A backup reads every table: end the blocking transaction (COMMIT or ROLLBACK it in its application${pid ? `, or SELECT pg_terminate_backend(${pid})` : ''}), and keep migrations' transactions short or run them outside the backup schedule; then run \`basement-backup backup\` again.`,
        onStall: (err) => {
          stalled = err;
          stop.abort(err);
        },
      })
    : undefined;

  const tap = hashTap();
  const stages: (NodeJS.ReadableStream | NodeJS.WritableStream)[] = [child.stdout];
  if (opts.gzipLevel !== undefined) stages.push(zlib.createGzip({ level: opts.gzipLevel }));
  stages.push(tap.stage, opts.out);

  let pipeError: unknown;
  try {
    await pipeline(stages as unknown as [NodeJS.ReadableStream, NodeJS.WritableStream], { signal: AbortSignal.any([opts.signal, stop.signal]) });
  } catch (err) {
    pipeError = err;
    child.kill('SIGTERM');
  }
  const exit = await exited;
  watch?.stop();
  opts.signal.removeEventListener('abort', onAbort);
  const stderrTail = tail.join('\n');

  if (opts.signal.aborted) {
    throw new BackupError('ABORTED', 'the backup was stopped before it finished', {
      hint: 'The daemon is shutting down or the backup was cancelled; the partial file was removed.',
    });
  }
  if (stalled) throw stalled; // its stderr was silent by definition; "terminated" is our own doing
  if (exit.error) {
    throw new BackupError('CONFIG', `cannot run ${opts.pgDump}: ${exit.error.message}`, { hint: 'Check PG_BIN_DIR or install the PostgreSQL client.' });
  }
  // A failed write (e.g. a full disk) is why pg_dump was killed: report it, not the kill.
  if (pipeError) {
    if (pipeError instanceof BackupError) throw pipeError;
    const errno = (pipeError as NodeJS.ErrnoException).code;
    if (errno === 'ENOSPC') {
      throw new BackupError('NO_SPACE', 'the disk filled up while writing the backup', {
        hint: 'Free disk space or point BACKUP_DIR at a larger disk.',
        cause: pipeError,
      });
    }
    throw new BackupError('STORAGE', `writing the backup failed: ${errno ?? (pipeError as Error).message}`, {
      hint: 'Check BACKUP_DIR and its disk.',
      cause: pipeError,
    });
  }
  if (exit.code !== 0) {
    const code = classifyLibpqStderr(stderrTail) ?? 'DUMP_FAILED';
    const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    const firstError = tail.find((l) => /error|fatal/i.test(l)) ?? tail[tail.length - 1] ?? '';
    throw new BackupError(code, `pg_dump ${how}${firstError ? `: ${firstError.replace(/^pg_dump: (error: )?/, '')}` : ''}`, {
      detail: stderrTail,
      hint: hintFor(code, stderrTail, opts.env.PGUSER ?? ''),
    });
  }
  const { sha256, size } = tap.result();
  return { sha256, sizeBytes: size };
}

function hintFor(code: BackupError['code'], stderr: string, user: string): string {
  switch (code) {
    case 'PRIVILEGE': {
      const grant = grantFromStderr(stderr, user);
      return grant
        ? `As the object's owner or a superuser, run: ${grant} (README: Database privileges); \`basement-backup config check\` lists everything missing.`
        : 'Grant DB_USER the privilege named above (README: Database privileges); `basement-backup config check` lists everything missing.';
    }
    case 'DB_AUTH':
      return "Check DB_USER and DB_PASSWORD (or DATABASE_URL) and the server's pg_hba.conf.";
    case 'DB_MISSING':
      return 'Check DB_NAME (or the database in DATABASE_URL).';
    case 'DB_CONNECT':
      return 'Check that PostgreSQL is running (systemctl status postgresql) and DB_HOST/DB_PORT are right.';
    default:
      return "Read pg_dump's messages above; run `basement-backup backup` by hand to retry.";
  }
}

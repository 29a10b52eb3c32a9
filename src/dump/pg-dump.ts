import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BackupError } from '../errors';
import { log } from '../logger';
import type { SessionDiagnosis } from '../pg/activity';
import { classifyLibpqStderr } from '../pg/libpq';
import { connectHint, loginHint, sslMismatch } from '../pg/hints';
import { grantFromStderr } from '../pg/privileges';
import { runProgram } from '../pg/program';

export interface DumpOptions {
  pgDump: string;
  /** Connection settings, password included, go in the environment: see libpqEnv. */
  env: NodeJS.ProcessEnv;
  args: string[];
  /** Where pg_dump's output goes (the pipeline measures and checksums it). */
  out: Writable;
  signal: AbortSignal;
  /** Stop pg_dump when it shows no progress for `ms` (and the server is not working for it). */
  stall?: { ms: number; diagnose?: () => Promise<SessionDiagnosis> };
}

/**
 * Runs pg_dump without a shell and streams its stdout into `out`. stderr goes to the log, never
 * into the dump. Resolves only when pg_dump exited 0 and every byte reached `out`; an abort kills pg_dump.
 */
export async function runPgDump(opts: DumpOptions): Promise<void> {
  const dump = runProgram({
    name: 'pg_dump',
    file: opts.pgDump,
    args: opts.args,
    env: opts.env,
    signal: opts.signal,
    onStderr: (line) => log.warn(line.startsWith('pg_dump:') ? line : `pg_dump: ${line}`),
    stall: opts.stall && {
      ...opts.stall,
      lockHint: (pid) =>
        `A backup reads every table: end the blocking transaction (COMMIT or ROLLBACK it in its application${pid ? `, or SELECT pg_terminate_backend(${pid})` : ''}), and keep migrations' transactions short or run them outside the backup schedule; then run \`basement-backup backup\` again.`,
    },
  });

  let pipeError: unknown;
  try {
    await pipeline(dump.stdout, opts.out, { signal: AbortSignal.any([opts.signal, dump.stalled]) });
  } catch (err) {
    pipeError = err;
    dump.stop();
  }
  const exit = await dump.exited;
  if (opts.signal.aborted) {
    throw new BackupError('ABORTED', 'the backup was stopped before it finished', {
      hint: 'The daemon is shutting down or the backup was cancelled; the partial file was removed.',
    });
  }
  if (exit.stalled) throw exit.stalled; // its stderr was silent by definition; "terminated" is our own doing
  if (exit.error) {
    throw new BackupError('CONFIG', `cannot run ${opts.pgDump}: ${exit.error.message}`, { hint: 'Check PG_BIN_DIR or install the PostgreSQL client.' });
  }
  // A failed write (e.g. a full disk) is why pg_dump was killed: report it, not the kill.
  if (pipeError) throw writeError(pipeError);
  if (exit.code !== 0) {
    const stderrTail = dump.tail.join('\n');
    const ssl = sslMismatch(stderrTail, opts.env.PGSSLMODE);
    const code = ssl?.code ?? classifyLibpqStderr(stderrTail) ?? 'DUMP_FAILED';
    const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    const firstError = dump.firstError() ?? '';
    throw new BackupError(code, `pg_dump ${how}${firstError ? `: ${dump.withoutName(firstError)}` : ''}`, {
      detail: stderrTail,
      hint: ssl?.hint ?? hintFor(code, stderrTail, opts.env.PGUSER ?? ''),
    });
  }
}

function writeError(err: unknown): BackupError {
  if (err instanceof BackupError) return err;
  const errno = (err as NodeJS.ErrnoException).code;
  if (errno === 'ENOSPC') {
    return new BackupError('NO_SPACE', 'the disk filled up while writing the backup', {
      hint: 'Free disk space or point BACKUP_DIR at a larger disk.',
      cause: err,
    });
  }
  return new BackupError('STORAGE', `writing the backup failed: ${errno ?? (err as Error).message}`, {
    hint: 'Check BACKUP_DIR and its disk.',
    cause: err,
  });
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
      return loginHint({});
    case 'DB_MISSING':
      return 'Check DB_NAME (or the database in DATABASE_URL).';
    case 'DB_CONNECT':
      return connectHint({});
    default:
      return "Read pg_dump's messages above; run `basement-backup backup` by hand to retry.";
  }
}

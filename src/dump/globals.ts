import { log } from '../logger';
import { outputOf, runProgram } from '../pg/program';

/**
 * The cluster's roles and tablespaces (`pg_dumpall --globals-only`), so a restore onto a fresh
 * server can recreate the roles the dump refers to. Without superuser rights the role passwords
 * cannot be read and are left out. Returns undefined (and logs why) when it cannot be taken:
 * the roles are a convenience, the dump itself is the backup.
 */
export async function dumpGlobals(pgDumpall: string, env: NodeJS.ProcessEnv, database: string, superuser: boolean): Promise<string | undefined> {
  const args = ['--globals-only', '--no-password', `--database=${database}`];
  if (!superuser) args.push('--no-role-passwords');
  const run = runProgram({ name: 'pg_dumpall', file: pgDumpall, args, env });
  const { code, error, stdout } = await outputOf(run, 64 * 1024 * 1024);
  if (code === 0 && !error) return stdout;
  log.warn('could not save the cluster roles (pg_dumpall --globals-only); the backup is kept without them', {
    error: run.tail.join('\n').trim() || (error?.message ?? `pg_dumpall exited with code ${code}`),
  });
  return undefined;
}

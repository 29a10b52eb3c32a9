import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { log } from '../logger';
import { redact } from '../redact';

const execFileP = promisify(execFile);

/**
 * The cluster's roles and tablespaces (`pg_dumpall --globals-only`), so a restore onto a fresh
 * server can recreate the roles the dump refers to. Without superuser rights the role passwords
 * cannot be read and are left out. Returns undefined (and logs why) when it cannot be taken:
 * the roles are a convenience, the dump itself is the backup.
 */
export async function dumpGlobals(pgDumpall: string, env: NodeJS.ProcessEnv, database: string, superuser: boolean): Promise<string | undefined> {
  const args = ['--globals-only', '--no-password', `--database=${database}`];
  if (!superuser) args.push('--no-role-passwords');
  try {
    const { stdout } = await execFileP(pgDumpall, args, { env, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    log.warn('could not save the cluster roles (pg_dumpall --globals-only); the backup is kept without them', {
      error: redact(String((err as { stderr?: string }).stderr ?? (err as Error).message)).trim(),
    });
    return undefined;
  }
}

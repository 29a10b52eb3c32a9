import fs from 'node:fs';
import path from 'node:path';
import { BackupError, ConfigError } from '../errors';
import { outputOf, runProgram } from './program';

export interface PgBinaries {
  dir: string;
  /** e.g. "15.18" */
  version: string;
  major: number;
  /**
   * What every program starts from: the variables of basement-backup's environment a child may
   * see (Settings.childEnv: PATH, locale, …), never a secret. libpqEnv adds the connection settings.
   */
  env: NodeJS.ProcessEnv;
  path(tool: 'pg_dump' | 'pg_restore' | 'psql' | 'pg_dumpall' | 'pg_basebackup' | 'pg_receivewal' | 'pg_ctl' | 'postgres'): string;
}

async function versionOf(pgDump: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  // Only PATH: none of our environment (LD_PRELOAD, say) reaches the child.
  const run = runProgram({ name: 'pg_dump', file: pgDump, args: ['--version'], env: { PATH: env.PATH ?? '' }, timeoutMs: 10_000 });
  const { code, error, stdout } = await outputOf(run);
  return code === 0 && !error ? /(\d+(?:\.\d+)*)/.exec(stdout)?.[1] : undefined;
}

function majorOf(version: string): number {
  return Number(version.split('.')[0]);
}

/**
 * The directories holding a pg_dump, each real program once: /bin and /usr/bin are one directory
 * on a merged /usr, and Debian's pg_wrapper (/usr/bin/pg_dump, a Perl script that runs one of
 * /usr/lib/postgresql/<version>/bin, ~50 ms a start) is left out when those directories are here.
 */
function candidates(env: NodeJS.ProcessEnv): string[] {
  // Versioned directories first, so that on a tie they win over anything else on PATH.
  const dirs: string[] = [];
  try {
    for (const v of fs.readdirSync('/usr/lib/postgresql')) dirs.push(path.join('/usr/lib/postgresql', v, 'bin'));
  } catch {
    // no Debian-style PostgreSQL install
  }
  const versioned = dirs.length;
  for (const d of (env.PATH ?? '').split(path.delimiter)) if (d) dirs.push(d);
  const seen = new Set<string>();
  return dirs.filter((d, i) => {
    let real: string;
    try {
      real = fs.realpathSync(path.join(d, 'pg_dump'));
    } catch {
      return false;
    }
    if (seen.has(real) || (i >= versioned && versioned > 0 && path.basename(real) === 'pg_wrapper')) return false;
    seen.add(real);
    return true;
  });
}

/**
 * Finds the PostgreSQL client tools: PG_BIN_DIR when set, else the newest pg_dump on PATH or
 * under /usr/lib/postgresql/<version>/bin (a newer pg_dump can dump older servers). `env` is
 * what they will start from (Settings.childEnv); its PATH is searched.
 */
export async function findPgBinaries(pgBinDir: string | undefined, env: NodeJS.ProcessEnv): Promise<PgBinaries> {
  let best: { dir: string; version: string } | undefined;
  if (pgBinDir) {
    const version = await versionOf(path.join(pgBinDir, 'pg_dump'), env);
    if (!version) {
      throw new ConfigError(
        'PG_BIN_DIR',
        `no working pg_dump in ${pgBinDir}`,
        'Point PG_BIN_DIR at the bin directory of a PostgreSQL client install, e.g. /usr/lib/postgresql/16/bin.',
      );
    }
    best = { dir: pgBinDir, version };
  } else {
    const dirs = candidates(env);
    const versions = await Promise.all(dirs.map((dir) => versionOf(path.join(dir, 'pg_dump'), env)));
    dirs.forEach((dir, i) => {
      const version = versions[i];
      if (version && (!best || compareVersions(version, best.version) > 0)) best = { dir, version };
    });
    if (!best) {
      throw new BackupError('CONFIG', 'pg_dump was not found on PATH or under /usr/lib/postgresql/*/bin', {
        hint: 'Install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client) or set PG_BIN_DIR.',
      });
    }
  }
  const { dir, version } = best;
  return { dir, version, major: majorOf(version), env, path: (tool) => path.join(dir, tool) };
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** pg_dump refuses to dump a server newer than itself; say so before trying, with the fix. */
export function checkDumpCompatible(bins: PgBinaries, serverVersionNum: number): void {
  const serverMajor = Math.floor(serverVersionNum / 10000);
  if (bins.major < serverMajor) {
    throw new BackupError('VERSION', `pg_dump ${bins.version} (${bins.dir}) is older than the server (PostgreSQL ${serverMajor})`, {
      hint: `Install the PostgreSQL ${serverMajor} client (apt-get install postgresql-client-${serverMajor}) and set PG_BIN_DIR=/usr/lib/postgresql/${serverMajor}/bin.`,
    });
  }
}

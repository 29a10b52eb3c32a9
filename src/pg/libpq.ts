/**
 * What libpq's programs (pg_dump, pg_restore, psql, pg_basebackup, pg_receivewal) are given and
 * what their messages mean, without the `pg` driver: a base backup starts pg_basebackup before
 * the driver is loaded.
 */
import type { DbConfig } from '../config/types';
import type { BackupError } from '../errors';
import { childEnvironment } from '../util/child-env';

/**
 * The environment for a libpq child (pg_dump, pg_restore, psql): the connection settings,
 * password included, go here and never on the command line. PG* variables of our own
 * environment are dropped so they cannot redirect the child to another server.
 */
export function libpqEnv(db: DbConfig, base: NodeJS.ProcessEnv, database = db.database, appName = 'basement-backup'): NodeJS.ProcessEnv {
  // Only what a libpq tool needs from `base` (Settings.childEnv): no secret (SMTP_PASSWORD, …) is passed on.
  const env = childEnvironment(base);
  env.PGHOST = db.host;
  env.PGPORT = String(db.port);
  env.PGUSER = db.user;
  env.PGDATABASE = database;
  env.PGCONNECT_TIMEOUT = String(db.connectTimeoutSeconds);
  env.PGAPPNAME = appName;
  if (db.password !== undefined) env.PGPASSWORD = db.password;
  if (db.sslmode) env.PGSSLMODE = db.sslmode;
  return env;
}

/** Classifies pg_dump/psql stderr text the same way as driver errors. */
export function classifyLibpqStderr(stderr: string): BackupError['code'] | undefined {
  if (/password authentication failed|no pg_hba\.conf entry|authentication failed|no password supplied/i.test(stderr)) return 'DB_AUTH';
  if (/database ".*" does not exist/i.test(stderr)) return 'DB_MISSING';
  if (/permission denied (for|to)|row-level security policy|must be (owner of|member of role|superuser|able to SET ROLE)/i.test(stderr)) return 'PRIVILEGE';
  if (
    /could not connect|connection refused|Connection timed out|could not translate host name|server closed the connection|No such file or directory\s+Is the server running/i.test(
      stderr,
    )
  )
    return 'DB_CONNECT';
  return undefined;
}

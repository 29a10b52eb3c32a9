import pg from 'pg';
import type { DbConfig } from '../config/types';
import { BackupError } from '../errors';
import { redact } from '../redact';
import { connectHint, loginHint, sslMismatch } from './hints';
import { grantFromStderr } from './privileges';

export function pgClientConfig(db: DbConfig, database = db.database): pg.ClientConfig {
  return {
    host: db.host,
    port: db.port,
    user: db.user,
    password: db.password,
    database,
    connectionTimeoutMillis: db.connectTimeoutSeconds * 1000,
    application_name: 'basement-backup',
    ssl: sslOption(db.sslmode),
  };
}

function sslOption(mode: string | undefined): pg.ClientConfig['ssl'] {
  switch (mode) {
    case undefined:
    case 'disable':
    case 'allow':
    case 'prefer':
      return undefined;
    case 'require':
      return { rejectUnauthorized: false };
    default:
      return { rejectUnauthorized: true };
  }
}

/** Turns a driver or libpq error into one that says which setting to look at. */
export function classifyPgError(err: unknown, db: DbConfig, database = db.database): BackupError {
  const e = err as { code?: string; message?: string };
  const msg = redact(e.message ?? String(err));
  const where = `${db.user}@${db.host}:${db.port}/${database}`;
  const ssl = sslMismatch(msg, db.sslmode);
  if (ssl) return new BackupError(ssl.code, `cannot connect to ${where}: ${ssl.why}: ${msg}`, { hint: ssl.hint, cause: err });
  switch (e.code) {
    case '28P01':
    case '28000':
      return new BackupError('DB_AUTH', `login refused for ${where}: ${msg}`, {
        hint: loginHint(db),
        cause: err,
      });
    case '42501': {
      const grant = grantFromStderr(msg, db.user);
      return new BackupError('PRIVILEGE', `${db.user} was refused on ${db.host}:${db.port}/${database}: ${msg}`, {
        hint: grant
          ? `As the object's owner or a superuser, run: ${grant} (README: Database privileges)`
          : 'Grant DB_USER the privilege named above (README: Database privileges).',
        cause: err,
      });
    }
    case '3D000':
      return new BackupError('DB_MISSING', `database "${database}" does not exist on ${db.host}:${db.port}`, {
        hint: 'Check DB_NAME (or the database in DATABASE_URL).',
        cause: err,
      });
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
    case 'ENOENT':
    case '57P03':
      return new BackupError('DB_CONNECT', `cannot connect to ${where}: ${msg}`, {
        hint: connectHint(db),
        cause: err,
      });
    default:
      if (/timeout|terminat|connect/i.test(msg)) {
        return new BackupError('DB_CONNECT', `cannot connect to ${where}: ${msg}`, {
          hint: connectHint(db),
          cause: err,
        });
      }
      return new BackupError('DUMP_FAILED', `database error on ${where}: ${msg}`, { cause: err });
  }
}

/**
 * Connects, or throws a classified BackupError. Without DB_SSLMODE (or with "prefer") this does
 * what libpq and so pg_dump do: try TLS first (without verifying the certificate) and fall back
 * to a plain connection when the server does not offer TLS, so a server that only accepts TLS
 * works for both; on loopback, the other way round (isLoopback). `extra`: more driver settings, e.g. `replication: 'true'` for a physical
 * replication connection (what pg_hba.conf's `replication` keyword matches).
 */
export async function connect(db: DbConfig, database = db.database, extra: pg.ClientConfig & { replication?: 'true' } = {}): Promise<pg.Client> {
  const config = { ...pgClientConfig(db, database), ...extra };
  const prefer = (db.sslmode === undefined || db.sslmode === 'prefer') && !db.host.startsWith('/');
  const tls = { ...config, ssl: { rejectUnauthorized: false } };
  if (prefer && !isLoopback(db.host)) {
    try {
      return await open(tls);
    } catch (err) {
      if (!/does not support SSL/i.test((err as Error).message ?? '')) throw classifyPgError(err, db, database);
    }
  }
  let refused: unknown;
  try {
    return await open(config);
  } catch (err) {
    // on loopback, plaintext came first: a server whose pg_hba.conf takes only TLS (hostssl) gets it now
    if (!(prefer && /no pg_hba\.conf entry.*(no encryption|SSL off)/i.test((err as Error).message ?? ''))) throw classifyPgError(err, db, database);
    refused = err;
  }
  try {
    return await open(tls);
  } catch (err) {
    // a server without TLS: pg_hba.conf's refusal of the plain connection is the answer
    throw classifyPgError(/does not support SSL/i.test((err as Error).message ?? '') ? refused : err, db, database);
  }
}

/**
 * A loopback address: `prefer` tries plaintext first there (TLS only when pg_hba.conf asks for
 * it), since TLS protects nothing that never leaves this machine, and the TLS try that a server
 * without TLS refuses is a second connection for every command.
 */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

async function open(config: pg.ClientConfig): Promise<pg.Client> {
  const client = new pg.Client(config);
  client.on('error', () => {
    // a dropped connection surfaces on the next query; never crash the process here
  });
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}

/**
 * Ends the server sessions of pg_dump runs whose basement-backup process is gone (killed with
 * SIGKILL, e.g. by pm2 after kill_timeout): such a pg_dump, waiting for a table lock, would hold
 * its snapshot and locks until it next writes to its dead parent. Only sessions from this
 * client address, in `db`'s database, named by runBackup's application_name. Returns the
 * application names of the sessions ended.
 */
export async function stopOrphanDumpSessions(db: DbConfig, alive: (pid: number) => boolean): Promise<string[]> {
  const c = await connect(db);
  try {
    const rows = await c.query<{ pid: number; name: string }>(
      `SELECT pid, application_name AS name FROM pg_stat_activity
        WHERE datname = $1 AND application_name LIKE 'basement-backup pg_dump %'
          AND client_addr IS NOT DISTINCT FROM inet_client_addr() AND pid <> pg_backend_pid()`,
      [db.database],
    );
    const orphans = rows.rows.filter((r) => {
      const owner = Number(/^basement-backup pg_dump (\d+)$/.exec(r.name)?.[1]);
      return owner > 0 && !alive(owner);
    });
    for (const o of orphans) await c.query('SELECT pg_terminate_backend($1)', [o.pid]);
    return orphans.map((o) => o.name);
  } finally {
    await c.end().catch(() => undefined);
  }
}

import os from 'node:os';
import { PG_NAME_MAX_BYTES } from '../../pg/names';
import { registerSecret } from '../../redact';
import { shown } from '../../util/format';
import type { Reader } from '../reader';
import type { DbConfig } from '../types';
import { readDatabaseUrl, URL_FORM } from './database-url';

const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

/** DATABASE_URL or the DB_* settings: the connection of the database to back up. */
export function parseDb(r: Reader): DbConfig {
  const url = r.raw('DATABASE_URL');
  registerSecret(r.raw('DB_PASSWORD'));
  const connectTimeoutSeconds = r.int('DB_CONNECT_TIMEOUT_SECONDS', 10, 1, 600);
  if (url) return urlDb(r, url, connectTimeoutSeconds);
  const database = r.raw('DB_NAME');
  if (!database) {
    r.fail('DB_NAME', 'is not set', "Set DB_NAME to the database to back up (or DATABASE_URL), e.g. in the app's .env passed with --env-file.");
  }
  const sslmode = r.raw('DB_SSLMODE') === undefined ? undefined : r.oneOf('DB_SSLMODE', 'prefer', SSL_MODES);
  return {
    host: r.string('DB_HOST', 'localhost'),
    port: r.int('DB_PORT', 5432, 1, 65535),
    user: r.raw('DB_USER') ?? os.userInfo().username,
    password: r.raw('DB_PASSWORD'),
    database: database ?? '',
    sslmode,
    connectTimeoutSeconds,
  };
}

/** DATABASE_URL (see database-url.ts), with DB_PASSWORD, DB_NAME, DB_USER and DB_SSLMODE for what it leaves out. */
function urlDb(r: Reader, url: string, connectTimeoutSeconds: number): DbConfig {
  const read = readDatabaseUrl(url);
  if ('problem' in read) {
    r.fail('DATABASE_URL', read.problem, read.hint);
    return { host: 'localhost', port: 5432, user: '', password: undefined, database: '', sslmode: undefined, connectTimeoutSeconds };
  }
  const u = read.parts;
  registerSecret(u.password);
  registerSecret(u.password && encodeURIComponent(u.password));
  const database = u.database ?? r.raw('DB_NAME') ?? '';
  if (!database) r.fail('DATABASE_URL', 'names no database', `Add the database name after the host: ${URL_FORM}.`);
  if (u.sslmode !== undefined && !(SSL_MODES as readonly string[]).includes(u.sslmode)) {
    r.fail(
      'DATABASE_URL',
      `sslmode ${shown(u.sslmode)} is not one of ${SSL_MODES.join(', ')}`,
      'Use ?sslmode=require (or another of those values) in DATABASE_URL.',
    );
  }
  const sslmode = u.sslmode ?? (r.raw('DB_SSLMODE') === undefined ? undefined : r.oneOf('DB_SSLMODE', 'prefer', SSL_MODES));
  const user = u.user ?? r.raw('DB_USER') ?? os.userInfo().username;
  return { host: u.host ?? 'localhost', port: u.port ?? 5432, user, password: u.password ?? r.raw('DB_PASSWORD'), database, sslmode, connectTimeoutSeconds };
}

/**
 * The DB_* database (or DATABASE_URL's), its name checked: PostgreSQL would silently use the
 * first 63 bytes of a longer one, and restores would name the wrong database.
 */
export function parseMainDb(r: Reader): DbConfig {
  const db = parseDb(r);
  if (Buffer.byteLength(db.database) > PG_NAME_MAX_BYTES) {
    r.fail(
      r.raw('DATABASE_URL') ? 'DATABASE_URL' : 'DB_NAME',
      `the database name ${shown(db.database)} is ${Buffer.byteLength(db.database)} bytes long; PostgreSQL names are at most ${PG_NAME_MAX_BYTES}`,
      'Give the name exactly as `psql -l` lists it.',
    );
  }
  return db;
}

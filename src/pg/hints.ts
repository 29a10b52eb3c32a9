import type { DbConfig } from '../config/types';
import type { ErrorCode } from '../errors';

/**
 * The settings a connection failure points at: the drill server's VERIFY_DB_* when they set
 * `db`, else DB_* (or DATABASE_URL); and DB_SSLMODE when the failure is a TLS mismatch rather
 * than a wrong host or login.
 */
function names(db: Pick<DbConfig, 'settings'>): { server: string; login: string } {
  if (db.settings === 'VERIFY_DB') return { server: 'VERIFY_DB_HOST/VERIFY_DB_PORT (the drill server)', login: 'VERIFY_DB_USER and VERIFY_DB_PASSWORD' };
  return { server: 'DB_HOST/DB_PORT (or DATABASE_URL)', login: 'DB_USER and DB_PASSWORD (or DATABASE_URL)' };
}

export function connectHint(db: Pick<DbConfig, 'settings'>): string {
  return `Check that PostgreSQL is running (systemctl status postgresql) and ${names(db).server} are right.`;
}

export function loginHint(db: Pick<DbConfig, 'settings'>): string {
  return `Check ${names(db).login} and the server's pg_hba.conf.`;
}

const SSLMODE = 'DB_SSLMODE (or sslmode in DATABASE_URL)';
const CERTIFICATE = /certificate|altnames/i;

/**
 * A failure that comes from the TLS setting, not the host or the login: what it is and the fix,
 * or undefined. `message` is the driver's or libpq's.
 */
export function sslMismatch(message: string, sslmode: string | undefined): { code: ErrorCode; why: string; hint: string } | undefined {
  const mode = sslmode ?? 'prefer';
  if (/does not support SSL/i.test(message)) {
    return {
      code: 'DB_CONNECT',
      why: `the server does not offer TLS, and sslmode is ${mode}`,
      hint: `Turn on ssl in the server's postgresql.conf, or set ${SSLMODE} to prefer (TLS when offered) or disable.`,
    };
  }
  const hba = /no pg_hba\.conf entry for .*, (no encryption|SSL encryption)/i.exec(message)?.[1];
  if (hba && /^no/i.test(hba) && (mode === 'disable' || mode === 'allow')) {
    return {
      code: 'DB_AUTH',
      why: `the server accepts only encrypted connections from here (hostssl in pg_hba.conf), and sslmode is ${mode}`,
      hint: `Unset ${SSLMODE} or set it to require (or verify-full); or allow a plain connection in pg_hba.conf.`,
    };
  }
  if (hba && !/^no/i.test(hba) && mode !== 'disable') {
    return {
      code: 'DB_AUTH',
      why: `the server accepts only unencrypted connections from here (hostnossl in pg_hba.conf), and sslmode is ${mode}`,
      hint: `Set ${SSLMODE} to prefer or disable; or allow TLS connections (hostssl) in pg_hba.conf.`,
    };
  }
  if ((mode === 'verify-ca' || mode === 'verify-full') && CERTIFICATE.test(message)) {
    return {
      code: 'DB_CONNECT',
      why: `the server's certificate could not be verified, and sslmode is ${mode}`,
      hint: `Trust the CA that signed the server's certificate (for Node: NODE_EXTRA_CA_CERTS; for pg_dump: ~/.postgresql/root.crt), or set ${SSLMODE} to require (encrypted, not verified).`,
    };
  }
  return undefined;
}

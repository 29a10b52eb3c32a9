const CHILD_ENV = /^(PATH|HOME|USER|LOGNAME|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|SSL_CERT_FILE|SSL_CERT_DIR)$/;

/**
 * Only what a child process (pg_dump, psql, …) needs from `env`: PATH, HOME, the user, the
 * locale, TZ, TMPDIR, SSL_CERT_*. No secret (SMTP_PASSWORD, …), no PG* variable that could
 * redirect it to another server, nothing like LD_PRELOAD.
 */
export function childEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (CHILD_ENV.test(k)) out[k] = v;
  return out;
}

/**
 * One place that knows the secrets. Everything that leaves the process as text (logs, alert
 * emails, error messages, CLI output) goes through `redact`.
 */
const secrets = new Set<string>();

export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 3) secrets.add(value);
}

/** For tests: forget the registered secrets. */
export function clearSecrets(): void {
  secrets.clear();
}

const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]*)(:[^/@\s]*)?@/gi;
// password=secret, PGPASSWORD='secret', "password": "secret", DB_PASSWORD: "x y" (but not prose
// such as "SMTP_PASSWORD: is not set": after a colon only a quoted value counts)
const PASSWORD_KEYS = 'password|passwd|pwd|PGPASSWORD|DB_PASSWORD|SMTP_PASSWORD|VERIFY_DB_PASSWORD';
const PASSWORD_ASSIGN = new RegExp(`\\b(${PASSWORD_KEYS})("?\\s*=\\s*)("[^"]*"|'[^']*'|[^\\s,;}]+)`, 'gi');
const PASSWORD_COLON = new RegExp(`\\b(${PASSWORD_KEYS})("?\\s*:\\s*)("[^"]*"|'[^']*')`, 'gi');

export function redact(text: string): string {
  let out = text;
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) {
    out = out.split(s).join('***');
  }
  out = out.replace(URL_CREDENTIALS, (_m, scheme: string, user: string, pass?: string) => (pass ? `${scheme}${user}:***@` : `${scheme}${user}@`));
  out = out.replace(PASSWORD_ASSIGN, (_m, key: string, sep: string) => `${key}${sep}***`);
  out = out.replace(PASSWORD_COLON, (_m, key: string, sep: string) => `${key}${sep}***`);
  return out;
}

/**
 * DATABASE_URL, read strictly. A URL whose password holds an unencoded `@`, `/`, `#` or `?` still
 * parses as *some* URL: its tail becomes the host or the database name, and from there it reaches
 * error messages, logs, mail subjects and state file names. So a URL is taken only when there is
 * one way to read it; otherwise it is refused with a message that shows nothing after the scheme.
 */

/** What the URL gives; what it leaves out is taken from the DB_* settings. */
export interface UrlParts {
  user: string | undefined;
  password: string | undefined;
  host: string | undefined;
  port: number | undefined;
  database: string | undefined;
  sslmode: string | undefined;
}

export type UrlReading = { parts: UrlParts } | { problem: string; hint: string };

export const URL_FORM = 'postgresql://USER:PASSWORD@HOST:5432/DBNAME';

// no URL of the form scheme://user:password@ here: redact() would mask it in the hint
const ENCODE_HINT =
  'Percent-encode the special characters of the password in the URL ' +
  '(@ as %40, / as %2F, : as %3A, # as %23, ? as %3F, % as %25; `node -p "encodeURIComponent(process.argv[1])" \'PASSWORD\'` prints it), ' +
  'or leave the password out of the URL and set DB_PASSWORD.';

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;

/** Why `rest` (the URL after `scheme://`) has more than one reading, or undefined when it has one. */
function ambiguity(rest: string): string | undefined {
  if (/[\s\p{Cc}]/u.test(rest)) return 'it holds a space or a control character';
  if (rest.includes('#')) return "it holds a '#'";
  if (/%(?![0-9a-f]{2})/i.test(rest)) return "a '%' in it is not followed by two hex digits";
  const ats = rest.split('@').length - 1;
  if (ats > 1) return `it holds ${ats} '@' where one at most separates the login from the host`;
  const authorityEnd = rest.search(/[/?]/);
  if (ats === 1 && authorityEnd >= 0 && rest.indexOf('@') > authorityEnd) return "its '@' comes after a '/' or '?'";
  const path = authorityEnd >= 0 && rest[authorityEnd] === '/' ? rest.slice(authorityEnd + 1).split('?')[0]! : '';
  if (path.includes('/')) return "it holds more than one '/' after the host";
  return undefined;
}

/** The query's parameters, each name and value percent-decoded once (`+` is a plus, as libpq reads it). */
function queryParams(query: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
    out.set(key, decodeURIComponent(eq < 0 ? '' : pair.slice(eq + 1)));
  }
  return out;
}

/**
 * Reads DATABASE_URL. `?password=` is used as libpq uses it (so the URL the app connects with
 * works here too), and refused when the URL gives a password before the host as well.
 */
export function readDatabaseUrl(url: string): UrlReading {
  const scheme = SCHEME.exec(url);
  if (!scheme) return { problem: 'is not a URL (it does not start with postgresql://)', hint: `Use the form ${URL_FORM}.` };
  if (!/^postgres(ql)?$/i.test(scheme[1]!)) return { problem: `scheme "${scheme[1]}:" is not postgresql:`, hint: `Use the form ${URL_FORM}.` };
  const unclear = ambiguity(url.slice(scheme[0].length));
  if (unclear) return { problem: `cannot be read one way only: ${unclear} (nothing of it after the scheme is shown here)`, hint: ENCODE_HINT };
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { problem: 'is not a valid URL (nothing of it after the scheme is shown here)', hint: `Check the host and the port (1 to 65535). ${ENCODE_HINT}` };
  }
  try {
    return partsOf(u);
  } catch {
    return { problem: 'holds a percent-escape that is not UTF-8 text (nothing of it after the scheme is shown here)', hint: ENCODE_HINT };
  }
}

function partsOf(u: URL): UrlReading {
  const query = queryParams(u.search.replace(/^\?/, ''));
  const inQuery = query.get('password');
  const beforeHost = u.password === '' ? undefined : decodeURIComponent(u.password);
  if (inQuery !== undefined && beforeHost !== undefined) {
    return { problem: 'gives a password twice, before the host and as ?password=', hint: 'Keep one of them (or neither, and set DB_PASSWORD).' };
  }
  const host = decodeURIComponent(u.hostname).replace(/^\[(.*)\]$/, '$1') || query.get('host');
  return {
    parts: {
      user: decodeURIComponent(u.username) || query.get('user') || undefined,
      password: beforeHost ?? (inQuery || undefined),
      host: host || undefined,
      port: u.port ? Number(u.port) : undefined,
      database: decodeURIComponent(u.pathname.replace(/^\//, '')) || query.get('dbname') || undefined,
      sslmode: query.get('sslmode'),
    },
  };
}

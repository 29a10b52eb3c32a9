import { registerSecret } from '../../redact';
import type { Reader } from '../reader';
import type { NotifyConfig, PingUrls } from '../types';

/** An http(s) URL or undefined; anything else is a CONFIG error naming the variable. The URL is a secret (its path or query is the token). */
function httpUrl(r: Reader, name: string, example: string): string | undefined {
  const v = r.raw(name);
  if (v === undefined) return undefined;
  registerSecret(v);
  let u: URL | undefined;
  try {
    u = new URL(v);
  } catch {
    u = undefined;
  }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
    r.fail(name, 'is not an http:// or https:// URL', `Set ${name} to a URL such as ${example}, or remove it.`);
    return undefined;
  }
  const url = v.replace(/\/+$/, '');
  registerSecret(url);
  return url;
}

const CHECK_URL = 'https://hc-ping.com/<uuid>';

/** BACKUP_PING_URL and BACKUP_VERIFY_PING_URL: read per database (a `databases:` entry's ping_url, verify_ping_url over them). */
export function parsePingUrls(r: Reader): PingUrls {
  return { backup: httpUrl(r, 'BACKUP_PING_URL', CHECK_URL), verify: httpUrl(r, 'BACKUP_VERIFY_PING_URL', CHECK_URL) };
}

/** BACKUP_WEBHOOK_URL and BACKUP_PING_TIMEOUT_SECONDS: where every alert is also posted, and how long a ping or post may take. */
export function parseNotify(r: Reader): NotifyConfig {
  return {
    webhookUrl: httpUrl(r, 'BACKUP_WEBHOOK_URL', 'https://hooks.slack.com/services/…'),
    timeoutMs: r.int('BACKUP_PING_TIMEOUT_SECONDS', 10, 1, 300) * 1000,
  };
}

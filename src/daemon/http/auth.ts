import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const digest = (s: string) => crypto.createHash('sha256').update(s).digest();

/**
 * Does the request carry BACKUP_HTTP_TOKEN? As a bearer token (Prometheus, curl), or as the
 * password of Basic authentication (what a browser asks a person for; the user name is ignored).
 * Compared in constant time: both sides are hashed to the same length first.
 */
export function hasToken(req: IncomingMessage, token: string): boolean {
  const header = req.headers.authorization ?? '';
  const [scheme, value = ''] = header.split(/\s+/, 2);
  let given: string | undefined;
  if (scheme?.toLowerCase() === 'bearer') given = value;
  else if (scheme?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    given = decoded.slice(decoded.indexOf(':') + 1);
  }
  return given !== undefined && crypto.timingSafeEqual(digest(given), digest(token));
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { healthReport } from '../../monitor/health';
import { METRICS_CONTENT_TYPE, renderMetrics } from '../../monitor/metrics';
import { statusPage } from '../../monitor/page';
import type { Snapshot } from '../../monitor/snapshot';
import { redact } from '../../redact';
import { hasToken } from './auth';
import type { Pacer } from './pace';

/** Where the server reads the daemon's state: the Watch's newest snapshot (never storage itself). */
export interface SnapshotSource {
  latest(): Snapshot | undefined;
  /** The first snapshot, or undefined once `ms` passed without one. */
  first(ms: number): Promise<Snapshot | undefined>;
}

/** How long /healthz waits for the daemon's first check before it answers 503 "starting". */
const FIRST_CHECK_WAIT_MS = 15_000;

/** How long one rendering of /metrics is served again (a snapshot changes it at once). */
const METRICS_FRESH_MS = 1_000;

/** Forbids every load from elsewhere: the page is one document with its CSS and SVG inline. */
const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Answer {
  status: number;
  type: string;
  body: string;
  headers?: Record<string, string | string[]>;
}

const json = (status: number, value: unknown, headers?: Answer['headers']): Answer => ({
  status,
  type: 'application/json; charset=utf-8',
  body: JSON.stringify(value, null, 2) + '\n',
  ...(headers ? { headers } : {}),
});

const ROUTES = ['/', '/healthz', '/metrics'];

/** When more requests wait their turn than the pacer holds. */
const BUSY = json(
  503,
  {
    error: 'too many requests wait while a backup runs',
    fix: 'Retry in a few seconds; the server answers BACKUP_HTTP_BUSY_RATE requests a second while a backup runs.',
  },
  { 'Retry-After': '2' },
);

/**
 * Answers one request, in its turn when a pacer is given: GET or HEAD only (405 else),
 * BACKUP_HTTP_TOKEN on everything but /healthz, JSON errors, no stack trace; every body passes
 * through `redact`.
 */
export function handler(
  source: SnapshotSource,
  token: string | undefined,
  pacer?: Pick<Pacer, 'turn'>,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const pages = new WeakMap<Snapshot, string>();
  const page = (s: Snapshot | undefined): string => {
    if (!s) return statusPage(undefined);
    let html = pages.get(s);
    if (html === undefined) pages.set(s, (html = redact(statusPage(s))));
    return html;
  };

  // one rendering a second at most, whatever the load: Node's process metrics are that fresh
  let metrics: { of: Snapshot | undefined; at: number; text: Promise<string> } | undefined;
  const metricsText = (s: Snapshot | undefined): Promise<string> => {
    if (!metrics || metrics.of !== s || Date.now() - metrics.at >= METRICS_FRESH_MS) metrics = { of: s, at: Date.now(), text: renderMetrics(s).then(redact) };
    return metrics.text;
  };

  const answer = async (req: IncomingMessage): Promise<Answer> => {
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return json(405, { error: 'method not allowed: this server only reads (GET, HEAD)' }, { Allow: 'GET, HEAD' });
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (!ROUTES.includes(path)) return json(404, { error: `no such page: ${path}`, pages: ROUTES });
    if (path === '/healthz') {
      const h = healthReport(source.latest() ?? (await source.first(FIRST_CHECK_WAIT_MS)));
      return json(h.status, h.body);
    }
    if (token !== undefined && !hasToken(req, token))
      return json(
        401,
        { error: 'unauthorized', fix: 'Send the header "Authorization: Bearer <BACKUP_HTTP_TOKEN>" (a browser asks for it as the password).' },
        { 'WWW-Authenticate': 'Basic realm="basement-backup", charset="UTF-8"' },
      );
    if (path === '/metrics') return { status: 200, type: METRICS_CONTENT_TYPE, body: await metricsText(source.latest()) };
    return { status: 200, type: 'text/html; charset=utf-8', body: page(source.latest()) };
  };

  return async (req, res) => {
    let a: Answer;
    try {
      a = pacer && !(await pacer.turn()) ? BUSY : await answer(req);
    } catch {
      a = json(500, { error: 'internal error', fix: 'The daemon log (LOG_DIR) says what failed.' });
    }
    res.writeHead(a.status, {
      'Content-Type': a.type,
      'Content-Security-Policy': CSP,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Cache-Control': 'no-store',
      ...a.headers,
    });
    // the page and the metrics are redacted once when drawn; the small JSON answers here
    res.end(a.type.startsWith('application/json') ? redact(a.body) : a.body);
  };
}

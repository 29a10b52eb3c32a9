import { log } from '../logger';

/**
 * The one place for outgoing HTTP besides storage (pings, the alert webhook). A request gets a
 * few attempts within one deadline (`totalMs`, each attempt aborted when it runs out), retries
 * on a network error or a 5xx with a short backoff, and never throws: a failure is logged with
 * the URL reduced to scheme://host/… (its path or query is often the token) and returned.
 */
export interface HttpRequest {
  url: string;
  method: 'GET' | 'POST';
  body?: string;
  contentType?: string;
  /** The whole budget, every attempt and backoff included. */
  totalMs: number;
  /** What the log calls it: "could not send the start ping". */
  what: string;
  attempts?: number;
}

export interface HttpOutcome {
  ok: boolean;
  status?: number;
  headers?: Headers;
  /** Why it failed, without the URL. */
  error?: string;
}

/** scheme://host/… : enough to tell which server, never the token. */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}/…`;
  } catch {
    return '(invalid URL)';
  }
}

const BACKOFF_MS = [300, 1000, 2000];

async function attempt(req: HttpRequest, ms: number): Promise<HttpOutcome> {
  try {
    const res = await fetch(req.url, {
      method: req.method,
      body: req.body,
      headers: req.body === undefined ? undefined : { 'content-type': req.contentType ?? 'text/plain; charset=utf-8' },
      signal: AbortSignal.timeout(ms),
      redirect: 'follow',
    });
    await res.arrayBuffer().catch(() => undefined);
    return { ok: res.ok, status: res.status, headers: res.headers, error: res.ok ? undefined : `HTTP ${res.status}` };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why = e.name === 'TimeoutError' ? `no answer within ${Math.round(ms / 100) / 10} s` : (e.cause?.code ?? e.cause?.message ?? e.message);
    return { ok: false, error: why };
  }
}

export async function sendHttp(req: HttpRequest): Promise<HttpOutcome> {
  const end = Date.now() + req.totalMs;
  const attempts = req.attempts ?? 3;
  let out: HttpOutcome = { ok: false, error: 'not sent' };
  for (let i = 0; i < attempts; i++) {
    const left = end - Date.now();
    if (left <= 50) break;
    out = await attempt(req, left);
    const retryable = !out.ok && (out.status === undefined || out.status >= 500 || out.status === 429);
    if (!retryable) break;
    const pause = BACKOFF_MS[Math.min(i, BACKOFF_MS.length - 1)]!;
    if (i === attempts - 1 || end - Date.now() <= pause + 50) break;
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
  if (!out.ok) log.warn(`could not send ${req.what}`, { url: shownUrl(req.url), error: out.error });
  return out;
}

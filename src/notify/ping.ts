import { randomUUID } from 'node:crypto';
import { asBackupError, ERROR_CODES, type BackupError } from '../errors';
import { redact } from '../redact';
import { sendHttp } from './http';

/** What a ping's body may hold at most (healthchecks' hosted default); less when the server says so. */
export const PING_BODY_MAX = 10_000;

/**
 * One run's pings to a dead-man's switch (healthchecks.io's convention): `<url>/start?rid=…`
 * when it starts, `<url>?rid=…` when it succeeds, `<url>/<exit code>?rid=…` when it fails, the
 * same rid for all three. The start ping runs beside the work (never awaited before it);
 * `finish` waits for it, then sends the last ping, each within its own deadline, and never throws.
 */
export class PingRun {
  readonly rid = randomUUID();
  private started: Promise<void> = Promise.resolve();
  private bodyLimit = PING_BODY_MAX;

  constructor(
    private readonly url: string,
    private readonly totalMs: number,
  ) {}

  start(): void {
    this.started = this.send('/start', 'the start ping', undefined).then(() => undefined);
  }

  /** The last ping: success, or the failure with its exit code; `log` its last lines (redacted and cut to the server's limit). */
  async finish(exitCode: number, logLines: string): Promise<void> {
    await this.started;
    await this.send(exitCode === 0 ? '' : `/${exitCode}`, exitCode === 0 ? 'the success ping' : 'the failure ping', logLines);
  }

  private async send(suffix: string, what: string, body: string | undefined): Promise<void> {
    const u = new URL(this.url);
    u.pathname = u.pathname.replace(/\/+$/, '') + suffix;
    u.searchParams.set('rid', this.rid);
    const out = await sendHttp({
      url: u.toString(),
      method: body === undefined ? 'GET' : 'POST',
      body: body === undefined ? undefined : tail(redact(body), this.bodyLimit),
      totalMs: this.totalMs,
      what,
    });
    const header = out.headers?.get('ping-body-limit');
    const limit = header ? Number(header) : NaN;
    if (Number.isInteger(limit) && limit >= 0) this.bodyLimit = Math.min(PING_BODY_MAX, limit);
  }
}

/** The end of `text` in at most `limit` bytes of UTF-8, cut at a line (or a character) boundary. */
export function tail(text: string, limit: number): string {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= limit) return text;
  let cut = buf
    .subarray(buf.length - limit)
    .toString('utf8')
    .replace(/^\uFFFD+/, '');
  const nl = cut.indexOf('\n');
  if (nl >= 0 && nl < cut.length - 1) cut = cut.slice(nl + 1);
  while (Buffer.byteLength(cut, 'utf8') > limit) cut = cut.slice(1);
  return cut;
}

/** What a failure's ping carries: the error as the log and the alert say it. */
export function failureLines(what: string, err: BackupError): string {
  const lines = [`${what} failed: ${ERROR_CODES[err.code].title} (${err.code}): ${err.message}`];
  if (err.hint) lines.push(`What to do: ${err.hint}`);
  if (err.detail) lines.push(err.detail);
  return lines.join('\n') + '\n';
}

/**
 * Runs `work` between a start ping and its last ping (when `url` is set): `work` calls `started`
 * once it holds its lock, which sends the start ping (a run refused by the lock, LOCKED, pings
 * nothing: no start left without its end); `outcome` says how a result ended; a throw is a
 * failure with its exit code. The work's result or error is passed on.
 */
export async function pinged<T>(
  url: string | undefined,
  totalMs: number,
  /** What the run is, in the failure's first line ("Restore drill failed: …"). */
  what: string,
  work: (started: () => void) => Promise<T>,
  outcome: (result: T) => { error: BackupError | undefined; body: string },
): Promise<T> {
  if (url === undefined) return work(() => undefined);
  const ping = new PingRun(url, totalMs);
  let result: T;
  try {
    result = await work(() => ping.start());
  } catch (err) {
    const e = asBackupError(err);
    if (e.code !== 'LOCKED') await ping.finish(ERROR_CODES[e.code].exit, failureLines(what, e));
    throw err;
  }
  const { error, body } = outcome(result);
  await ping.finish(error ? ERROR_CODES[error.code].exit : 0, body);
  return result;
}

import { ERROR_CODES, type BackupError } from '../errors';
import { redact } from '../redact';
import { sendHttp } from './http';

/** What the JSON says of an alert event (any AlertEvent is one). */
export interface AlertFacts {
  kind: string;
  database?: string | undefined;
  name?: string | undefined;
  /** The target holding the newest good backup, when there are several. */
  newestOn?: string | undefined;
  error?: BackupError | undefined;
  /** An early warning's own fields (see WarningEvent): the check, its target and fix, without an error. */
  code?: string | undefined;
  target?: string | undefined;
  fix?: string | undefined;
  key?: string | undefined;
}

export interface WebhookTarget {
  url: string;
  totalMs: number;
}

/**
 * The JSON an alert is posted as: `text` is what Slack, Mattermost and Discord show (Discord
 * reads `content`), the rest is for whatever reads it by machine. Redacted like the mail.
 */
export function webhookBody(event: AlertFacts, msg: { subject: string; text: string }): string {
  const error = event.error;
  const text = redact(`${msg.subject}\n\n${msg.text}`);
  return JSON.stringify({
    text,
    content: text.slice(0, 2000),
    kind: event.kind,
    title: redact(msg.subject),
    database: event.database,
    name: event.name,
    target: event.target ?? event.newestOn,
    code: error?.code ?? event.code,
    exit_code: error ? ERROR_CODES[error.code].exit : undefined,
    fix: (error?.hint ?? event.fix) === undefined ? undefined : redact((error?.hint ?? event.fix)!),
    key: event.key,
  });
}

/** Posts one alert; never throws (a failure is logged by sendHttp). Returns whether it was accepted. */
export async function postWebhook(hook: WebhookTarget, event: AlertFacts, msg: { subject: string; text: string }): Promise<boolean> {
  const out = await sendHttp({
    url: hook.url,
    method: 'POST',
    body: webhookBody(event, msg),
    contentType: 'application/json',
    totalMs: hook.totalMs,
    what: 'the alert to the webhook',
  });
  return out.ok;
}

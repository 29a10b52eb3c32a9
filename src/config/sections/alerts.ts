import os from 'node:os';
import { registerSecret } from '../../redact';
import { Reader } from '../reader';
import type { AlertConfig } from '../types';
import { parseNotify } from './notify';

const EMAIL = /^[^\s@<>,]+@[^\s@<>,]+$/;

/** SMTP_* and ALERT_*: where alerts are mailed (only logged without SMTP_HOST). */
export function parseAlerts(r: Reader): AlertConfig {
  const host = r.raw('SMTP_HOST');
  const secure = r.bool('SMTP_SECURE', false);
  const port = r.int('SMTP_PORT', secure ? 465 : 587, 1, 65535);
  const user = r.raw('SMTP_USER');
  const password = r.raw('SMTP_PASSWORD');
  registerSecret(password);
  const toRaw = r.raw('ALERT_EMAIL_TO');
  const to = (toRaw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const addr of to) {
    if (!EMAIL.test(addr)) r.fail('ALERT_EMAIL_TO', `"${addr}" is not an email address`, 'Use comma-separated addresses like ops@example.com,me@example.com.');
  }
  const from = r.string('ALERT_EMAIL_FROM', `basement-backup@${os.hostname()}`);
  if (!EMAIL.test(from.replace(/^.*<([^>]+)>\s*$/, '$1'))) {
    r.fail('ALERT_EMAIL_FROM', `"${from}" is not an email address`, 'Set ALERT_EMAIL_FROM to an address your mail server accepts as sender.');
  }
  if (host && to.length === 0) {
    r.fail('ALERT_EMAIL_TO', 'is not set but SMTP_HOST is', 'Set ALERT_EMAIL_TO to the address(es) that should receive alerts.');
  }
  if (!host && to.length > 0) {
    r.fail('SMTP_HOST', 'is not set but ALERT_EMAIL_TO is', 'Set SMTP_HOST (and SMTP_PORT, SMTP_USER, SMTP_PASSWORD) to your mail server.');
  }
  if (password && !user) r.fail('SMTP_USER', 'is not set but SMTP_PASSWORD is', 'Set SMTP_USER to the login that goes with SMTP_PASSWORD.');
  return {
    smtp: host ? { host, port, secure, user, password } : undefined,
    from,
    to,
    repeatMinutes: r.int('ALERT_REPEAT_MINUTES', 60, 0, 7 * 24 * 60),
  };
}

/**
 * Just the alert settings, for reporting a configuration error by mail when the rest of the
 * configuration is broken. Undefined when the alert settings themselves are unusable.
 */
export function parseAlertConfig(vars: Record<string, string | undefined>): AlertConfig | undefined {
  const r = new Reader(vars, process.cwd());
  const alert = parseAlerts(r);
  return r.errors.length === 0 && alert.smtp ? alert : undefined;
}

/**
 * Where an unattended command that cannot start reports it, read alone from a configuration
 * that may be broken elsewhere: the mail settings (undefined when unusable) and
 * BACKUP_WEBHOOK_URL (undefined when unset or not a URL).
 */
export function parseStartAlerts(vars: Record<string, string | undefined>): {
  alert: AlertConfig | undefined;
  webhook: { url: string; totalMs: number } | undefined;
} {
  const r = new Reader(vars, process.cwd());
  const notify = parseNotify(r);
  const hookOk = r.errors.length === 0 && notify.webhookUrl !== undefined;
  return { alert: parseAlertConfig(vars), webhook: hookOk ? { url: notify.webhookUrl!, totalMs: notify.timeoutMs } : undefined };
}

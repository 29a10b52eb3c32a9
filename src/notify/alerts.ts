import os from 'node:os';
import { ERROR_CODES, type BackupError } from '../errors';
import { log } from '../logger';
import { redact } from '../redact';
import type { Manifest } from '../repository/manifest';
import { formatAge, formatBytes } from '../util/format';
import type { MailSender } from './mailer';
import { postWebhook, type WebhookTarget } from './webhook';

export type AlertEvent =
  | {
      kind: 'backup-failed';
      database: string;
      /** The entry's name (what --db takes), when it is not the database's: subjects use it. */
      name?: string;
      error: BackupError;
      /** The newest good backup on any target. */
      newestGood: Manifest | undefined;
      /** The target holding it, named when there are several. */
      newestOn?: string | undefined;
      nextAttempt: Date | undefined;
      failureStreak: number;
      /** Where the backups were looked for (every target that could be listed). */
      backupDir: string;
      /** Targets that could not be listed: they may hold a newer backup. */
      unlisted?: string[] | undefined;
    }
  | { kind: 'backup-recovered'; database: string; name?: string; manifest: Manifest; failedAttempts: number; failingSince: string | undefined }
  | { kind: 'problem'; what: string; error: BackupError }
  | WarningEvent
  /** The summary mail (BACKUP_SUMMARY_SCHEDULE), composed by the monitor. */
  | { kind: 'summary'; subject: string; text: string }
  | { kind: 'test' };

/**
 * An early warning from the daemon's checks (issue 21), sent once when it appears (`warning`)
 * and once when it clears (`warning-cleared`). `title` is stable while the condition lasts: the
 * subject of both. `code` is the check (stale, size, disk, …), `key` what deduplicates it.
 */
export interface WarningEvent {
  kind: 'warning' | 'warning-cleared';
  key: string;
  code: string;
  database: string;
  name: string;
  target: string | undefined;
  title: string;
  message: string;
  fix: string;
  /** When it was first seen. */
  since: string;
}

const FIRST_CHECKS = [
  'Run `basement-backup backup` by hand to see the error now (add --env-file as the daemon does).',
  'Run `basement-backup config check` to test the database login, pg_dump version and mail settings.',
  'Check PostgreSQL is up: `systemctl status postgresql`.',
  'Check free disk space: `df -h` on the backup directory.',
  'Read the logs: `pm2 logs basement-backup` and logs/backup.log.',
];

function newestNone(searched: string, unlisted: string[]): string {
  if (unlisted.length === 0) return `Newest good backup: NONE in ${searched}. There is no backup to restore from.`;
  const missing = `${unlisted.join(', ')} could not be listed`;
  return searched === '' ? `Newest good backup: unknown: ${missing}.` : `Newest good backup: NONE in ${searched}; ${missing} and may hold one.`;
}

/** "billing" (database "app_db"), or "app_db" when the entry is named after its database. */
function about(e: { database: string; name?: string }): string {
  return e.name === undefined || e.name === e.database ? `database "${e.database}"` : `"${e.name}" (database "${e.database}")`;
}

export function composeAlert(event: AlertEvent, host = os.hostname(), now = new Date()): { subject: string; text: string } {
  const tag = '[basement-backup]';
  switch (event.kind) {
    case 'backup-failed': {
      const e = event.error;
      const lines = [
        `The backup of ${about(event)} on ${host} FAILED at ${now.toISOString()}.`,
        '',
        `What failed: ${ERROR_CODES[e.code].title} (${e.code})`,
        `  ${e.message}`,
      ];
      if (e.hint) lines.push('', `What to do: ${e.hint}`);
      if (e.detail) lines.push('', 'Last lines from pg_dump:', ...e.detail.split('\n').map((l) => `  ${l}`));
      lines.push('');
      if (event.newestGood) {
        const m = event.newestGood;
        lines.push(
          `Newest good backup: ${m.file} (${formatBytes(m.size_bytes)})${event.newestOn ? ` on ${event.newestOn}` : ''}, taken ${m.created_at}, ${formatAge(now.getTime() - Date.parse(m.created_at))} old.`,
        );
      } else {
        lines.push(newestNone(event.backupDir, event.unlisted ?? []));
      }
      lines.push('Earlier backups were not touched.');
      if (event.failureStreak > 1) lines.push(`This is failure ${event.failureStreak} in a row.`);
      lines.push(
        event.nextAttempt ? `Next attempt: ${event.nextAttempt.toISOString()} (scheduled).` : 'Next attempt: at the next scheduled run of the daemon.',
      );
      lines.push('', 'First things to check:', ...FIRST_CHECKS.map((c, i) => `  ${i + 1}. ${c}`));
      return { subject: `${tag} FAILED: ${event.name ?? event.database} backup on ${host}`, text: redact(lines.join('\n')) + '\n' };
    }
    case 'backup-recovered': {
      const m = event.manifest;
      const lines = [
        `Backups of ${about(event)} on ${host} work again.`,
        '',
        `New backup: ${m.file} (${formatBytes(m.size_bytes)}), taken ${m.created_at}.`,
        `It follows ${event.failedAttempts} failed attempt(s)${event.failingSince ? ` since ${event.failingSince}` : ''}.`,
      ];
      return { subject: `${tag} RECOVERED: ${event.name ?? event.database} backup on ${host}`, text: redact(lines.join('\n')) + '\n' };
    }
    case 'problem': {
      const e = event.error;
      const lines = [`${event.what} on ${host} at ${now.toISOString()}.`, '', `${ERROR_CODES[e.code].title} (${e.code}): ${e.message}`];
      if (e.hint) lines.push('', `What to do: ${e.hint}`);
      if (e.detail) lines.push('', ...e.detail.split('\n').map((l) => `  ${l}`));
      return { subject: `${tag} PROBLEM: ${event.what} on ${host}`, text: redact(lines.join('\n')) + '\n' };
    }
    case 'warning':
    case 'warning-cleared':
      return composeWarning(event, host, now);
    case 'summary':
      return { subject: event.subject, text: redact(event.text) };
    case 'test':
      return {
        subject: `${tag} test alert from ${host}`,
        text: `This is a test alert from basement-backup on ${host}, sent at ${now.toISOString()}.\nIf you read this, failure alerts will reach you.\n`,
      };
  }
}

function composeWarning(e: WarningEvent, host: string, now: Date): { subject: string; text: string } {
  const open = e.kind === 'warning';
  const lines = open
    ? [`${e.title} (${host}, ${now.toISOString()}).`, '', e.message, '', `What to do: ${e.fix}`]
    : [`Cleared: ${e.title} (${host}, ${now.toISOString()}).`, '', `It had been so since ${e.since} (${formatAge(now.getTime() - Date.parse(e.since))}).`];
  lines.push(
    '',
    `Check: ${e.code}${e.target ? `, target ${e.target}` : ''}. \`basement-backup${e.name === e.database ? '' : ` --db ${e.name}`} status\` shows the state now.`,
  );
  return { subject: `[basement-backup] ${open ? 'WARNING' : 'CLEARED'}: ${e.title} on ${host}`, text: redact(lines.join('\n')) + '\n' };
}

/**
 * The one alert path: mailed, and posted to BACKUP_WEBHOOK_URL when set (both at once, each
 * within its deadline). Never throws: an alert that cannot be sent is logged, and the caller
 * goes on. Returns whether it reached someone (a mail went out or the webhook accepted it).
 */
export class Alerter {
  constructor(
    private readonly sender: MailSender | undefined,
    private readonly webhook?: WebhookTarget,
  ) {}

  /** Whether alerts are mailed. */
  get enabled(): boolean {
    return this.sender !== undefined;
  }

  /** Whether alerts go anywhere but the log (mail or the webhook). */
  get reachesAnyone(): boolean {
    return this.sender !== undefined || this.webhook !== undefined;
  }

  async send(event: AlertEvent): Promise<boolean> {
    const msg = composeAlert(event);
    const [mailed, posted] = await Promise.all([this.mail(msg), this.webhook ? postWebhook(this.webhook, event, msg) : false]);
    if (posted) log.info('alert posted to the webhook', { subject: msg.subject });
    return mailed || posted;
  }

  private async mail(msg: { subject: string; text: string }): Promise<boolean> {
    if (!this.sender) {
      if (!this.webhook) log.warn('alert not mailed (SMTP_HOST is not set)', { subject: msg.subject });
      return false;
    }
    try {
      await this.sender.send(msg);
      log.info('alert sent', { subject: msg.subject });
      return true;
    } catch (err) {
      log.error('could not send alert', { subject: msg.subject, error: (err as Error).message });
      return false;
    }
  }
}

import type { Command } from 'commander';
import { BackupError } from '../../errors';
import { run, setup } from '../run';

async function alertTest(cmd: Command): Promise<void> {
  const { app } = await setup(cmd, 'alert test');
  const [{ composeAlert }, { smtpSender }] = await Promise.all([import('../../notify/alerts.js'), import('../../notify/mailer.js')]);
  const sender = smtpSender(app.config.alert);
  if (!sender)
    throw new BackupError('CONFIG', 'SMTP_HOST is not set, so no alert can be sent', {
      hint: 'Set SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD and ALERT_EMAIL_TO.',
    });
  await sender.send(composeAlert({ kind: 'test' }));
  process.stdout.write(`Test alert sent to ${app.config.alert.to.join(', ')}.\n`);
}

/** `alert test`: sends a test alert to ALERT_EMAIL_TO through the configured SMTP server. */
export function registerAlertTest(alert: Command): void {
  alert.command('test').description('send a test alert to ALERT_EMAIL_TO').action(run('alert test', alertTest));
}

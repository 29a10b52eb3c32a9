import type { Transporter } from 'nodemailer';
import type { AlertConfig } from '../config/types';
import { BackupError } from '../errors';
import { redact } from '../redact';

export interface MailMessage {
  subject: string;
  text: string;
}

/** The slice of mail sending that alerts need. */
export interface MailSender {
  send(msg: MailMessage): Promise<void>;
  /** Connects and authenticates without sending. */
  verify(): Promise<void>;
}

export function smtpSender(cfg: AlertConfig): MailSender | undefined {
  const smtp = cfg.smtp;
  if (!smtp) return undefined;
  // nodemailer is loaded when the first mail goes out, not at every start.
  let transport: Promise<Transporter> | undefined;
  const getTransport = () =>
    (transport ??= import('nodemailer').then((nodemailer) =>
      nodemailer.createTransport({
        host: smtp.host,
        port: smtp.port,
        secure: smtp.secure,
        auth: smtp.user ? { user: smtp.user, pass: smtp.password ?? '' } : undefined,
        connectionTimeout: 15_000,
        greetingTimeout: 15_000,
        socketTimeout: 30_000,
      }),
    ));
  const wrap = (err: unknown): BackupError =>
    new BackupError('SMTP', `mail server ${smtp.host}:${smtp.port}: ${redact((err as Error).message ?? String(err))}`, {
      hint: 'Check SMTP_HOST, SMTP_PORT, SMTP_SECURE, SMTP_USER and SMTP_PASSWORD; `basement-backup alert test` tries them.',
      cause: err,
    });
  return {
    async send(msg) {
      try {
        await (await getTransport()).sendMail({ from: cfg.from, to: cfg.to, subject: msg.subject, text: msg.text });
      } catch (err) {
        throw wrap(err);
      }
    },
    async verify() {
      try {
        await (await getTransport()).verify();
      } catch (err) {
        throw wrap(err);
      }
    },
  };
}

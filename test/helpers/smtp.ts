import type { AddressInfo, Socket } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { onTestFinished } from 'vitest';

export interface SmtpSink {
  port: number;
  mails: ParsedMail[];
  /** Waits until `count` mails arrived (or throws after `timeoutMs`). */
  waitFor(count: number, timeoutMs?: number): Promise<ParsedMail[]>;
  /**
   * Waits until no client is connected and no message is being parsed, then for `quietMs` in which
   * none connects: once the senders have exited, every mail they sent is in `mails`. Call it before
   * asserting that a mail did not come.
   */
  settled(quietMs?: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** A real SMTP server on 127.0.0.1 that keeps every message it receives, parsed. */
export async function startSmtpSink(opts: { user?: string; password?: string } = {}): Promise<SmtpSink> {
  const mails: ParsedMail[] = [];
  let busy = 0; // connections open and messages being parsed
  let changedAt = Date.now();
  const change = (by: number) => {
    busy += by;
    changedAt = Date.now();
  };
  const server = new SMTPServer({
    disabledCommands: opts.user ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
    allowInsecureAuth: true,
    authOptional: !opts.user,
    logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username === opts.user && auth.password === opts.password) cb(null, { user: auth.username });
      else cb(new Error('invalid login'));
    },
    onData(stream, _session, cb) {
      change(1);
      simpleParser(stream)
        .then((m) => {
          mails.push(m);
          cb();
        })
        .catch((err: Error) => cb(err))
        .finally(() => change(-1));
    },
  });
  server.server.on('connection', (socket: Socket) => {
    change(1);
    socket.once('close', () => change(-1));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    mails,
    async waitFor(count, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (mails.length < count) {
        if (Date.now() > deadline) throw new Error(`expected ${count} mail(s), got ${mails.length}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return mails;
    },
    async settled(quietMs = 300, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (busy > 0 || Date.now() - changedAt < quietMs) {
        if (Date.now() > deadline) throw new Error(`the SMTP sink did not settle: ${busy} connection(s) or message(s) still open`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An SMTP sink (see startSmtpSink) closed when the test finishes. */
export async function smtpSink(opts: { user?: string; password?: string } = {}): Promise<SmtpSink> {
  const sink = await startSmtpSink(opts);
  onTestFinished(() => sink.close());
  return sink;
}
